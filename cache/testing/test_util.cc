#include "cache/testing/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace farm::cache::testing {
namespace {

// splitmix64: fast and good enough for test data.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

void RandomBytesAt(uint64_t seed, int64_t offset, int64_t size, std::string* out) {
  out->resize(static_cast<size_t>(size));
  uint64_t base = Mix(seed);
  int64_t word = offset / 8;
  for (int64_t i = 0; i < size; i += 8, ++word) {
    uint64_t v = Mix(base + static_cast<uint64_t>(word));
    size_t n = static_cast<size_t>(std::min<int64_t>(8, size - i));
    memcpy(&(*out)[static_cast<size_t>(i)], &v, n);
  }
}

std::string RandomBytes(int64_t size, uint64_t seed) {
  std::string out;
  RandomBytesAt(seed, 0, size, &out);
  return out;
}

int64_t DiskUsage(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 0;
  if (S_ISREG(st.st_mode)) return static_cast<int64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return 0;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return 0;
  int64_t total = 0;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    total += DiskUsage(path + "/" + e->d_name);
  }
  closedir(d);
  return total;
}

int64_t ProcStatusBytes(absl::string_view field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, field) || line.size() <= field.size() ||
        line[field.size()] != ':') {
      continue;
    }
    absl::string_view rest =
        absl::StripAsciiWhitespace(absl::string_view(line).substr(field.size() + 1));
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kb;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kb)) return kb * 1024;
  }
  return -1;
}

}  // namespace farm::cache::testing
