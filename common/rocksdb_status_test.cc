#include "common/rocksdb_status.h"

#include "gtest/gtest.h"

namespace farm::common {
namespace {

TEST(FromRocksTest, MapsCodesByMeaningAndKeepsTheContext) {
  EXPECT_TRUE(FromRocks(rocksdb::Status::OK(), "x").ok());
  absl::Status nf = FromRocks(rocksdb::Status::NotFound("k"), "reading build b1");
  EXPECT_TRUE(absl::IsNotFound(nf));
  EXPECT_EQ(nf.message().substr(0, 18), "reading build b1: ");
  EXPECT_TRUE(absl::IsDataLoss(FromRocks(rocksdb::Status::Corruption("bad block"), "x")));
  EXPECT_TRUE(absl::IsResourceExhausted(FromRocks(rocksdb::Status::NoSpace("full"), "x")));
  EXPECT_TRUE(absl::IsUnavailable(FromRocks(rocksdb::Status::Busy(), "x")));
  EXPECT_TRUE(absl::IsUnavailable(FromRocks(rocksdb::Status::TimedOut(), "x")));
  EXPECT_TRUE(absl::IsInternal(FromRocks(rocksdb::Status::IOError("disk"), "x")));
}

}  // namespace
}  // namespace farm::common
