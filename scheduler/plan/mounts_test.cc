// RUN --mount parsing: each type's defaults, the canonical text that goes into the key, and
// errors that name the file, line, column and the offending --mount value.
#include "scheduler/plan/mounts.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::scheduler::plan {
namespace {

using ::testing::HasSubstr;

MountContext Ctx(std::map<std::string, std::string> vars = {}, std::string workdir = "/") {
  MountContext ctx;
  ctx.filename = "Dockerfile";
  ctx.pos = dockerfile::Position{7, 3};
  ctx.env = [vars](absl::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  ctx.workdir = std::move(workdir);
  return ctx;
}

RunMount Parse(absl::string_view value, const MountContext& ctx = Ctx()) {
  absl::StatusOr<RunMount> m = ParseRunMount(value, ctx);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : RunMount();
}

TEST(ParseRunMountTest, BindIsTheDefaultTypeAndReadOnly) {
  RunMount m = Parse("target=/src");
  EXPECT_EQ(m.proto.type(), farm::v1::Mount::BIND);
  EXPECT_EQ(m.proto.target(), "/src");
  EXPECT_TRUE(m.proto.readonly());
  EXPECT_FALSE(m.has_from);
  EXPECT_EQ(m.proto.sharing(), "");
  EXPECT_EQ(m.canonical, "type=bind,target=/src,ro");
}

TEST(ParseRunMountTest, BindFromAStageWithSourceAndRw) {
  RunMount m = Parse("type=bind,from=build,source=/out,target=/in,rw");
  EXPECT_TRUE(m.has_from);
  EXPECT_EQ(m.from, "build");
  EXPECT_EQ(m.proto.source(), "/out");
  EXPECT_FALSE(m.proto.readonly());
  EXPECT_EQ(m.canonical, "type=bind,target=/in,from=build,source=/out,rw");
  // Key aliases: src/dst/destination, readwrite/readonly with a value.
  RunMount alias = Parse("type=bind,from=build,src=/out,dst=/in,readwrite=true");
  EXPECT_EQ(alias.canonical, m.canonical);
  EXPECT_EQ(Parse("destination=/in,readonly=false").canonical, "type=bind,target=/in,rw");
  EXPECT_EQ(Parse("target=/in,ro=1").canonical, "type=bind,target=/in,ro");
}

TEST(ParseRunMountTest, CacheDefaultsToWritableSharedWithTheTargetAsId) {
  RunMount m = Parse("type=cache,target=/root/.cache");
  EXPECT_EQ(m.proto.type(), farm::v1::Mount::CACHE);
  EXPECT_FALSE(m.proto.readonly());
  EXPECT_EQ(m.proto.id(), "/root/.cache");
  EXPECT_EQ(m.proto.sharing(), "shared");
  EXPECT_EQ(m.canonical, "type=cache,target=/root/.cache,id=/root/.cache,sharing=shared,rw");

  RunMount pip = Parse("type=cache,target=/root/.cache,id=pip,sharing=locked,ro");
  EXPECT_EQ(pip.proto.id(), "pip");
  EXPECT_EQ(pip.proto.sharing(), "locked");
  EXPECT_TRUE(pip.proto.readonly());
  EXPECT_EQ(pip.canonical, "type=cache,target=/root/.cache,id=pip,sharing=locked,ro");
}

TEST(ParseRunMountTest, CacheOwnershipAndModeAreOctalAndDecimal) {
  RunMount m = Parse("type=cache,target=/c,mode=0700,uid=1000,gid=100");
  EXPECT_EQ(m.proto.mode(), 0700u);
  EXPECT_EQ(m.proto.uid(), 1000u);
  EXPECT_EQ(m.proto.gid(), 100u);
  EXPECT_EQ(m.canonical, "type=cache,target=/c,id=/c,sharing=shared,rw,mode=0700,uid=1000,gid=100");
}

TEST(ParseRunMountTest, RelativeTargetsResolveAgainstTheWorkdir) {
  EXPECT_EQ(Parse("type=cache,target=rel", Ctx({}, "/src")).proto.target(), "/src/rel");
  EXPECT_EQ(Parse("type=cache,target=./a/../b/", Ctx({}, "/src")).proto.target(), "/src/b");
  EXPECT_EQ(Parse("type=cache,target=rel", Ctx({}, "")).proto.target(), "/rel");
  EXPECT_EQ(Parse("type=cache,target=/abs//x/", Ctx({}, "/src")).proto.target(), "/abs/x");
}

TEST(ParseRunMountTest, TmpfsSizes) {
  RunMount m = Parse("type=tmpfs,target=/tmp,size=64m");
  EXPECT_EQ(m.proto.type(), farm::v1::Mount::TMPFS);
  EXPECT_FALSE(m.proto.readonly());
  EXPECT_EQ(m.proto.size_bytes(), 64 << 20);
  EXPECT_EQ(m.canonical, "type=tmpfs,target=/tmp,rw,size=67108864");
  EXPECT_EQ(Parse("type=tmpfs,target=/t,size=1GiB").proto.size_bytes(), int64_t{1} << 30);
  EXPECT_EQ(Parse("type=tmpfs,target=/t,size=512kb").proto.size_bytes(), 512 << 10);
  EXPECT_EQ(Parse("type=tmpfs,target=/t,size=1.5k").proto.size_bytes(), 1536);
  EXPECT_EQ(Parse("type=tmpfs,target=/t,size=100").proto.size_bytes(), 100);
}

TEST(ParseRunMountTest, SecretDefaults) {
  RunMount byid = Parse("type=secret,id=npmrc");
  EXPECT_EQ(byid.proto.type(), farm::v1::Mount::SECRET);
  EXPECT_EQ(byid.proto.target(), "/run/secrets/npmrc");
  EXPECT_TRUE(byid.proto.readonly());
  EXPECT_EQ(byid.canonical, "type=secret,target=/run/secrets/npmrc,id=npmrc,ro");

  // The id defaults to the target's base name.
  EXPECT_EQ(Parse("type=secret,target=/etc/token").proto.id(), "token");

  // A secret exposed as an environment variable has no file target.
  RunMount env = Parse("type=secret,id=tok,env=TOKEN,required");
  EXPECT_EQ(env.proto.target(), "");
  EXPECT_EQ(env.proto.env(), "TOKEN");
  EXPECT_TRUE(env.proto.required());
  EXPECT_EQ(env.canonical, "type=secret,target=,id=tok,ro,env=TOKEN,required");
  EXPECT_FALSE(Parse("type=secret,id=a,required=false").proto.required());
}

TEST(ParseRunMountTest, SshSocketsAreNumberedPerRun) {
  RunMount first = Parse("type=ssh");
  EXPECT_EQ(first.proto.type(), farm::v1::Mount::SSH);
  EXPECT_EQ(first.proto.id(), "default");
  EXPECT_EQ(first.proto.target(), "/run/buildkit/ssh_agent.0");
  MountContext second = Ctx();
  second.ssh_index = 1;
  EXPECT_EQ(Parse("type=ssh,id=github", second).proto.target(), "/run/buildkit/ssh_agent.1");
}

TEST(ParseRunMountTest, ValuesAreExpandedKeysAndTypeAreCaseInsensitive) {
  RunMount m = Parse("TYPE=Cache,Target=$DIR/pkg,id=${NAME:-x}", Ctx({{"DIR", "/cache"}}));
  EXPECT_EQ(m.proto.type(), farm::v1::Mount::CACHE);
  EXPECT_EQ(m.proto.target(), "/cache/pkg");
  EXPECT_EQ(m.proto.id(), "x");
  // No lookup at all: every variable is unset.
  MountContext bare = Ctx();
  bare.env = nullptr;
  EXPECT_EQ(Parse("type=cache,target=/c$X", bare).proto.target(), "/c");
}

TEST(ParseRunMountTest, FieldsSplitLikeCsvWithQuotes) {
  RunMount m = Parse("type=bind,\"source=a,b\",target=/x");
  EXPECT_EQ(m.proto.source(), "a,b");
  // "" inside a quoted field is one quote; the value is then expanded like a shell word,
  // which removes the quotes again.
  EXPECT_EQ(Parse("type=bind,\"source=say \"\"hi\"\"\",target=/x").proto.source(), "say hi");
  // Empty fields are skipped.
  EXPECT_EQ(Parse("type=cache,,target=/c,").proto.target(), "/c");
}

TEST(ParseRunMountTest, SameValueSameCanonicalEveryFieldChangesIt) {
  const std::string base = Parse("type=cache,target=/c,id=i,sharing=private").canonical;
  EXPECT_EQ(Parse("type=cache,target=/c,id=i,sharing=private").canonical, base);
  for (const char* v :
       {"type=cache,target=/d,id=i,sharing=private", "type=cache,target=/c,id=j,sharing=private",
        "type=cache,target=/c,id=i,sharing=locked", "type=cache,target=/c,id=i,sharing=private,ro",
        "type=cache,target=/c,id=i,sharing=private,mode=0755",
        "type=cache,target=/c,id=i,sharing=private,uid=1",
        "type=cache,target=/c,id=i,sharing=private,gid=1",
        "type=cache,target=/c,id=i,sharing=private,from=s",
        "type=cache,target=/c,id=i,sharing=private,source=/s"}) {
    EXPECT_NE(Parse(v).canonical, base) << v;
  }
}

// Every error: INVALID_ARGUMENT, "Dockerfile:7:3: --mount=<value>: <what>".
void ExpectError(absl::string_view value, absl::string_view what) {
  absl::StatusOr<RunMount> m = ParseRunMount(value, Ctx());
  ASSERT_FALSE(m.ok()) << value;
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << value;
  EXPECT_EQ(m.status().message(), absl::StrCat("Dockerfile:7:3: --mount=", value, ": ", what));
}

TEST(ParseRunMountErrorsTest, NameTheFileLineColumnAndValue) {
  ExpectError("type=volume,target=/x",
              "unsupported mount type \"volume\" (want bind, cache, tmpfs, secret or ssh)");
  ExpectError("type=cache", "mount type=cache requires a target");
  ExpectError("source=/x", "mount type=bind requires a target");
  ExpectError("target=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'");
  ExpectError("target=/x,nokey", "invalid field 'nokey' must be a key=value pair");
  ExpectError("\"target=/x", "unterminated quote");
  ExpectError("target=/x,ro=maybe", "invalid value for ro: maybe");
  ExpectError("target=/x,rw=2", "invalid value for rw: 2");
}

TEST(ParseRunMountErrorsTest, KeysTheTypeDoesNotTake) {
  ExpectError("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'");
  ExpectError("type=cache,target=/x,required", "unexpected key 'required' for mount type 'cache'");
  ExpectError("type=cache,target=/x,required=true",
              "unexpected key 'required' for mount type 'cache'");
  ExpectError("type=cache,target=/x,env=A", "unexpected key 'env' for mount type 'cache'");
  ExpectError("type=bind,target=/x,sharing=shared", "invalid cache sharing set for bind mount");
  ExpectError("type=bind,target=/x,mode=0755", "mode/uid/gid not allowed for type \"bind\"");
  ExpectError("type=tmpfs,target=/x,uid=0", "mode/uid/gid not allowed for type \"tmpfs\"");
  ExpectError("type=tmpfs,target=/x,from=a", "tmpfs mount should not have a from");
  ExpectError("type=secret,id=a,from=b", "secret mount should not have a from");
  ExpectError("type=ssh,source=/agent", "ssh source currently not supported");
  ExpectError("type=secret", "secret mount requires an id or a target");
}

TEST(ParseRunMountErrorsTest, BadValues) {
  ExpectError("type=cache,target=/x,sharing=wide",
              "unsupported sharing value \"wide\" (want shared, private or locked)");
  ExpectError("type=cache,target=/x,mode=0999", "invalid value for mode: 0999");
  ExpectError("type=cache,target=/x,uid=-1", "invalid value for uid: -1");
  ExpectError("type=tmpfs,target=/t,size=lots", "invalid size: 'lots'");
  ExpectError("type=tmpfs,target=/t,size=1x", "invalid size: '1x'");
  ExpectError("type=secret,id=a,required=perhaps", "invalid value for required: perhaps");
}

TEST(ParseRunMountErrorsTest, ExpansionErrorsKeepThePosition) {
  absl::StatusOr<RunMount> m = ParseRunMount("target=${DEST:?must be set}", Ctx());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("Dockerfile:7:3: --mount=target=${DEST:?must be set}: "));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("must be set"));
}

}  // namespace
}  // namespace farm::scheduler::plan
