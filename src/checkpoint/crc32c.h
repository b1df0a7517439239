// CRC-32C (Castagnoli): the checksum of every file a checkpoint references (FileRef.crc32c).
//
//   uint32_t crc = Crc32c("hello ");
//   crc = Crc32cExtend(crc, "world");  // == Crc32c("hello world")
//
// Reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF (as in iSCSI, ext4,
// LevelDB and RocksDB before masking): Crc32c("123456789") == 0xE3069283.
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::internal {

// The CRC-32C of `data`. Thread-safe (pure function).
uint32_t Crc32c(std::string_view data);

// The CRC-32C of A + `data`, where `crc` is the CRC-32C of A: lets a file be checksummed in
// chunks. Crc32cExtend(0, data) == Crc32c(data).
uint32_t Crc32cExtend(uint32_t crc, std::string_view data);

// The same without the SSE 4.2 instruction (slicing-by-8 tables); Crc32cExtend uses it where the
// CPU lacks the instruction. For tests and benchmarks.
uint32_t Crc32cExtendPortable(uint32_t crc, std::string_view data);

}  // namespace sluice::internal
