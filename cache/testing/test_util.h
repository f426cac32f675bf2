// Helpers for the cache's tests: deterministic data, disk and memory measurements.
//
//   std::string data = cache::testing::RandomBytes(4 << 20, /*seed=*/7);
//   int64_t du = cache::testing::DiskUsage(dir);      // like `du -sb --apparent-size=no`
//   int64_t hwm = cache::testing::ProcStatusBytes("VmHWM");
#ifndef FARM_CACHE_TESTING_TEST_UTIL_H_
#define FARM_CACHE_TESTING_TEST_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace farm::cache::testing {

// `size` pseudo-random bytes, the same for the same seed.
std::string RandomBytes(int64_t size, uint64_t seed);
// Fills `out` (resized to `size`) with the bytes RandomBytes(offset + size)[offset:] would
// give when generated in 8-byte words from `seed` (offset must be a multiple of 8). Lets a
// test stream a huge blob without holding it.
void RandomBytesAt(uint64_t seed, int64_t offset, int64_t size, std::string* out);
// Allocated bytes (st_blocks * 512) of every regular file under `path`, recursively.
int64_t DiskUsage(const std::string& path);
// A "kB" field of /proc/self/status (VmRSS, VmHWM, ...) in bytes; -1 if absent.
int64_t ProcStatusBytes(absl::string_view field);

}  // namespace farm::cache::testing

#endif  // FARM_CACHE_TESTING_TEST_UTIL_H_
