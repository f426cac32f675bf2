#include "worker/write_behind.h"

#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "cache/testing/memory_stores.h"
#include "common/digest.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace farm::worker {
namespace {

int FdWith(const std::string& bytes) {
  int fd = memfd_create("blob", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  return fd;
}

TEST(WriteBehindTest, SyncMeansStored) {
  auto cas = std::make_shared<cache::testing::MemoryBlobStore>();
  WriteBehind behind(cas);
  ASSERT_OK(behind.Sync());  // nothing queued
  std::vector<common::Digest> blobs;
  for (int i = 0; i < 20; ++i) {
    std::string bytes = std::string(1000 + i, 'a' + i % 26);
    blobs.push_back(common::DigestOf(bytes));
    behind.Add(blobs.back(), FdWith(bytes));
  }
  ASSERT_OK(behind.Sync());
  for (const common::Digest& d : blobs) EXPECT_TRUE(*cas->Has(d)) << d.OciString();
}

TEST(WriteBehindTest, AFailureIsReportedAndStays) {
  auto cas = std::make_shared<cache::testing::MemoryBlobStore>();
  WriteBehind behind(cas);
  common::Digest lie = common::DigestOf("what the digest says");
  behind.Add(lie, FdWith("other bytes of another length"));  // fails verification
  absl::Status s = behind.Sync();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("storing layer " + lie.OciString()), std::string::npos) << s;
  EXPECT_FALSE(*cas->Has(lie));
  std::string good = "good";
  behind.Add(common::DigestOf(good), FdWith(good));
  EXPECT_FALSE(behind.Sync().ok());  // the build that lost a layer is not recorded
  EXPECT_TRUE(*cas->Has(common::DigestOf(good)));
}

TEST(WriteBehindTest, JobsRunInOrderOnOneThread) {
  auto cas = std::make_shared<cache::testing::MemoryBlobStore>();
  WriteBehind behind(cas);
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) {
    behind.Add(common::DigestOf(std::to_string(i)), [&order, i] {
      order.push_back(i);  // one thread: no lock needed
      return absl::OkStatus();
    });
  }
  ASSERT_OK(behind.Sync());
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  behind.Add(common::DigestOf("x"), [] { return absl::DataLossError("tree changed"); });
  absl::Status s = behind.Sync();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("storing layer sha256:"), std::string::npos) << s;
}

TEST(WriteBehindTest, DestructionStoresWhatIsQueued) {
  auto cas = std::make_shared<cache::testing::MemoryBlobStore>();
  std::string bytes(1 << 20, 'z');
  {
    WriteBehind behind(cas);
    behind.Add(common::DigestOf(bytes), FdWith(bytes));
  }
  EXPECT_TRUE(*cas->Has(common::DigestOf(bytes)));
}

}  // namespace
}  // namespace farm::worker
