// Stage 2 alone: syntax tree → typed instructions in stages. Each instruction's typed form,
// flag checking (unknown, repeated, missing or malformed values), argument counts, and the
// error messages with FILE:LINE:COL.
#include "scheduler/dockerfile/instructions.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::scheduler::dockerfile {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

absl::StatusOr<Dockerfile> Build(absl::string_view text) {
  absl::StatusOr<SyntaxTree> tree = Parse(text, "Dockerfile");
  if (!tree.ok()) return tree.status();
  return BuildInstructions(*tree);
}

Dockerfile MustBuild(absl::string_view text) {
  absl::StatusOr<Dockerfile> df = Build(text);
  EXPECT_TRUE(df.ok()) << df.status();
  return df.ok() ? *std::move(df) : Dockerfile();
}

// The one instruction after "FROM a".
template <typename T>
T Only(absl::string_view instruction) {
  Dockerfile df = MustBuild(absl::StrCat("FROM a\n", instruction));
  EXPECT_EQ(df.stages.size(), 1u);
  if (df.stages.empty() || df.stages[0].instructions.size() != 1) {
    ADD_FAILURE() << "not one instruction: " << instruction;
    return T();
  }
  const T* c = std::get_if<T>(&df.stages[0].instructions[0].command);
  if (c == nullptr) {
    ADD_FAILURE() << "another type: " << instruction;
    return T();
  }
  return *c;
}

// `instruction` on line 2, after "FROM a", fails with "Dockerfile:2:COL: message".
void ExpectError(absl::string_view instruction, int column, absl::string_view message) {
  absl::StatusOr<Dockerfile> df = Build(absl::StrCat("FROM a\n", instruction));
  ASSERT_FALSE(df.ok()) << instruction;
  EXPECT_EQ(df.status().code(), absl::StatusCode::kInvalidArgument) << instruction;
  EXPECT_EQ(df.status().message(), absl::StrCat("Dockerfile:2:", column, ": ", message))
      << instruction;
}

// --- stages -------------------------------------------------------------------------------

TEST(StagesTest, FromFormsAndGrouping) {
  Dockerfile df = MustBuild(
      "ARG BASE=alpine\n"
      "ARG TAG\n"
      "FROM --platform=$BUILDPLATFORM ${BASE}:${TAG} AS Build\n"
      "RUN make\n"
      "FROM scratch\n"
      "COPY --from=build /out /\n"
      "CMD [\"/out\"]\n");
  EXPECT_EQ(df.filename, "Dockerfile");
  ASSERT_EQ(df.meta_args.size(), 2u);
  EXPECT_EQ(df.meta_args[0].key, "BASE");
  EXPECT_EQ(df.meta_args[0].value, std::optional<std::string>("alpine"));
  EXPECT_EQ(df.meta_args[1].key, "TAG");
  EXPECT_EQ(df.meta_args[1].value, std::nullopt);
  EXPECT_EQ(df.meta_arg_positions[1].line, 2);
  ASSERT_EQ(df.stages.size(), 2u);
  const Stage& build = df.stages[0];
  EXPECT_EQ(build.index, 0);
  EXPECT_EQ(build.from.image, "${BASE}:${TAG}");  // expanded by the planner, not here
  EXPECT_EQ(build.from.stage_name, "build");      // lowercased
  EXPECT_EQ(build.from.platform, "$BUILDPLATFORM");
  EXPECT_EQ(build.pos.line, 3);
  ASSERT_EQ(build.instructions.size(), 1u);
  EXPECT_EQ(build.instructions[0].name, "RUN");
  EXPECT_EQ(build.instructions[0].original, "RUN make");
  EXPECT_EQ(build.instructions[0].pos.line, 4);
  const Stage& last = df.stages[1];
  EXPECT_EQ(last.index, 1);
  EXPECT_EQ(last.from.image, "scratch");
  EXPECT_EQ(last.from.stage_name, "");
  EXPECT_EQ(last.original, "FROM scratch");
  ASSERT_EQ(last.instructions.size(), 2u);
  EXPECT_EQ(last.instructions[1].name, "CMD");
  EXPECT_EQ(last.instructions[1].end_line, 7);
}

TEST(StagesTest, EscapeAndWarningsCarryOver) {
  Dockerfile df = MustBuild("# escape=`\nFROM a\nRUN a `\n\n b\n");
  EXPECT_EQ(df.escape, '`');
  ASSERT_EQ(df.warnings.size(), 1u);
  EXPECT_EQ(df.warnings[0].line, 3);
}

TEST(StagesTest, Errors) {
  absl::StatusOr<Dockerfile> df = Build("RUN x\nFROM a\n");
  ASSERT_FALSE(df.ok());
  EXPECT_EQ(df.status().message(),
            "Dockerfile:1:1: RUN: no build stage in current context (only ARG may come before the "
            "first FROM)");
  df = Build("ARG A\n");
  ASSERT_FALSE(df.ok());
  EXPECT_EQ(df.status().message(),
            "Dockerfile:1:1: the Dockerfile has no FROM: no stages to build");
  // A duplicate stage name is BuildKit's DuplicateStageName warning, not an error.
  df = Build("FROM a AS one\nFROM b AS ONE\n");
  ASSERT_TRUE(df.ok()) << df.status();
  ASSERT_EQ(df->warnings.size(), 1u);
  EXPECT_EQ(df->warnings[0].line, 2);
  EXPECT_EQ(df->warnings[0].message,
            "DuplicateStageName: Duplicate stage name \"one\", stage names should be unique "
            "(first defined at line 1)");
  df = Build("FROM a AS 1st\n");
  ASSERT_FALSE(df.ok());
  EXPECT_EQ(df.status().message(),
            "Dockerfile:1:11: invalid name for build stage: \"1st\", name can't start with a "
            "number or contain symbols");
  df = Build("FROM a AS b$c\n");
  ASSERT_FALSE(df.ok());
  EXPECT_THAT(std::string(df.status().message()), ::testing::HasSubstr("\"b$c\""));
  ExpectError("FROM a b", 1, "FROM requires either one or three arguments");
  ExpectError("FROM a AS", 1, "FROM requires either one or three arguments");
  ExpectError("FROM --os=linux a", 6, "unknown flag: os (FROM accepts --platform)");
}

TEST(StagesTest, StageNamesMayUseDigitsDashesDotsUnderscores) {
  Dockerfile df = MustBuild("FROM a AS b-1.x_y\n");
  EXPECT_EQ(df.stages[0].from.stage_name, "b-1.x_y");
}

// --- RUN, CMD, ENTRYPOINT, SHELL --------------------------------------------------------

TEST(RunTest, ShellAndExecForms) {
  RunCmd shell = Only<RunCmd>("RUN echo  $HOME");
  EXPECT_TRUE(shell.command.prepend_shell);
  EXPECT_THAT(shell.command.args, ElementsAre("echo  $HOME"));  // unexpanded
  RunCmd exec = Only<RunCmd>("RUN [\"echo\", \"$HOME\"]");
  EXPECT_FALSE(exec.command.prepend_shell);
  EXPECT_THAT(exec.command.args, ElementsAre("echo", "$HOME"));
}

TEST(RunTest, Flags) {
  RunCmd c = Only<RunCmd>(
      "RUN --mount=type=cache,target=/a --mount=type=secret,id=s --network=none "
      "--security=insecure make");
  EXPECT_THAT(c.mounts, ElementsAre("type=cache,target=/a", "type=secret,id=s"));
  EXPECT_EQ(c.network, "none");
  EXPECT_EQ(c.security, "insecure");
  RunCmd plain = Only<RunCmd>("RUN make");
  EXPECT_THAT(plain.mounts, IsEmpty());
  EXPECT_EQ(plain.network, "");
  EXPECT_EQ(plain.security, "");
}

TEST(RunTest, HeredocAloneIsACommand) {
  RunCmd c = Only<RunCmd>("RUN <<EOF\necho hi\nEOF");
  ASSERT_EQ(c.heredocs.size(), 1u);
  EXPECT_EQ(c.heredocs[0].content, "echo hi\n");
  EXPECT_THAT(c.command.args, ElementsAre("<<EOF"));
}

TEST(RunTest, Errors) {
  ExpectError("RUN", 1, "RUN requires at least one argument");
  ExpectError("RUN --network=none", 1, "RUN requires at least one argument");
  ExpectError("RUN --bogus=1 x", 5,
              "unknown flag: bogus (RUN accepts --mount, --network, --security)");
  ExpectError("RUN --network=host --network=none x", 20, "duplicate flag specified: network");
  ExpectError("RUN --mount x", 5, "missing a value on flag: mount");
  ExpectError("RUN --network x", 5, "missing a value on flag: network");
}

TEST(CmdEntrypointTest, Forms) {
  CmdCmd cmd = Only<CmdCmd>("CMD [\"serve\", \"--port=80\"]");
  EXPECT_FALSE(cmd.command.prepend_shell);
  EXPECT_THAT(cmd.command.args, ElementsAre("serve", "--port=80"));
  CmdCmd shell = Only<CmdCmd>("CMD serve --port=80");
  EXPECT_TRUE(shell.command.prepend_shell);
  EXPECT_THAT(shell.command.args, ElementsAre("serve --port=80"));
  EntrypointCmd ep = Only<EntrypointCmd>("ENTRYPOINT [\"/entry\"]");
  EXPECT_THAT(ep.command.args, ElementsAre("/entry"));
  EntrypointCmd empty = Only<EntrypointCmd>("ENTRYPOINT []");
  EXPECT_FALSE(empty.command.prepend_shell);
  EXPECT_THAT(empty.command.args, IsEmpty());
  ExpectError("CMD --x=1 serve", 5, "unknown flag: x (CMD accepts no flags)");
  ExpectError("ENTRYPOINT --x serve", 12, "unknown flag: x (ENTRYPOINT accepts no flags)");
}

TEST(ShellTest, JsonOnly) {
  ShellCmd c = Only<ShellCmd>("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]");
  EXPECT_THAT(c.shell, ElementsAre("/bin/bash", "-o", "pipefail", "-c"));
  ExpectError("SHELL /bin/bash -c", 1, "SHELL requires the arguments to be in JSON form");
  ExpectError("SHELL []", 1, "SHELL requires at least one argument");
}

// --- key/value and single-word instructions ----------------------------------------------

TEST(EnvLabelTest, PairsAsWritten) {
  EnvCmd env = Only<EnvCmd>("ENV A=1 B=\"x y\"");
  ASSERT_EQ(env.env.size(), 2u);
  EXPECT_EQ(env.env[0].key, "A");
  EXPECT_EQ(env.env[0].value, "1");
  EXPECT_EQ(env.env[1].value, "\"x y\"");  // unquoted by the planner
  EnvCmd legacy = Only<EnvCmd>("ENV A hello world");
  ASSERT_EQ(legacy.env.size(), 1u);
  EXPECT_EQ(legacy.env[0].value, "hello world");
  LabelCmd label = Only<LabelCmd>("LABEL a=b c=d");
  ASSERT_EQ(label.labels.size(), 2u);
  EXPECT_EQ(label.labels[1].key, "c");
  ExpectError("ENV", 1, "ENV requires at least one argument");
  ExpectError("LABEL", 1, "LABEL requires at least one argument");
  ExpectError("ENV A=1 =2", 9, "ENV names can not be blank");
  ExpectError("LABEL =x", 7, "LABEL names can not be blank");
  ExpectError("ENV --x=1 A=1", 5, "unknown flag: x (ENV accepts no flags)");
}

TEST(SingleArgumentTest, MaintainerUserWorkdirStopsignal) {
  EXPECT_EQ(Only<MaintainerCmd>("MAINTAINER Jane Doe <jane@example.com>").maintainer,
            "Jane Doe <jane@example.com>");
  EXPECT_EQ(Only<UserCmd>("USER app:app").user, "app:app");
  EXPECT_EQ(Only<WorkdirCmd>("WORKDIR /src/$APP").path, "/src/$APP");
  EXPECT_EQ(Only<StopSignalCmd>("STOPSIGNAL SIGTERM").signal, "SIGTERM");
  ExpectError("USER", 1, "USER requires exactly one argument");
  ExpectError("WORKDIR", 1, "WORKDIR requires exactly one argument");
  ExpectError("STOPSIGNAL", 1, "STOPSIGNAL requires exactly one argument");
  ExpectError("MAINTAINER", 1, "MAINTAINER requires exactly one argument");
}

TEST(ExposeVolumeArgTest, Lists) {
  EXPECT_THAT(Only<ExposeCmd>("EXPOSE 80 53/udp ${PORT}").ports,
              ElementsAre("80", "53/udp", "${PORT}"));
  EXPECT_THAT(Only<VolumeCmd>("VOLUME /data /logs").volumes, ElementsAre("/data", "/logs"));
  EXPECT_THAT(Only<VolumeCmd>("VOLUME [\"/data\", \" /logs \"]").volumes,
              ElementsAre("/data", "/logs"));
  ArgCmd arg = Only<ArgCmd>("ARG A=1 B C=");
  ASSERT_EQ(arg.args.size(), 3u);
  EXPECT_EQ(arg.args[0].key, "A");
  EXPECT_EQ(arg.args[0].value, std::optional<std::string>("1"));
  EXPECT_EQ(arg.args[1].key, "B");
  EXPECT_EQ(arg.args[1].value, std::nullopt);                    // no default
  EXPECT_EQ(arg.args[2].value, std::optional<std::string>(""));  // an empty default
  ExpectError("EXPOSE", 1, "EXPOSE requires at least one argument");
  ExpectError("VOLUME", 1, "VOLUME requires at least one argument");
  ExpectError("VOLUME [\"/a\", \" \"]", 8, "VOLUME specified can not be an empty string");
  ExpectError("ARG", 1, "ARG requires at least one argument");
  ExpectError("ARG A=1 =2", 9, "ARG names can not be blank");
}

// --- COPY and ADD ---------------------------------------------------------------------------

TEST(CopyTest, SourcesDestinationAndFlags) {
  CopyCmd c = Only<CopyCmd>(
      "COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md "
      "--exclude=.git a b /dst/");
  EXPECT_FALSE(c.add);
  EXPECT_FALSE(c.json);
  EXPECT_THAT(c.sources, ElementsAre("a", "b"));
  EXPECT_EQ(c.dest, "/dst/");
  EXPECT_EQ(c.from, "build");
  EXPECT_EQ(c.chown, "app:app");
  EXPECT_EQ(c.chmod, "0755");
  EXPECT_TRUE(c.link);
  EXPECT_TRUE(c.parents);
  EXPECT_THAT(c.excludes, ElementsAre("*.md", ".git"));
  EXPECT_EQ(c.unpack, std::nullopt);

  CopyCmd json = Only<CopyCmd>("COPY [\"a b\", \"/c d/\"]");
  EXPECT_TRUE(json.json);
  EXPECT_THAT(json.sources, ElementsAre("a b"));
  EXPECT_EQ(json.dest, "/c d/");

  EXPECT_FALSE(Only<CopyCmd>("COPY --link=false a /").link);
  EXPECT_TRUE(Only<CopyCmd>("COPY --link=TRUE a /").link);
}

TEST(CopyTest, AddFlags) {
  CopyCmd c = Only<CopyCmd>(
      "ADD --checksum=sha256:abc --keep-git-dir --unpack=false https://x/y.tgz /opt/");
  EXPECT_TRUE(c.add);
  EXPECT_EQ(c.checksum, "sha256:abc");
  EXPECT_TRUE(c.keep_git_dir);
  EXPECT_EQ(c.unpack, std::optional<bool>(false));
  EXPECT_EQ(Only<CopyCmd>("ADD --unpack a /").unpack, std::optional<bool>(true));
  EXPECT_EQ(Only<CopyCmd>("ADD a /").unpack, std::nullopt);
}

TEST(CopyTest, HeredocSources) {
  CopyCmd c = Only<CopyCmd>("COPY <<A <<-B /etc/\nalpha\nA\n\tbeta\n\tB");
  EXPECT_THAT(c.sources, ElementsAre("<<A", "<<B"));
  ASSERT_EQ(c.heredocs.size(), 2u);
  EXPECT_EQ(c.heredocs[0].name, "A");
  EXPECT_EQ(c.heredocs[0].content, "alpha\n");
  EXPECT_EQ(c.heredocs[1].name, "B");
  EXPECT_EQ(c.heredocs[1].content, "beta\n");  // <<- strips the tabs here
  EXPECT_EQ(c.dest, "/etc/");
}

TEST(CopyTest, Errors) {
  ExpectError("COPY a", 1,
              "COPY requires at least two arguments, but only one was provided. Destination "
              "could not be determined.");
  ExpectError("ADD", 1,
              "ADD requires at least two arguments, but only one was provided. Destination could "
              "not be determined.");
  ExpectError("COPY a <<EOF\nx\nEOF", 8, "COPY cannot accept a heredoc as a destination");
  ExpectError("COPY --checksum=sha256:a a /", 6,
              "unknown flag: checksum (COPY accepts --chmod, --chown, --exclude, --from, --link, "
              "--parents)");
  ExpectError("ADD --from=x a /", 5,
              "unknown flag: from (ADD accepts --checksum, --chmod, --chown, --exclude, "
              "--keep-git-dir, --link, --unpack)");
  ExpectError("COPY --link=maybe a /", 6, "expecting boolean value for flag link, not: maybe");
  ExpectError("COPY --link= a /", 6, "missing a value on flag: link");
  ExpectError("COPY --chown=a --chown=b a /", 16, "duplicate flag specified: chown");
  ExpectError("COPY --from a /", 6, "missing a value on flag: from");
}

// --- ONBUILD and HEALTHCHECK ---------------------------------------------------------------

TEST(OnbuildTest, TheTriggerAsWritten) {
  EXPECT_EQ(Only<OnbuildCmd>("ONBUILD RUN  make install").expression, "RUN  make install");
  EXPECT_EQ(Only<OnbuildCmd>("ONBUILD RUN <<EOF\nmake\nEOF").expression, "RUN <<EOF\nmake\nEOF");
  ExpectError("ONBUILD", 1, "ONBUILD requires at least one argument");
  ExpectError("ONBUILD ONBUILD RUN x", 1, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  ExpectError("ONBUILD FROM x", 1, "FROM isn't allowed as an ONBUILD trigger");
  ExpectError("ONBUILD MAINTAINER me", 1, "MAINTAINER isn't allowed as an ONBUILD trigger");
  // The trigger is checked now, with its own position.
  ExpectError("ONBUILD COPY a", 9,
              "COPY requires at least two arguments, but only one was provided. Destination "
              "could not be determined.");
  ExpectError("ONBUILD RUNN x", 9, "unknown instruction: RUNN (did you mean RUN?)");
}

TEST(HealthcheckTest, Forms) {
  HealthcheckCmd shell = Only<HealthcheckCmd>(
      "HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --start-interval=5s "
      "--retries=3 CMD curl -f http://localhost/");
  EXPECT_FALSE(shell.none);
  EXPECT_TRUE(shell.test.prepend_shell);
  EXPECT_THAT(shell.test.args, ElementsAre("CMD-SHELL", "curl -f http://localhost/"));
  EXPECT_EQ(shell.interval_ns, 30'000'000'000);
  EXPECT_EQ(shell.timeout_ns, 3'000'000'000);
  EXPECT_EQ(shell.start_period_ns, 90'000'000'000);
  EXPECT_EQ(shell.start_interval_ns, 5'000'000'000);
  EXPECT_EQ(shell.retries, 3);

  HealthcheckCmd exec = Only<HealthcheckCmd>("HEALTHCHECK cmd [\"/check\", \"-q\"]");
  EXPECT_FALSE(exec.test.prepend_shell);
  EXPECT_THAT(exec.test.args, ElementsAre("CMD", "/check", "-q"));
  EXPECT_EQ(exec.interval_ns, 0);
  EXPECT_EQ(exec.retries, 0);

  HealthcheckCmd none = Only<HealthcheckCmd>("HEALTHCHECK NONE");
  EXPECT_TRUE(none.none);
  EXPECT_THAT(none.test.args, ElementsAre("NONE"));
}

TEST(HealthcheckTest, Errors) {
  ExpectError("HEALTHCHECK", 1, "HEALTHCHECK requires at least one argument");
  ExpectError("HEALTHCHECK NONE x", 1, "HEALTHCHECK NONE takes no arguments");
  ExpectError("HEALTHCHECK --retries=1 NONE", 1, "HEALTHCHECK NONE takes no options");
  ExpectError("HEALTHCHECK FOO x", 13, "Unknown type \"FOO\" in HEALTHCHECK (try CMD)");
  ExpectError("HEALTHCHECK CMD", 1, "Missing command after HEALTHCHECK CMD");
  ExpectError("HEALTHCHECK --interval=5 CMD x", 1,
              "--interval: time: missing unit in duration \"5\"");
  ExpectError("HEALTHCHECK --timeout=soon CMD x", 1, "--timeout: time: invalid duration \"soon\"");
  ExpectError("HEALTHCHECK --interval=500us CMD x", 1,
              "Interval \"interval\" cannot be less than 1ms");
  ExpectError("HEALTHCHECK --retries=x CMD x", 1, "--retries: invalid number \"x\"");
  ExpectError("HEALTHCHECK --retries=-1 CMD x", 1, "--retries cannot be negative (-1)");
  ExpectError("HEALTHCHECK --retries=3000000000 CMD x", 1,
              "--retries: invalid number \"3000000000\"");
  ExpectError("HEALTHCHECK --count=1 CMD x", 13,
              "unknown flag: count (HEALTHCHECK accepts --interval, --retries, --start-interval, "
              "--start-period, --timeout)");
}

// --- unknown instructions, ParseInstruction, ParseGoDuration ------------------------------

TEST(UnknownInstructionTest, SuggestsTheClosestKeyword) {
  ExpectError("RUNN make", 1, "unknown instruction: RUNN (did you mean RUN?)");
  ExpectError("  copyy a b", 3, "unknown instruction: copyy (did you mean COPY?)");
  ExpectError("WORKDIRECTORY /a", 1, "unknown instruction: WORKDIRECTORY");
  ExpectError("XYZZY", 1, "unknown instruction: XYZZY");
}

TEST(ParseInstructionTest, OneNodeOutsideAStage) {
  absl::StatusOr<Node> node = ParseLine("RUN make", '\\', "trigger", 3);
  ASSERT_TRUE(node.ok());
  absl::StatusOr<Instruction> ins = ParseInstruction(*node, "trigger");
  ASSERT_TRUE(ins.ok()) << ins.status();
  EXPECT_EQ(ins->name, "RUN");
  EXPECT_EQ(ins->pos.line, 3);
  ASSERT_TRUE(std::holds_alternative<RunCmd>(ins->command));

  absl::StatusOr<Node> from = ParseLine("FROM x", '\\', "trigger", 3);
  ASSERT_TRUE(from.ok());
  absl::StatusOr<Instruction> bad = ParseInstruction(*from, "trigger");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "trigger:3:1: FROM isn't allowed here");
}

TEST(ParseGoDurationTest, GoSyntax) {
  EXPECT_EQ(*ParseGoDuration("0"), 0);
  EXPECT_EQ(*ParseGoDuration("1ns"), 1);
  EXPECT_EQ(*ParseGoDuration("1us"), 1'000);
  EXPECT_EQ(*ParseGoDuration("1\xC2\xB5s"), 1'000);
  EXPECT_EQ(*ParseGoDuration("500ms"), 500'000'000);
  EXPECT_EQ(*ParseGoDuration("1m30s"), 90'000'000'000);
  EXPECT_EQ(*ParseGoDuration("1.5h"), 5'400'000'000'000);
  EXPECT_EQ(*ParseGoDuration(".5s"), 500'000'000);
  EXPECT_EQ(*ParseGoDuration("-2s"), -2'000'000'000);
  EXPECT_EQ(*ParseGoDuration("+2s"), 2'000'000'000);
  EXPECT_EQ(ParseGoDuration("").status().message(), "time: invalid duration \"\"");
  EXPECT_EQ(ParseGoDuration("5").status().message(), "time: missing unit in duration \"5\"");
  EXPECT_EQ(ParseGoDuration("5d").status().message(),
            "time: unknown unit \"d\" in duration \"5d\"");
  EXPECT_EQ(ParseGoDuration("s").status().message(), "time: invalid duration \"s\"");
  EXPECT_EQ(ParseGoDuration("3000000h").status().message(), "time: invalid duration \"3000000h\"");
  EXPECT_EQ(ParseGoDuration("5").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace farm::scheduler::dockerfile
