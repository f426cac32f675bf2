#include "auth/token_command.h"

#include <cstdlib>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm {
namespace auth {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);  // 2027-01-15T08:00:00Z

struct Result {
  int code;
  std::string out, err;
};

class TokenCommandTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* tmp = getenv("TEST_TMPDIR");
    dir_ = new std::string(absl::StrCat(tmp ? tmp : "/tmp", "/token-tls"));
    for (const char* d : {"", "/rogue"}) {
      std::string cmd = absl::StrCat(getenv("TEST_SRCDIR"), "/farm/deploy/make-certs.sh --dir ",
                                     *dir_, d, " >/dev/null");
      ASSERT_EQ(std::system(cmd.c_str()), 0);
    }
  }
  static std::string F(const std::string& rel) { return absl::StrCat(*dir_, "/", rel); }

  Result Run(std::vector<std::string> args, const std::string& stdin_text = "",
             absl::Time now = kNow) {
    std::istringstream in(stdin_text);
    std::ostringstream out, err;
    int code = RunTokenCommand(args, in, out, err, [now] { return now; });
    return {code, out.str(), err.str()};
  }

  static std::string* dir_;
};
std::string* TokenCommandTest::dir_ = nullptr;

TEST_F(TokenCommandTest, MintThenVerify) {
  Result mint =
      Run({"mint", "--key", F("jwt/signing.key"), "--sub", "ci-web", "--tenant", "web", "--read",
           "main", "--read", "pr/*", "--write", "pr/*", "--role", "submit", "--ttl", "30d"});
  ASSERT_EQ(mint.code, 0) << mint.err;
  std::string token = mint.out;
  Result v = Run({"verify", "--keys", F("jwt/signing.pub")}, token);
  ASSERT_EQ(v.code, 0) << v.err;
  EXPECT_THAT(v.out, HasSubstr("subject:  ci-web\n"));
  EXPECT_THAT(v.out, HasSubstr("tenant:   web\n"));
  EXPECT_THAT(v.out, HasSubstr("read:     main pr/*\n"));
  EXPECT_THAT(v.out, HasSubstr("write:    pr/*\n"));
  EXPECT_THAT(v.out, HasSubstr("roles:    submit\n"));
  EXPECT_THAT(v.out, HasSubstr("expires:  2027-02-14T08:00:00Z\n"));
  // As an argument too; and 31 days later it has expired.
  v = Run({"verify", "--keys", F("jwt/signing.pub"), token.substr(0, token.size() - 1)}, "",
          kNow + absl::Hours(24 * 31));
  EXPECT_EQ(v.code, 1);
  EXPECT_THAT(v.err, HasSubstr("token expired at 2027-02-14T08:00:00Z"));
  // Another farm's keys do not know it.
  v = Run({"verify", "--keys", F("rogue/jwt/signing.pub")}, token);
  EXPECT_EQ(v.code, 1);
  EXPECT_THAT(v.err, HasSubstr("unknown key id"));
}

TEST_F(TokenCommandTest, JwksServesAsAKeyFile) {
  Result j = Run({"jwks", F("jwt/signing.key"), F("rogue/jwt/signing.pub")});
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_THAT(j.out, HasSubstr("\"kty\":\"EC\""));
  ASSERT_TRUE(common::WriteFileAtomic(F("keys.jwks"), j.out).ok());
  Result mint = Run({"mint", "--key", F("rogue/jwt/signing.key"), "--sub", "x"});
  ASSERT_EQ(mint.code, 0) << mint.err;
  Result v = Run({"verify", "--keys", F("keys.jwks")}, mint.out);
  EXPECT_EQ(v.code, 0) << v.err;
}

TEST_F(TokenCommandTest, UsageErrors) {
  EXPECT_EQ(Run({}).code, 2);
  EXPECT_EQ(Run({"--help"}).code, 0);
  EXPECT_EQ(Run({"frob"}).code, 2);
  Result r = Run({"mint", "--key", F("jwt/signing.key")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--sub is required"));
  r = Run({"mint", "--key", F("jwt/signing.key"), "--sub", "a", "--ttl", "soon"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("invalid --ttl \"soon\""));
  r = Run({"mint", "--key", F("jwt/signing.key"), "--sub", "a", "--role", "worker"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot be granted by a token"));
  r = Run({"mint", "--key", F("jwt/signing.pub"), "--sub", "a"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("signing.pub: not a PEM private key"));
  r = Run({"verify", "--keys", F("jwt/signing.pub")}, "garbage");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("malformed token"));
  EXPECT_THAT(Run({"mint", "--help"}).out, HasSubstr("farm token mint --key FILE --sub NAME"));
}

}  // namespace
}  // namespace auth
}  // namespace farm
