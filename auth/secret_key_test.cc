#include "auth/secret_key.h"

#include <sys/stat.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm {
namespace auth {
namespace {

using ::testing::HasSubstr;

class SecretKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("secret-key-test");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
  }
  std::string Path(const std::string& name) { return tmp_->path() + "/" + name; }
  std::unique_ptr<common::TempDir> tmp_;
};

TEST_F(SecretKeyTest, CreatesA0600KeyOnceAndLoadsItAgain) {
  std::string path = Path("sub/dir/secret.key");
  auto a = SecretKey::LoadOrCreate(path);
  ASSERT_TRUE(a.ok()) << a.status();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(stat(Path("sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700);
  std::string text = *common::ReadFile(path);
  EXPECT_EQ(text.size(), 65u);  // 64 hex digits and a newline
  auto b = SecretKey::LoadOrCreate(path);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*a)->Hash("farm.secret.v1", "hunter2"), (*b)->Hash("farm.secret.v1", "hunter2"));
  EXPECT_EQ((*a)->id(), (*b)->id());
  EXPECT_EQ((*a)->id().size(), 16u);
  EXPECT_EQ(std::string(text).find((*a)->id()), std::string::npos);  // the id is not the key

  // Another farm's key: other digests.
  auto c = SecretKey::LoadOrCreate(Path("other.key"));
  ASSERT_TRUE(c.ok());
  EXPECT_NE((*a)->Hash("farm.secret.v1", "hunter2"), (*c)->Hash("farm.secret.v1", "hunter2"));
  EXPECT_NE((*a)->id(), (*c)->id());
}

TEST_F(SecretKeyTest, DigestsSeparateValuesAndPurposes) {
  auto k = SecretKey::FromBytes(std::string(32, 'k'));
  ASSERT_TRUE(k.ok());
  std::string h = (*k)->Hash("farm.secret.v1", "a");
  EXPECT_EQ(h.size(), 64u);
  EXPECT_NE(h, (*k)->Hash("farm.secret.v1", "b"));
  EXPECT_NE(h, (*k)->Hash("farm.secret.v2", "a"));
  // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
  EXPECT_NE((*k)->Hash("ab", "c"), (*k)->Hash("a", "bc"));
  EXPECT_EQ(h, (*k)->Hash("farm.secret.v1", "a"));
}

TEST_F(SecretKeyTest, MacIsHmacSha256) {
  // RFC 4231 test case 6 (a key longer than the block size).
  auto k = SecretKey::FromBytes(std::string(131, '\xaa'));
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(
      absl::BytesToHexString((*k)->Mac("Test Using Larger Than Block-Size Key - Hash Key First")),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_FALSE(SecretKey::FromBytes("short").ok());
  // RFC 4231 test case 7 (the same key; a message longer than the block size).
  EXPECT_EQ(absl::BytesToHexString((*k)->Mac(
                "This is a test using a larger than block-size key and a larger than block-size "
                "data. The key needs to be hashed before being used by the HMAC algorithm.")),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST_F(SecretKeyTest, MacOfKeysUpToOneBlockAndConcurrentCallers) {
  // Keys up to one block (64 bytes) are zero-padded, not hashed: HMAC(k) == HMAC(k + zeros).
  std::string k32(32, '\x0b');
  auto a = SecretKey::FromBytes(k32);
  auto b = SecretKey::FromBytes(k32 + std::string(32, '\0'));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->Mac("Hi There"), (*b)->Mac("Hi There"));
  // RFC 4231 test case 1 uses a 20-byte key of 0x0b; padded to 32 it is the same key block.
  auto c = SecretKey::FromBytes(std::string(20, '\x0b') + std::string(12, '\0'));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(absl::BytesToHexString((*c)->Mac("Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  std::string want = (*c)->Mac("same message");
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if ((*c)->Mac("same message") != want) wrong.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(SecretKeyTest, RefusesExposedOrMalformedFiles) {
  std::string path = Path("open.key");
  ASSERT_TRUE(common::WriteFileAtomic(path, std::string(64, 'a') + "\n", 0644).ok());
  auto k = SecretKey::Load(path);
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(k.status().message(), HasSubstr("is open to other users (mode 0644): chmod 600"));
  // LoadOrCreate does not "fix" an existing file by replacing it.
  EXPECT_FALSE(SecretKey::LoadOrCreate(path).ok());

  ASSERT_TRUE(common::WriteFileAtomic(Path("short.key"), "abcd\n", 0600).ok());
  k = SecretKey::Load(Path("short.key"));
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(), HasSubstr("want at least 64 hex digits"));
  EXPECT_THAT(k.status().message(), ::testing::Not(HasSubstr("abcd")));

  k = SecretKey::Load(Path("missing.key"));
  EXPECT_EQ(k.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SecretKeyTest, ConcurrentCreatorsAgreeOnOneKey) {
  std::string path = Path("race.key");
  std::vector<std::string> ids(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto k = SecretKey::LoadOrCreate(path);
      ids[i] = k.ok() ? (*k)->id() : std::string(k.status().message());
    });
  }
  for (auto& t : threads) t.join();
  for (const std::string& id : ids) EXPECT_EQ(id, ids[0]);
}

}  // namespace
}  // namespace auth
}  // namespace farm
