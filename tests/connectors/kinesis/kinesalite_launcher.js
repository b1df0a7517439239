// Starts kinesalite (in memory) on 127.0.0.1 on a free port and prints "PORT <n>" on stdout.
// Runs until killed or until its stdin closes (so a crashed parent leaves no orphan).
//   node kinesalite_launcher.js <dir holding node_modules> [ssl]
// With "ssl" it serves HTTPS with kinesalite's bundled self-signed certificate.
'use strict';
const path = require('path');
const dir = process.argv[2];
const kinesalite = require(path.join(dir, 'node_modules', 'kinesalite'));
const server = kinesalite({
  createStreamMs: 0,
  deleteStreamMs: 0,
  updateStreamMs: 0,
  shardLimit: 50,
  ssl: process.argv[3] === 'ssl',
});
server.listen(0, '127.0.0.1', (err) => {
  if (err) {
    console.error('kinesalite: ' + err);
    process.exit(1);
  }
  process.stdout.write('PORT ' + server.address().port + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
