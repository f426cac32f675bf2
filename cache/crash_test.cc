// Crash safety: a child process writes blobs (and action-cache entries naming them) in a
// loop and reports each acknowledged one on a pipe; it is killed with SIGKILL at a random
// moment. The store is reopened: every acknowledged blob and entry is there and verifies, no
// partial blob is visible, and the temporary files are gone. Repeated on the same directory.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cache/action_result_refs.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/testing/test_util.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache {
namespace {

using ::farm::cache::testing::DiskUsage;
using ::farm::cache::testing::RandomBytes;

RocksDbStoreOptions Options(const std::string& dir) {
  RocksDbStoreOptions o;
  o.dir = dir;
  o.max_size = 4LL << 30;
  return o;
}

// The child: writes until killed. Each line on `fd` is "<seed> <hash> <size>" for a blob whose
// Commit and action-cache Update both returned OK.
[[noreturn]] void Child(const std::string& dir, int fd, uint64_t first_seed) {
  auto store = RocksDbBlobStore::Create(Options(dir));
  if (!store.ok()) {
    fprintf(stderr, "child: %s\n", store.status().ToString().c_str());
    _exit(2);
  }
  std::shared_ptr<RocksDbBlobStore> cas = *std::move(store);
  auto ac = RocksDbActionCache::Create(cas);
  std::mt19937_64 rng(first_seed);
  for (uint64_t seed = first_seed;; ++seed) {
    int64_t size = rng() % 3 == 0 ? 1 + rng() % 3000000 : 1 + rng() % 200000;
    std::string data = RandomBytes(size, seed);
    common::Digest d = common::DigestOf(data);
    auto w = cas->BeginWrite(d);
    if (!w.ok()) _exit(3);
    for (size_t off = 0; off < data.size(); off += 65536) {
      if (!(*w)->Append(absl::string_view(data).substr(off, 65536)).ok()) _exit(4);
    }
    if (!(*w)->Commit().ok()) _exit(5);
    build::bazel::remote::execution::v2::ActionResult r;
    auto* f = r.add_output_files();
    f->set_path("out");
    ToProto(d, f->mutable_digest());
    if (!(*ac)
             ->Update("main", common::DigestOf(absl::StrCat("action", seed)), r.SerializeAsString())
             .ok()) {
      _exit(6);
    }
    std::string line = absl::StrCat(seed, " ", d.hash, " ", d.size_bytes, "\n");
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(7);
  }
}

struct Acked {
  uint64_t seed;
  common::Digest digest;
};

TEST(CrashTest, AcknowledgedWritesSurviveSigkillAndNothingPartialIsVisible) {
  auto tmp = common::TempDir::Create("crash");
  ASSERT_TRUE(tmp.ok());
  const std::string dir = common::JoinPath(tmp->path(), "cache");
  std::mt19937_64 rng(20240101);
  std::vector<Acked> acked;
  uint64_t next_seed = 1;
  for (int round = 0; round < 6; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      Child(dir, fds[1], next_seed);
    }
    close(fds[1]);
    // Kill after a random number of acknowledgements plus a random delay, so the kill lands
    // anywhere in a write (streaming, committing, ingesting, updating the action cache).
    const int kill_after = 3 + static_cast<int>(rng() % 25);
    FILE* in = fdopen(fds[0], "r");
    char buf[256];
    int got = 0;
    while (got < kill_after && fgets(buf, sizeof(buf), in) != nullptr) {
      std::vector<std::string> parts = absl::StrSplit(absl::StripTrailingAsciiWhitespace(buf), ' ');
      ASSERT_EQ(parts.size(), 3u) << buf;
      Acked a;
      int64_t size;
      ASSERT_TRUE(absl::SimpleAtoi(parts[0], &a.seed) && absl::SimpleAtoi(parts[2], &size));
      a.digest = common::Digest{parts[1], size};
      acked.push_back(a);
      next_seed = std::max(next_seed, a.seed + 1);
      ++got;
    }
    absl::SleepFor(absl::Microseconds(rng() % 30000));
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with status " << WEXITSTATUS(status);
    // Lines written between our last read and the kill were acknowledged too.
    while (fgets(buf, sizeof(buf), in) != nullptr) {
      std::vector<std::string> parts = absl::StrSplit(absl::StripTrailingAsciiWhitespace(buf), ' ');
      if (parts.size() != 3) continue;  // a line cut by the kill
      Acked a;
      int64_t size;
      if (!absl::SimpleAtoi(parts[0], &a.seed) || !absl::SimpleAtoi(parts[2], &size)) continue;
      a.digest = common::Digest{parts[1], size};
      acked.push_back(a);
      next_seed = std::max(next_seed, a.seed + 1);
    }
    fclose(in);
    next_seed += 1000;  // never reuse the seed the child was writing when killed

    auto store = RocksDbBlobStore::Create(Options(dir));
    ASSERT_TRUE(store.ok()) << store.status();
    std::shared_ptr<RocksDbBlobStore> cas = *std::move(store);
    auto ac = RocksDbActionCache::Create(cas);
    ASSERT_TRUE(ac.ok());
    for (const Acked& a : acked) {
      auto data = cas->ReadBlob(a.digest, 8 << 20);
      ASSERT_TRUE(data.ok()) << "round " << round << ": acknowledged blob " << a.digest.ToString()
                             << ": " << data.status();
      ASSERT_EQ(*data, RandomBytes(a.digest.size_bytes, a.seed));
      auto entry = (*ac)->Get({"main"}, common::DigestOf(absl::StrCat("action", a.seed)));
      ASSERT_TRUE(entry.ok()) << entry.status();
    }
    // Everything visible verifies (nothing partial), and no temporary file survived.
    auto bad = cas->Verify();
    ASSERT_TRUE(bad.ok()) << bad.status();
    EXPECT_TRUE(bad->empty()) << bad->size() << " corrupt blobs";
    EXPECT_EQ(DiskUsage(common::JoinPath(dir, "tmp")), 0);
    auto stats = cas->Stats();
    ASSERT_TRUE(stats.ok());
    EXPECT_GE(stats->blob_count, static_cast<int64_t>(acked.size()));
    EXPECT_LE(stats->blob_count, static_cast<int64_t>(acked.size()) + round + 1);
  }
  EXPECT_GT(acked.size(), 20u);
}

}  // namespace
}  // namespace farm::cache
