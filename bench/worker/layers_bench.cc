// Layer creation throughput: a directory tree → deterministic tar → gzip (parallel libdeflate)
// or zstd (libzstd workers) → digests, as the worker does it for every RUN/COPY, without the
// CAS upload (a CAS that already "has" every blob). Also unpack throughput for the results.
//
//   layers_bench --dir /tmp/farm-bench-tree --size_mib 512 --generate --runs 3
//
// Prints one line per configuration: uncompressed MB/s, compressed size and ratio, CPU time.
// The tree is generated deterministically (fixed seed): ~40% source-like text, ~35% binary-like
// data, ~25% incompressible bytes, files from 512 B to 8 MiB, 64 files per directory.
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cache/blob_store.h"
#include "cache/testing/memory_stores.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "worker/layer/layer_io.h"

namespace {

// A CAS that claims to have everything: measures the pipeline, not the store.
class HasEverything : public farm::cache::BlobStore {
 public:
  absl::StatusOr<std::vector<farm::common::Digest>> FindMissing(
      absl::Span<const farm::common::Digest>) override {
    return std::vector<farm::common::Digest>();
  }
  absl::Status Read(const farm::common::Digest&, int64_t, int64_t,
                    const farm::cache::ReadSink&) override {
    return absl::UnimplementedError("read");
  }
  absl::StatusOr<std::unique_ptr<farm::cache::BlobReader>> OpenRead(const farm::common::Digest&,
                                                                    int64_t, int64_t) override {
    return absl::UnimplementedError("read");
  }
  absl::StatusOr<std::unique_ptr<farm::cache::BlobWriter>> BeginWrite(
      const farm::common::Digest&) override {
    return absl::UnimplementedError("write");
  }
  absl::StatusOr<Lease> AcquireLease(absl::Span<const farm::common::Digest>,
                                     absl::Duration) override {
    return Lease{};
  }
  absl::Status ReleaseLease(const std::string&) override { return absl::OkStatus(); }
};

std::string Text(std::mt19937_64& rng, size_t size) {
  static const char* kWords[] = {"int",       "return",  "const",   "std::string", "void",
                                 "if",        "else",    "for",     "while",       "absl::Status",
                                 "namespace", "include", "class",   "public:",     "private:",
                                 "template",  "auto",    "nullptr", "true",        "false",
                                 "size_t",    "static",  "struct",  "{",           "}",
                                 "(",         ")",       ";"};
  std::string s;
  s.reserve(size);
  while (s.size() < size) {
    int words = 3 + rng() % 9;
    s.append(static_cast<size_t>(rng() % 4) * 2, ' ');
    for (int i = 0; i < words; ++i) {
      if (rng() % 16 == 0) {
        absl::StrAppend(&s, "v", rng() % 100000, " ");
      } else {
        absl::StrAppend(&s, kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))], " ");
      }
    }
    s.push_back('\n');
  }
  s.resize(size);
  return s;
}

std::string Binary(std::mt19937_64& rng, size_t size) {
  // Instructions-like: a small alphabet of 4-byte words with runs of zeros and some noise.
  std::vector<uint32_t> alphabet(256);
  for (auto& a : alphabet) a = static_cast<uint32_t>(rng());
  std::string s(size, '\0');
  for (size_t i = 0; i + 4 <= size; i += 4) {
    uint64_t r = rng();
    uint32_t v = (r % 8 == 0)   ? 0
                 : (r % 5 == 0) ? static_cast<uint32_t>(r >> 32)
                                : alphabet[r % 256];
    std::memcpy(&s[i], &v, 4);
  }
  return s;
}

std::string Random(std::mt19937_64& rng, size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

absl::Status Generate(const std::string& dir, int64_t total) {
  std::mt19937_64 rng(20240601);
  int64_t written = 0;
  int file = 0;
  while (written < total) {
    std::string sub = absl::StrFormat("%s/d%03d/e%02d", dir, file / 4096, (file / 64) % 64);
    RETURN_IF_ERROR(farm::common::MakeDirs(sub));
    // Mostly small files (80%: 512 B .. 64 KiB), some large (64 KiB .. 8 MiB), log-uniform.
    double u = (rng() % 10000) / 10000.0;
    double e = rng() % 5 != 0 ? 9 + u * 7 : 16 + u * 7;
    size_t size = static_cast<size_t>(std::min<double>(std::pow(2.0, e), total - written + 1));
    int kind = static_cast<int>(rng() % 20);
    std::string data = kind < 8    ? Text(rng, size)
                       : kind < 15 ? Binary(rng, size)
                                   : Random(rng, size);
    RETURN_IF_ERROR(farm::common::WriteFileAtomic(absl::StrFormat("%s/f%06d", sub, file), data));
    written += static_cast<int64_t>(size);
    ++file;
  }
  std::cerr << "generated " << file << " files, " << written / (1 << 20) << " MiB in " << dir
            << "\n";
  return absl::OkStatus();
}

double CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/farm-bench-tree";
  int64_t size_mib = 512, runs = 3, threads = 0;
  bool generate = false;
  farm::common::FlagSet fs("layers_bench [OPTIONS]", "Layer creation throughput");
  fs.String("dir", 0, &dir, "the tree to archive");
  fs.Int("size_mib", 0, &size_mib, "size of the generated tree");
  fs.Bool("generate", 0, &generate, "generate the tree if it does not exist");
  fs.Int("runs", 0, &runs, "runs per configuration (the best is reported)");
  fs.Int("threads", 0, &threads, "compression threads (0 = every core)");
  auto args = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.ok()) {
    std::cerr << args.status() << "\n";
    return 2;
  }
  if (generate && !farm::common::PathExists(dir)) {
    absl::Status s = Generate(dir, size_mib << 20);
    if (!s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
  }
  auto none = std::make_shared<HasEverything>();
  auto mem = std::make_shared<farm::cache::testing::MemoryBlobStore>();
  struct Config {
    const char* name;
    farm::oci::Compression c;
    int level;
  };
  std::printf("%-12s %10s %12s %8s %10s %12s\n", "config", "MB/s", "compressed", "ratio", "cpu s",
              "unpack MB/s");
  for (Config cfg : {Config{"tar only", farm::oci::Compression::kNone, 0},
                     Config{"gzip -6", farm::oci::Compression::kGzip, 6},
                     Config{"gzip -4", farm::oci::Compression::kGzip, 4},
                     Config{"gzip -1", farm::oci::Compression::kGzip, 1},
                     Config{"zstd -3", farm::oci::Compression::kZstd, 3}}) {
    double best = 1e9, cpu = 0;
    farm::worker::layer::WrittenLayer w;
    for (int r = 0; r < runs; ++r) {
      farm::worker::layer::WriteOptions o;
      o.compression = {cfg.c, cfg.level, static_cast<int>(threads)};
      o.source_date_epoch = 0;
      o.spool_dir = "/tmp";
      double cpu0 = CpuSeconds();
      auto t0 = std::chrono::steady_clock::now();
      auto written = farm::worker::layer::WriteLayerFromDir(dir, o, none.get());
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!written.ok()) {
        std::cerr << written.status() << "\n";
        return 1;
      }
      if (secs < best) {
        best = secs;
        cpu = CpuSeconds() - cpu0;
        w = *written;
      }
    }
    // Unpack: store the blob once (outside the timing), then unpack it into a fresh directory.
    double unpack_mbs = 0;
    if (cfg.c != farm::oci::Compression::kNone) {
      farm::worker::layer::WriteOptions o;
      o.compression = {cfg.c, cfg.level, static_cast<int>(threads)};
      o.source_date_epoch = 0;
      o.spool_dir = "/tmp";
      auto stored = farm::worker::layer::WriteLayerFromDir(dir, o, mem.get());
      std::string dest = "/tmp/farm-bench-unpack";
      farm::common::RemoveAll(dest).IgnoreError();
      farm::common::MakeDirs(dest).IgnoreError();
      auto t0 = std::chrono::steady_clock::now();
      auto u = farm::worker::layer::UnpackLayerBlob(mem.get(), stored->blob, stored->diff_id, dest);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!u.ok()) {
        std::cerr << u.status() << "\n";
        return 1;
      }
      unpack_mbs = w.diff_id.size_bytes / 1e6 / secs;
      farm::common::RemoveAll(dest).IgnoreError();
      mem->Remove(stored->blob);
    }
    std::printf("%-12s %10.1f %12lld %8.2f %10.2f %12s\n", cfg.name,
                w.diff_id.size_bytes / 1e6 / best, static_cast<long long>(w.blob.size_bytes),
                static_cast<double>(w.diff_id.size_bytes) / w.blob.size_bytes, cpu,
                unpack_mbs > 0 ? absl::StrFormat("%.1f", unpack_mbs).c_str() : "-");
    std::fflush(stdout);
  }
  return 0;
}
