// cache_bench: farm-cache throughput over loopback gRPC, next to what loopback gRPC allows.
//
//   bazel run -c opt //bench:cache_bench -- [--seconds 3] [--dir /var/tmp/x] [--large-mib 256]
//
// Starts, in this process, a farm-cache (RocksDbBlobStore + CacheServer on 127.0.0.1:0) and a
// baseline ByteStream server that keeps nothing (Write discards, Read streams a preallocated
// buffer), then measures through the real clients (GrpcBlobStore) over TCP loopback:
//   FindMissingBlobs digests/s (requests of 10000 digests, half present),
//   write and read MB/s for 4 KiB, 1 MiB and large (256 MiB) blobs,
//   the same byte streams against the baseline server,
//   write MB/s for a large gzip layer (farm-cache decompresses it and hashes its diff_id while
//   it streams in) next to the same bytes with the gzip magic spoiled (stored, not decompressed).
// Prints a Markdown table. It measures; it never passes or fails on a number.
#include <grpcpp/grpcpp.h>
#include <sys/utsname.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cache/client/grpc_blob_store.h"
#include "cache/layer_info.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/server/cache_server.h"
#include "cache/testing/test_util.h"
#include "common/byte_sink.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/grpc_status.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "oci/compression.h"

namespace {

namespace bs = google::bytestream;
using farm::cache::Digest;

constexpr int64_t kMiB = 1 << 20;

// The baseline: ByteStream that stores nothing.
class NullByteStream final : public bs::ByteStream::CallbackService {
 public:
  explicit NullByteStream(int64_t max_size) : data_(static_cast<size_t>(max_size), 'x') {}

  grpc::ServerWriteReactor<bs::ReadResponse>* Read(grpc::CallbackServerContext*,
                                                   const bs::ReadRequest* req) override {
    class R : public grpc::ServerWriteReactor<bs::ReadResponse> {
     public:
      R(const std::string& data, int64_t n) : data_(data), left_(n) { Next(); }
      void OnWriteDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::CANCELLED);
        Next();
      }
      void OnDone() override { delete this; }

     private:
      void Next() {
        if (left_ <= 0) return Finish(grpc::Status::OK);
        int64_t n = std::min<int64_t>(left_, kMiB);
        resp_.set_data(data_.data(), static_cast<size_t>(n));
        left_ -= n;
        StartWrite(&resp_);
      }
      const std::string& data_;
      int64_t left_;
      bs::ReadResponse resp_;
    };
    return new R(data_, std::min<int64_t>(req->read_limit(), static_cast<int64_t>(data_.size())));
  }

  grpc::ServerReadReactor<bs::WriteRequest>* Write(grpc::CallbackServerContext*,
                                                   bs::WriteResponse* resp) override {
    class W : public grpc::ServerReadReactor<bs::WriteRequest> {
     public:
      explicit W(bs::WriteResponse* resp) : resp_(resp) { StartRead(&req_); }
      void OnReadDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        n_ += static_cast<int64_t>(req_.data().size());
        if (req_.finish_write()) {
          resp_->set_committed_size(n_);
          return Finish(grpc::Status::OK);
        }
        StartRead(&req_);
      }
      void OnDone() override { delete this; }

     private:
      bs::WriteResponse* resp_;
      bs::WriteRequest req_;
      int64_t n_ = 0;
    };
    return new W(resp);
  }

 private:
  std::string data_;
};

struct Row {
  std::string what;
  std::string farm;
  std::string baseline;
  std::string note;
};

std::string Rate(double bytes, absl::Duration d) {
  return absl::StrFormat("%.0f MB/s", bytes / 1e6 / absl::ToDoubleSeconds(d));
}

// Runs `op` repeatedly for about `seconds` (at least `min_ops` times); returns ops and time.
std::pair<int64_t, absl::Duration> Timed(double seconds, int64_t min_ops,
                                         const std::function<void(int64_t)>& op) {
  absl::Time start = absl::Now();
  int64_t n = 0;
  while (n < min_ops || absl::Now() - start < absl::Seconds(seconds)) op(n++);
  return {n, absl::Now() - start};
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << "cache_bench: " << what << ": " << s << "\n";
    std::exit(1);
  }
}

std::string Machine() {
  std::string cpu = "?";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  int cores = 0;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      ++cores;
    }
  }
  struct utsname u;
  uname(&u);
  return absl::StrFormat("%s, %d cores, Linux %s", cpu, cores, u.release);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  int64_t large_mib = 256;
  int64_t layer_mib = 256;
  std::string dir;
  int64_t threads = 1;
  bool sync = true;
  farm::common::FlagSet fs(
      "cache_bench [--seconds N] [--dir DIR] [--large-mib N]",
      "Measures farm-cache over loopback gRPC against a null ByteStream baseline");
  fs.Custom("seconds", 0, "N", "Seconds per measurement (default 3)", [&](absl::string_view v) {
    return absl::SimpleAtod(v, &seconds) ? absl::OkStatus()
                                         : absl::InvalidArgumentError("--seconds: want a number");
  });
  fs.String("dir", 0, &dir, "Cache directory (default: a temporary one)", "DIR");
  fs.Int("large-mib", 0, &large_mib, "Size of the large blob in MiB (default 256)");
  fs.Int("layer-mib", 0, &layer_mib,
         "Uncompressed size of the gzip layer in MiB (default 256; 0 skips the case)");
  fs.Bool("sync", 0, &sync,
          "fsync commits (default true; --sync=false: process-crash safety only)");
  fs.Int("threads", 0, &threads, "Concurrent clients for the 4 KiB cases (default 1)");
  auto pos = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!pos.ok()) {
    std::cerr << "cache_bench: " << pos.status().message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  std::unique_ptr<farm::common::TempDir> tmp;
  if (dir.empty()) {
    auto t = farm::common::TempDir::Create("cache-bench");
    Check(t.status(), "temp dir");
    tmp = std::make_unique<farm::common::TempDir>(*std::move(t));
    dir = tmp->path();
  }
  const int64_t large = large_mib * kMiB;

  farm::cache::RocksDbStoreOptions so;
  so.dir = farm::common::JoinPath(dir, "cache");
  so.max_size = 64LL << 30;
  so.sync = sync;
  auto store = farm::cache::RocksDbBlobStore::Create(so);
  Check(store.status(), "opening the store");
  std::shared_ptr<farm::cache::RocksDbBlobStore> rocks = *std::move(store);
  farm::cache::server::CacheServerOptions o;
  o.cas = rocks;
  o.action_cache = *farm::cache::RocksDbActionCache::Create(rocks);
  o.admin = rocks;
  auto server = farm::cache::server::CacheServer::Start(std::move(o));
  Check(server.status(), "starting farm-cache");

  NullByteStream null_service(large);
  grpc::ServerBuilder builder;
  int null_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &null_port);
  builder.RegisterService(&null_service);
  std::unique_ptr<grpc::Server> null_server = builder.BuildAndStart();
  auto null_channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", null_port),
                                          grpc::InsecureChannelCredentials());
  auto null_stub = bs::ByteStream::NewStub(null_channel);

  auto client = farm::cache::client::GrpcBlobStore::Create((*server)->address(), {});
  Check(client.status(), "client");
  farm::cache::client::GrpcBlobStore& cas = **client;

  std::vector<Row> rows;
  uint64_t seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));

  // FindMissingBlobs: 10000 digests per request, half of them present.
  {
    std::vector<Digest> present, query;
    std::vector<farm::cache::BlobData> batch;
    std::vector<std::string> datas;
    for (int i = 0; i < 5000; ++i) datas.push_back(absl::StrCat("present-", seed, "-", i));
    for (const std::string& d : datas) batch.push_back({farm::common::DigestOf(d), d});
    Check(rocks->BatchWrite(batch).status(), "populating");
    for (const auto& b : batch) query.push_back(b.digest);
    for (int i = 0; i < 5000; ++i)
      query.push_back(farm::common::DigestOf(absl::StrCat("absent-", i)));
    auto [n, d] = Timed(seconds, 3, [&](int64_t) { Check(cas.FindMissing(query).status(), "fm"); });
    auto [ln, ld] =
        Timed(seconds / 2, 3, [&](int64_t) { Check(rocks->FindMissing(query).status(), "fm"); });
    rows.push_back({"FindMissingBlobs (10000 digests/request, half present)",
                    absl::StrFormat("%.0f digests/s", 10000.0 * n / absl::ToDoubleSeconds(d)), "-",
                    absl::StrFormat("store alone, in-process: %.0f digests/s",
                                    10000.0 * ln / absl::ToDoubleSeconds(ld))});
  }

  // Writes and reads of unique blobs of a given size through GrpcBlobStore.
  auto blob_case = [&](const std::string& label, int64_t size, int64_t count_hint) {
    std::vector<std::string> datas;
    std::vector<Digest> digests;
    int64_t count = std::max<int64_t>(1, std::min<int64_t>(count_hint, (2LL << 30) / size));
    for (int64_t i = 0; i < count; ++i) {
      datas.push_back(
          farm::cache::testing::RandomBytes(size, seed + i + static_cast<uint64_t>(size)));
      digests.push_back(farm::common::DigestOf(datas.back()));
    }
    // Each blob is written once (a second write would be answered without data).
    int64_t written = 0, writes = 0;
    absl::Time wstart = absl::Now();
    while (writes < count && (writes < 3 || absl::Now() - wstart < absl::Seconds(seconds))) {
      Check(cas.WriteBlob(digests[writes], datas[writes]), "write");
      written += size;
      ++writes;
    }
    absl::Duration wd = absl::Now() - wstart;
    int64_t read = 0;
    auto [rn, rd] = Timed(seconds, 3, [&](int64_t i) {
      Check(cas.Read(digests[i % writes], 0, 0,
                     [&read](absl::string_view c) {
                       read += static_cast<int64_t>(c.size());
                       return absl::OkStatus();
                     }),
            "read");
    });
    std::string note = absl::StrFormat("%.0f blobs/s", writes / absl::ToDoubleSeconds(wd));
    rows.push_back({absl::StrCat("write ", label, " blobs"), Rate(static_cast<double>(written), wd),
                    "", note});
    rows.push_back({absl::StrCat("read ", label, " blobs"), Rate(static_cast<double>(read), rd), "",
                    absl::StrFormat("%.0f blobs/s", rn / absl::ToDoubleSeconds(rd))});
  };

  // The same byte streams against the null server.
  auto baseline = [&](int64_t size, size_t write_row, size_t read_row) {
    std::string chunk(static_cast<size_t>(std::min<int64_t>(size, kMiB)), 'y');
    int64_t sent = 0;
    auto [wn, wd] = Timed(seconds, 3, [&](int64_t) {
      grpc::ClientContext ctx;
      bs::WriteResponse resp;
      auto w = null_stub->Write(&ctx, &resp);
      bs::WriteRequest req;
      req.set_resource_name("uploads/x/blobs/x/1");
      for (int64_t off = 0; off < size; off += static_cast<int64_t>(chunk.size())) {
        req.set_write_offset(off);
        req.set_data(chunk);
        req.set_finish_write(off + static_cast<int64_t>(chunk.size()) >= size);
        w->Write(req);
        req.clear_resource_name();
      }
      w->WritesDone();
      Check(farm::common::FromGrpcStatus(w->Finish()), "baseline write");
      sent += size;
    });
    int64_t got = 0;
    auto [rn, rd] = Timed(seconds, 3, [&](int64_t) {
      grpc::ClientContext ctx;
      bs::ReadRequest req;
      req.set_read_limit(size);
      auto r = null_stub->Read(&ctx, req);
      bs::ReadResponse resp;
      while (r->Read(&resp)) got += static_cast<int64_t>(resp.data().size());
      Check(farm::common::FromGrpcStatus(r->Finish()), "baseline read");
    });
    rows[write_row].baseline = Rate(static_cast<double>(sent), wd);
    rows[read_row].baseline = Rate(static_cast<double>(got), rd);
  };

  blob_case("4 KiB", 4096, 200000);
  baseline(4096, rows.size() - 2, rows.size() - 1);
  blob_case("1 MiB", kMiB, 1000);
  baseline(kMiB, rows.size() - 2, rows.size() - 1);
  blob_case(absl::StrCat(large_mib, " MiB"), large, 3);
  baseline(large, rows.size() - 2, rows.size() - 1);

  if (layer_mib > 0) {
    // A gzip layer like a worker's (about 3:1): a quarter random bytes, the rest text. Each
    // case writes 3 distinct blobs of the same size; "spoiled" changes the first byte, so
    // farm-cache sees no gzip magic and only stores and hashes them (what it did before it
    // computed diff_ids).
    std::vector<std::string> gz;
    for (int i = 0; i < 6; ++i) {
      std::string layer;
      const int64_t n = layer_mib * kMiB;
      while (static_cast<int64_t>(layer.size()) < n) {
        layer += farm::cache::testing::RandomBytes(1024, seed + i * 1000003 + layer.size());
        layer += absl::StrCat("usr/lib/python3/dist-packages/module_", layer.size() % 977,
                              ".py: def f(x): return x + 1\n", std::string(2900, 'a' + i));
      }
      std::string out;
      farm::common::FunctionSink sink([&out](absl::string_view b) {
        out.append(b.data(), b.size());
        return absl::OkStatus();
      });
      auto c = farm::oci::Compressor::Create({farm::oci::Compression::kGzip}, &sink);
      Check(c.status(), "gzip");
      Check((*c)->Write(layer), "gzip");
      Check((*c)->Finish(), "gzip");
      gz.push_back(std::move(out));
    }
    for (int i = 3; i < 6; ++i) gz[i][0] = 0;  // spoiled
    auto write_three = [&](int first) {
      int64_t bytes = 0;
      absl::Time start = absl::Now();
      for (int i = first; i < first + 3; ++i) {
        Check(cas.WriteBlob(farm::common::DigestOf(gz[i]), gz[i]), "write layer");
        bytes += static_cast<int64_t>(gz[i].size());
      }
      return std::make_pair(bytes, absl::Now() - start);
    };
    auto [sb, sd] = write_three(3);
    auto [gb, gd] = write_three(0);
    rows.push_back({absl::StrFormat("write gzip layers (%d MiB tar, %.0f MiB gzip)", layer_mib,
                                    gb / 3.0 / kMiB),
                    Rate(static_cast<double>(gb), gd), "",
                    absl::StrCat("diff_id computed while streaming; the same bytes, gzip magic "
                                 "spoiled (stored only): ",
                                 Rate(static_cast<double>(sb), sd))});
    // The decompress-and-hash ceiling: the same work alone on one thread, nothing else running.
    absl::Time alone = absl::Now();
    Check(farm::cache::LayerInfoComputer::Of(farm::common::DigestOf(gz[0]), gz[0]).status(),
          "diff_id alone");
    rows.back().note +=
        absl::StrCat("; diff_id alone on one core: ",
                     Rate(static_cast<double>(gz[0].size()), absl::Now() - alone), " of gzip");
    auto infos = rocks->GetLayerInfo({farm::common::DigestOf(gz[0])});
    Check(infos.status(), "layer info");
    Check((*infos)[0].status(), "layer info");
  }

  if (threads > 1) {
    // Concurrent small writes: many clients (as Bazel's parallel uploads).
    std::atomic<int64_t> done{0};
    std::vector<std::thread> ts;
    absl::Time start = absl::Now();
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        int64_t i = 0;
        while (absl::Now() - start < absl::Seconds(seconds)) {
          std::string d =
              absl::StrCat("concurrent-", seed, "-", t, "-", i++, std::string(4000, 'z'));
          Check(cas.WriteBlob(farm::common::DigestOf(d), d), "write");
          ++done;
        }
      });
    }
    for (auto& th : ts) th.join();
    absl::Duration d = absl::Now() - start;
    rows.push_back({absl::StrCat("write 4 KiB blobs, ", threads, " clients"),
                    Rate(4096.0 * done.load(), d), "",
                    absl::StrFormat("%.0f blobs/s", done.load() / absl::ToDoubleSeconds(d))});
  }

  std::cout << "Machine: " << Machine() << "\n";
  std::cout << "Store: fsync on commit " << (sync ? "on" : "off") << "\n";
  std::cout << "Date: " << absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone()) << "\n\n";
  std::cout << "| case | farm-cache | loopback baseline | note |\n|---|---|---|---|\n";
  for (const Row& r : rows) {
    std::cout << "| " << r.what << " | " << r.farm << " | "
              << (r.baseline.empty() ? "-" : r.baseline) << " | " << r.note << " |\n";
  }
  (*server)->Shutdown(absl::Seconds(1));
  null_server->Shutdown();
  return 0;
}
