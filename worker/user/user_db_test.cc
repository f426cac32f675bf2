#include "worker/user/user_db.h"

#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace farm::worker::user {
namespace {

const char kPasswd[] =
    "root:x:0:0:root:/root:/bin/sh\n"
    "# comment\n"
    "app:x:1000:1000::/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const char kGroup[] =
    "root:x:0:\n"
    "app:x:1000:\n"
    "staff:x:50:app,other\n"
    "wheel:x:10:app\n"
    "nogroup:x:65534:\n";

TEST(UserDbTest, Names) {
  auto u = ResolveUser("app", std::string(kPasswd), std::string(kGroup));
  ASSERT_OK(u);
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1000u);
  EXPECT_EQ(u->home, "/home/app");
  EXPECT_EQ(u->groups, (std::vector<uint32_t>{1000, 50, 10}));

  u = ResolveUser("nobody", std::string(kPasswd), std::string(kGroup));
  ASSERT_OK(u);
  EXPECT_EQ(u->uid, 65534u);
  EXPECT_EQ(u->gid, 65534u);
}

TEST(UserDbTest, NumbersAndGroups) {
  auto u = ResolveUser("1000:staff", std::string(kPasswd), std::string(kGroup));
  ASSERT_OK(u);
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 50u);
  EXPECT_EQ(u->groups, std::vector<uint32_t>{50});
  u = ResolveUser("4242:99", std::nullopt, std::nullopt);  // no files needed for numbers
  ASSERT_OK(u);
  EXPECT_EQ(u->uid, 4242u);
  EXPECT_EQ(u->gid, 99u);
  u = ResolveUser("4242", std::string(kPasswd), std::nullopt);
  ASSERT_OK(u);
  EXPECT_EQ(u->gid, 0u);
  u = ResolveUser("", std::string(kPasswd), std::nullopt);
  ASSERT_OK(u);
  EXPECT_EQ(u->uid, 0u);
}

TEST(UserDbTest, NoUserIsRootWithItsHome) {
  // runc sets HOME from the passwd entry of the uid when the image has no USER: /root, not /.
  auto u = ResolveUser("", std::string(kPasswd), std::string(kGroup));
  ASSERT_OK(u);
  EXPECT_EQ(u->uid, 0u);
  EXPECT_EQ(u->gid, 0u);
  EXPECT_EQ(u->home, "/root");
  EXPECT_EQ(u->groups, std::vector<uint32_t>{0});
  u = ResolveUser("", std::nullopt, std::nullopt);  // no passwd file: still root, home "/"
  ASSERT_OK(u);
  EXPECT_EQ(u->uid, 0u);
  EXPECT_EQ(u->home, "/");
}

TEST(UserDbTest, UnknownNamesAreErrors) {
  absl::Status s = ResolveUser("ghost", std::string(kPasswd), std::string(kGroup)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "unable to find user ghost: no matching entries in passwd file");
  s = ResolveUser("app:ghosts", std::string(kPasswd), std::string(kGroup)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ResolveGroup("wheel", std::string(kGroup)).value(), 10u);
}

}  // namespace
}  // namespace farm::worker::user

namespace farm::worker::user {
namespace {

TEST(UserDbTest, ChownRules) {
  auto o = ResolveChown("app", std::string(kPasswd), std::string(kGroup));
  ASSERT_OK(o);
  EXPECT_EQ(o->uid, 1000u);
  EXPECT_EQ(o->gid, 1000u);
  o = ResolveChown("42", std::nullopt, std::nullopt);
  ASSERT_OK(o);
  EXPECT_EQ(o->uid, 42u);
  EXPECT_EQ(o->gid, 42u);  // BuildKit: a uid alone is also the gid
  o = ResolveChown("app:wheel", std::string(kPasswd), std::string(kGroup));
  ASSERT_OK(o);
  EXPECT_EQ(o->gid, 10u);
  o = ResolveChown(":staff", std::string(kPasswd), std::string(kGroup));
  ASSERT_OK(o);
  EXPECT_EQ(o->uid, 0u);
  EXPECT_EQ(o->gid, 50u);
  EXPECT_EQ(ResolveChown("ghost", std::string(kPasswd), std::nullopt).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace farm::worker::user
