// Creates a Kinesis stream on a local kinesalite and waits until it is ACTIVE (Sluice's connector
// reads and writes streams but does not create them). kinesalite checks that requests carry a
// SigV4-shaped Authorization header but not the signature, so a placeholder one does.
//   node create_stream.js <endpoint http://127.0.0.1:PORT> <stream> [shards, default 1]
'use strict';
const http = require('http');
const [endpoint, stream, shards = '1'] = process.argv.slice(2);
if (!endpoint || !stream) {
  console.error('usage: node create_stream.js <endpoint> <stream> [shards]');
  process.exit(2);
}

function call(action, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(endpoint, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': 'Kinesis_20131202.' + action,
        'X-Amz-Date': new Date().toISOString().replace(/[-:]|\.\d{3}/g, ''),
        'Authorization': 'AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/kinesis/aws4_request, ' +
                         'SignedHeaders=host, Signature=0',
        'Content-Length': Buffer.byteLength(data),
      },
    }, (res) => {
      let text = '';
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => resolve({status: res.statusCode, body: text ? JSON.parse(text) : {}}));
    });
    req.on('error', reject);
    req.end(data);
  });
}

(async () => {
  const created = await call('CreateStream', {StreamName: stream, ShardCount: Number(shards)});
  if (created.status !== 200) throw new Error('CreateStream: ' + JSON.stringify(created.body));
  for (let i = 0; i < 100; ++i) {
    const d = await call('DescribeStreamSummary', {StreamName: stream});
    if (d.status === 200 && d.body.StreamDescriptionSummary.StreamStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('stream ' + stream + ' did not become ACTIVE');
})().catch((e) => {
  console.error('create_stream.js: ' + e.message);
  process.exit(1);
});
