// Stage 1 alone: text → syntax tree. Directives, the escape token, continuation lines,
// heredocs, JSON vs shell form, builder flags, positions, and the parser's own errors
// (FILE:LINE:COL). The golden cases in scheduler/testdata run the whole front end; these pin
// the parser's part of it.
#include "scheduler/dockerfile/parser.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace farm::scheduler::dockerfile {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

SyntaxTree MustParse(absl::string_view text) {
  absl::StatusOr<SyntaxTree> t = Parse(text, "Dockerfile");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : SyntaxTree();
}

// The one node of a one-instruction Dockerfile.
Node One(absl::string_view text) {
  SyntaxTree t = MustParse(text);
  EXPECT_EQ(t.nodes.size(), 1u) << text;
  return t.nodes.empty() ? Node() : std::move(t.nodes[0]);
}

void ExpectError(absl::string_view text, absl::string_view message) {
  absl::StatusOr<SyntaxTree> t = Parse(text, "Dockerfile");
  ASSERT_FALSE(t.ok()) << text;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_EQ(t.status().message(), message) << text;
}

MATCHER_P2(At, line, column, "") { return arg.line == line && arg.column == column; }

// --- directives -------------------------------------------------------------------------

TEST(DirectivesTest, SyntaxEscapeAndCheckAtTheTop) {
  SyntaxTree t = MustParse(
      "# syntax=docker/dockerfile:1\n"
      "#ESCAPE =  `  \n"
      "# check=skip=all\n"
      "FROM a\n");
  ASSERT_EQ(t.directives.size(), 3u);
  EXPECT_EQ(t.directives[0].name, "syntax");
  EXPECT_EQ(t.directives[0].value, "docker/dockerfile:1");
  EXPECT_EQ(t.directives[0].line, 1);
  EXPECT_EQ(t.directives[1].name, "escape");  // names are case-insensitive, lowercased
  EXPECT_EQ(t.directives[1].value, "`");      // blanks around the value are not part of it
  EXPECT_EQ(t.directives[1].line, 2);
  EXPECT_EQ(t.directives[2].name, "check");
  EXPECT_EQ(t.directives[2].value, "skip=all");
  EXPECT_EQ(t.escape, '`');
  ASSERT_EQ(t.nodes.size(), 1u);
  EXPECT_EQ(t.nodes[0].start.line, 4);
}

TEST(DirectivesTest, OnlyBeforeAnyOtherLine) {
  // After an ordinary comment, a directive-looking line is a comment.
  SyntaxTree after_comment = MustParse("# hello\n# escape=`\nFROM a\n");
  EXPECT_THAT(after_comment.directives, IsEmpty());
  EXPECT_EQ(after_comment.escape, '\\');
  // After an instruction too.
  SyntaxTree after_from = MustParse("FROM a\n# escape=`\nRUN x\n");
  EXPECT_THAT(after_from.directives, IsEmpty());
  EXPECT_EQ(after_from.escape, '\\');
  // An unknown directive name ends the directives (and is not one).
  SyntaxTree unknown = MustParse("# foo=bar\n# escape=`\nFROM a\n");
  EXPECT_THAT(unknown.directives, IsEmpty());
  EXPECT_EQ(unknown.escape, '\\');
}

TEST(DirectivesTest, Errors) {
  ExpectError("# escape=\\\n# escape=`\nFROM a\n",
              "Dockerfile:2:1: only one escape parser directive can be used");
  ExpectError("# Syntax=a\n# syntax=b\nFROM a\n",
              "Dockerfile:2:1: only one syntax parser directive can be used");
  ExpectError("# escape=x\nFROM a\n",
              "Dockerfile:1:1: invalid escape token 'x' does not match ` or \\");
  ExpectError("  # escape=ab\nFROM a\n",
              "Dockerfile:1:3: invalid escape token 'ab' does not match ` or \\");
}

// --- the escape token and continuation lines -------------------------------------------

TEST(ContinuationTest, JoinsLinesAndKeepsTheirBlanks) {
  SyntaxTree t =
      MustParse("FROM a\nRUN apt-get update \\\n    && apt-get install -y x\nUSER app\n");
  ASSERT_EQ(t.nodes.size(), 3u);
  const Node& run = t.nodes[1];
  EXPECT_EQ(run.keyword, "run");
  EXPECT_THAT(run.args, ElementsAre("apt-get update     && apt-get install -y x"));
  EXPECT_EQ(run.original, "RUN apt-get update     && apt-get install -y x");
  EXPECT_THAT(run.start, At(2, 1));
  EXPECT_EQ(run.end_line, 3);
  EXPECT_THAT(t.nodes[2].start, At(4, 1));
  EXPECT_THAT(t.warnings, IsEmpty());
}

TEST(ContinuationTest, BlanksAfterTheEscapeStillContinue) {
  Node run = One("RUN a \\ \t\n b\n");
  EXPECT_THAT(run.args, ElementsAre("a  b"));
  EXPECT_EQ(run.end_line, 2);
}

TEST(ContinuationTest, CommentLinesInsideAreDropped) {
  Node run =
      One("RUN a \\\n"
          "# a comment\n"
          "    # an indented comment \\\n"
          "  b\n");
  EXPECT_THAT(run.args, ElementsAre("a   b"));
  EXPECT_EQ(run.original, "RUN a   b");
  EXPECT_EQ(run.end_line, 4);
}

TEST(ContinuationTest, EmptyLinesInsideAreDroppedWithAWarning) {
  SyntaxTree t = MustParse("FROM a\nRUN a \\\n\n   \n  b\nUSER u\n");
  ASSERT_EQ(t.nodes.size(), 3u);
  EXPECT_THAT(t.nodes[1].args, ElementsAre("a   b"));
  EXPECT_EQ(t.nodes[1].end_line, 5);
  ASSERT_EQ(t.warnings.size(), 1u);
  EXPECT_EQ(t.warnings[0].line, 2);
  EXPECT_EQ(t.warnings[0].message, "Empty continuation line found in: RUN a   b");
}

TEST(ContinuationTest, AtTheEndOfTheFile) {
  SyntaxTree t = MustParse("FROM a\nRUN echo \\");
  ASSERT_EQ(t.nodes.size(), 2u);
  EXPECT_THAT(t.nodes[1].args, ElementsAre("echo"));
  EXPECT_EQ(t.nodes[1].end_line, 2);
}

TEST(EscapeTokenTest, BacktickContinuesAndBackslashIsPlain) {
  SyntaxTree t = MustParse(
      "# escape=`\n"
      "FROM scratch\n"
      "COPY c:\\dir\\file.txt `\n"
      "     /dest/\n"
      "RUN dir c:\\\n"
      "USER app\n");
  EXPECT_EQ(t.escape, '`');
  ASSERT_EQ(t.nodes.size(), 4u);
  EXPECT_THAT(t.nodes[1].args, ElementsAre("c:\\dir\\file.txt", "/dest/"));
  EXPECT_EQ(t.nodes[1].end_line, 4);
  // A trailing backslash is not a continuation here: USER is an instruction of its own.
  EXPECT_THAT(t.nodes[2].args, ElementsAre("dir c:\\"));
  EXPECT_EQ(t.nodes[2].end_line, 5);
  EXPECT_EQ(t.nodes[3].keyword, "user");
}

TEST(LinesTest, ByteOrderMarkCrlfAndIndentation) {
  SyntaxTree t = MustParse(
      "\xEF\xBB\xBF"
      "FROM a\r\nRUN b \\\r\n c\r\n   USER u\r\n");
  ASSERT_EQ(t.nodes.size(), 3u);
  EXPECT_EQ(t.nodes[0].keyword, "from");
  EXPECT_THAT(t.nodes[0].start, At(1, 1));
  EXPECT_THAT(t.nodes[1].args, ElementsAre("b  c"));
  EXPECT_THAT(t.nodes[2].start, At(4, 4));
  EXPECT_THAT(t.nodes[2].args, ElementsAre("u"));
}

TEST(LinesTest, CommentsBeforeAnInstructionAreKept) {
  SyntaxTree t = MustParse("# not this one\n#\n# build stage\n#   second line  \nFROM a\nRUN b\n");
  ASSERT_EQ(t.nodes.size(), 2u);
  // An empty comment line starts the block over.
  EXPECT_THAT(t.nodes[0].comments, ElementsAre("build stage", "second line"));
  EXPECT_THAT(t.nodes[1].comments, IsEmpty());
}

TEST(LinesTest, KeywordsAreCaseInsensitive) {
  Node n = One("rUn echo\n");
  EXPECT_EQ(n.command, "rUn");
  EXPECT_EQ(n.keyword, "run");
}

// --- JSON and shell forms ----------------------------------------------------------------

TEST(FormsTest, ExecFormIsAJsonArrayOfStrings) {
  Node cmd = One("CMD [ \"/bin/echo\", \"a b\", \"\\u00e9\" ]\n");
  EXPECT_TRUE(cmd.json);
  EXPECT_THAT(cmd.args, ElementsAre("/bin/echo", "a b", "\xC3\xA9"));
  Node empty = One("ENTRYPOINT []\n");
  EXPECT_TRUE(empty.json);
  EXPECT_THAT(empty.args, IsEmpty());
}

TEST(FormsTest, InvalidJsonIsShellForm) {
  Node cmd = One("CMD [a, b]\n");
  EXPECT_FALSE(cmd.json);
  EXPECT_THAT(cmd.args, ElementsAre("[a, b]"));
  Node run = One("RUN [\"unterminated\"\n");
  EXPECT_FALSE(run.json);
  EXPECT_THAT(run.args, ElementsAre("[\"unterminated\""));
}

TEST(FormsTest, ShellFormIsTheRestOfTheLine) {
  Node run = One("RUN   echo  \"a  b\"   \n");
  EXPECT_FALSE(run.json);
  EXPECT_THAT(run.args, ElementsAre("echo  \"a  b\""));
  EXPECT_THAT(run.arg_positions, ElementsAre(At(1, 7)));
  EXPECT_THAT(One("USER app:app\n").args, ElementsAre("app:app"));
  EXPECT_THAT(One("WORKDIR /a b\n").args, ElementsAre("/a b"));
  EXPECT_THAT(One("BOGUS some words\n").args, ElementsAre("some words"));
}

TEST(FormsTest, CopyAndFromSplitOnWhitespace) {
  Node copy = One("COPY a  b\t/c/\n");
  EXPECT_FALSE(copy.json);
  EXPECT_THAT(copy.args, ElementsAre("a", "b", "/c/"));
  EXPECT_THAT(copy.arg_positions, ElementsAre(At(1, 6), At(1, 9), At(1, 11)));
  Node json = One("COPY [\"a b\", \"/c\"]\n");
  EXPECT_TRUE(json.json);
  EXPECT_THAT(json.args, ElementsAre("a b", "/c"));
  EXPECT_THAT(One("FROM alpine AS build\n").args, ElementsAre("alpine", "AS", "build"));
}

TEST(FormsTest, EnvAndLabelKeyValues) {
  Node env = One("ENV A=1 B=\"two words\" C=x\\ y\n");
  ASSERT_EQ(env.key_values.size(), 3u);
  EXPECT_EQ(env.key_values[0].key, "A");
  EXPECT_EQ(env.key_values[0].value, "1");
  EXPECT_EQ(env.key_values[1].key, "B");
  EXPECT_EQ(env.key_values[1].value, "\"two words\"");  // quotes are stage 2's to remove
  EXPECT_EQ(env.key_values[2].value, "x\\ y");
  EXPECT_FALSE(env.key_values[0].legacy);
  EXPECT_THAT(env.arg_positions, ElementsAre(At(1, 5), At(1, 9), At(1, 23)));

  Node legacy = One("ENV GREETING hello   world\n");
  ASSERT_EQ(legacy.key_values.size(), 1u);
  EXPECT_EQ(legacy.key_values[0].key, "GREETING");
  EXPECT_EQ(legacy.key_values[0].value, "hello   world");
  EXPECT_TRUE(legacy.key_values[0].legacy);

  Node label = One("LABEL org.opencontainers.image.title=\"farm\"\n");
  ASSERT_EQ(label.key_values.size(), 1u);
  EXPECT_EQ(label.key_values[0].key, "org.opencontainers.image.title");
}

TEST(FormsTest, ArgWordsKeepQuotes) {
  Node arg = One("ARG A=\"x y\" B\n");
  EXPECT_THAT(arg.args, ElementsAre("A=\"x y\"", "B"));
}

TEST(FormsTest, HealthcheckTypeThenCommand) {
  Node shell = One("HEALTHCHECK --interval=5s CMD curl -f localhost\n");
  EXPECT_THAT(shell.flags, ElementsAre("--interval=5s"));
  EXPECT_THAT(shell.args, ElementsAre("CMD", "curl -f localhost"));
  EXPECT_FALSE(shell.json);
  Node exec = One("HEALTHCHECK CMD [\"/check\", \"-q\"]\n");
  EXPECT_TRUE(exec.json);
  EXPECT_THAT(exec.args, ElementsAre("CMD", "/check", "-q"));
  EXPECT_THAT(One("HEALTHCHECK NONE\n").args, ElementsAre("NONE"));
}

TEST(FormsTest, OnbuildHoldsItsTrigger) {
  Node n = One("ONBUILD  RUN --network=none make\n");
  EXPECT_THAT(n.args, ElementsAre("RUN --network=none make"));
  ASSERT_NE(n.onbuild, nullptr);
  EXPECT_EQ(n.onbuild->keyword, "run");
  EXPECT_THAT(n.onbuild->flags, ElementsAre("--network=none"));
  EXPECT_THAT(n.onbuild->args, ElementsAre("make"));
  EXPECT_THAT(n.onbuild->start, At(1, 10));
  Node copy = n.Clone();
  ASSERT_NE(copy.onbuild, nullptr);
  EXPECT_NE(copy.onbuild.get(), n.onbuild.get());
  EXPECT_THAT(copy.onbuild->args, ElementsAre("make"));
}

TEST(FormsTest, NonStringJsonArraysAreErrors) {
  ExpectError("FROM a\nCMD [\"a\", 1]\n",
              "Dockerfile:2:5: when using JSON array syntax, arrays must be comprised of strings "
              "only");
  ExpectError("FROM a\nCOPY [[\"a\"], \"/b\"]\n",
              "Dockerfile:2:6: when using JSON array syntax, arrays must be comprised of strings "
              "only");
  ExpectError("HEALTHCHECK CMD [true]\n",
              "Dockerfile:1:17: when using JSON array syntax, arrays must be comprised of strings "
              "only");
}

TEST(FormsTest, EnvAndLabelErrors) {
  ExpectError("FROM a\nENV A\n", "Dockerfile:2:5: ENV must have two arguments");
  ExpectError("FROM a\nLABEL  x\n", "Dockerfile:2:8: LABEL must have two arguments");
  ExpectError("FROM a\nENV A=1 B\n",
              "Dockerfile:2:9: Syntax error - can't find = in \"B\". Must be of the form: "
              "name=value");
}

// --- builder flags ------------------------------------------------------------------------

TEST(FlagsTest, LeadingDoubleDashWordsWithPositions) {
  Node copy = One("COPY --from=build --chown=a:b  src dst\n");
  EXPECT_THAT(copy.flags, ElementsAre("--from=build", "--chown=a:b"));
  EXPECT_THAT(copy.flag_positions, ElementsAre(At(1, 6), At(1, 19)));
  EXPECT_THAT(copy.args, ElementsAre("src", "dst"));
  EXPECT_THAT(copy.arg_positions, ElementsAre(At(1, 32), At(1, 36)));
}

TEST(FlagsTest, OnContinuationLines) {
  Node run =
      One("RUN --mount=type=cache,target=/x \\\n"
          "    --network=none \\\n"
          "    echo ok\n");
  EXPECT_THAT(run.flags, ElementsAre("--mount=type=cache,target=/x", "--network=none"));
  EXPECT_THAT(run.flag_positions, ElementsAre(At(1, 5), At(2, 5)));
  EXPECT_THAT(run.args, ElementsAre("echo ok"));
  EXPECT_THAT(run.arg_positions, ElementsAre(At(3, 5)));
}

TEST(FlagsTest, QuotesAndEscapesInsideAFlag) {
  Node run = One("RUN --mount=\"type=bind,target=/a b\" --x=c\\ d echo\n");
  EXPECT_THAT(run.flags, ElementsAre("--mount=type=bind,target=/a b", "--x=c d"));
  EXPECT_THAT(run.args, ElementsAre("echo"));
}

TEST(FlagsTest, WhatIsNotAFlag) {
  // Flags come first: a --word after the arguments belongs to the command.
  Node run = One("RUN echo --verbose\n");
  EXPECT_THAT(run.flags, IsEmpty());
  EXPECT_THAT(run.args, ElementsAre("echo --verbose"));
  // A single dash is an argument.
  EXPECT_THAT(One("RUN -x\n").flags, IsEmpty());
  // "--" ends the flags and is dropped.
  Node copy = One("COPY --link -- --odd-name /dst\n");
  EXPECT_THAT(copy.flags, ElementsAre("--link"));
  EXPECT_THAT(copy.args, ElementsAre("--odd-name", "/dst"));
}

// --- heredocs -----------------------------------------------------------------------------

TEST(HeredocTest, RunWithABody) {
  SyntaxTree t = MustParse("FROM a\nRUN <<EOF\necho hi\n  echo there\nEOF\nUSER u\n");
  ASSERT_EQ(t.nodes.size(), 3u);
  const Node& run = t.nodes[1];
  EXPECT_THAT(run.args, ElementsAre("<<EOF"));
  ASSERT_EQ(run.heredocs.size(), 1u);
  EXPECT_EQ(run.heredocs[0].name, "EOF");
  EXPECT_EQ(run.heredocs[0].content, "echo hi\n  echo there\n");
  EXPECT_TRUE(run.heredocs[0].expand);
  EXPECT_FALSE(run.heredocs[0].chomp);
  EXPECT_EQ(run.heredocs[0].fd, 0);
  EXPECT_EQ(run.end_line, 5);
  EXPECT_THAT(t.nodes[2].start, At(6, 1));
}

TEST(HeredocTest, QuotedDelimitersDoNotExpand) {
  Node single = One("COPY <<'EOF' /a\n$X\nEOF\n");
  ASSERT_EQ(single.heredocs.size(), 1u);
  EXPECT_EQ(single.heredocs[0].name, "EOF");
  EXPECT_FALSE(single.heredocs[0].expand);
  EXPECT_EQ(single.heredocs[0].content, "$X\n");
  Node dquote = One("COPY <<\"EOF\" /a\n$X\nEOF\n");
  EXPECT_FALSE(dquote.heredocs[0].expand);
}

TEST(HeredocTest, ChompMatchesATabIndentedTerminator) {
  Node run = One("RUN <<-EOF\n\techo hi\n\tEOF\n");
  ASSERT_EQ(run.heredocs.size(), 1u);
  EXPECT_TRUE(run.heredocs[0].chomp);
  EXPECT_EQ(run.heredocs[0].content, "\techo hi\n");  // tabs go in stage 2 / the planner
  EXPECT_EQ(run.end_line, 3);
}

TEST(HeredocTest, SeveralOnOneLineInOrderAndFileDescriptors) {
  Node run = One("RUN <<A 3<<B cat - /dev/fd/3\na\nA\nb\nB\n");
  ASSERT_EQ(run.heredocs.size(), 2u);
  EXPECT_EQ(run.heredocs[0].name, "A");
  EXPECT_EQ(run.heredocs[0].content, "a\n");
  EXPECT_EQ(run.heredocs[0].fd, 0);
  EXPECT_EQ(run.heredocs[1].name, "B");
  EXPECT_EQ(run.heredocs[1].content, "b\n");
  EXPECT_EQ(run.heredocs[1].fd, 3);
  EXPECT_EQ(run.end_line, 5);
}

TEST(HeredocTest, OnlyRunCopyAddInShellForm) {
  // CMD takes no heredoc: the body lines are instructions of their own.
  SyntaxTree cmd = MustParse("CMD <<EOF\nx\nEOF\n");
  ASSERT_EQ(cmd.nodes.size(), 3u);
  EXPECT_THAT(cmd.nodes[0].heredocs, IsEmpty());
  EXPECT_EQ(cmd.nodes[1].keyword, "x");
  // Nor does the exec form.
  SyntaxTree json = MustParse("RUN [\"cat\", \"<<EOF\"]\nUSER u\n");
  ASSERT_EQ(json.nodes.size(), 2u);
  EXPECT_THAT(json.nodes[0].heredocs, IsEmpty());
}

TEST(HeredocTest, OnbuildTriggerGetsTheBodyToo) {
  Node n = One("ONBUILD RUN <<EOF\nmake\nEOF\n");
  ASSERT_EQ(n.heredocs.size(), 1u);
  ASSERT_NE(n.onbuild, nullptr);
  ASSERT_EQ(n.onbuild->heredocs.size(), 1u);
  EXPECT_EQ(n.onbuild->heredocs[0].content, "make\n");
  EXPECT_EQ(n.onbuild->end_line, 3);
}

TEST(HeredocTest, UnterminatedIsAnErrorAtItsStart) {
  ExpectError("FROM a\nRUN <<EOF\nline\n",
              "Dockerfile:2:5: unterminated heredoc: no line \"EOF\" closes the heredoc started "
              "here");
  ExpectError(
      "FROM a\nRUN <<A <<B\na\nA\n",
      "Dockerfile:2:9: unterminated heredoc: no line \"B\" closes the heredoc started here");
}

TEST(ParseHeredocWordTest, Forms) {
  absl::StatusOr<Heredoc> h = ParseHeredocWord("<<EOF");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->name, "EOF");
  EXPECT_TRUE(h->expand);
  EXPECT_FALSE(h->chomp);
  h = ParseHeredocWord("<<-'END'");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->name, "END");
  EXPECT_TRUE(h->chomp);
  EXPECT_FALSE(h->expand);
  h = ParseHeredocWord("<<E\"O\"F");  // any quoted part turns expansion off
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->name, "EOF");
  EXPECT_FALSE(h->expand);
  h = ParseHeredocWord("12<<X");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->fd, 12);
  for (const char* no : {"EOF", "<<", "<EOF", "<<a<b", "x<<EOF"}) {
    h = ParseHeredocWord(no);
    ASSERT_TRUE(h.ok()) << no;
    EXPECT_EQ(h->name, "") << no;
  }
  EXPECT_FALSE(ParseHeredocWord("<<'EOF").ok());
  absl::StatusOr<Heredoc> big = ParseHeredocWord("2000<<EOF");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().message(), "invalid file descriptor \"2000\" in heredoc \"2000<<EOF\"");
}

TEST(ChompHeredocContentTest, StripsLeadingTabsOnly) {
  EXPECT_EQ(ChompHeredocContent("\t\ta\n\t b\n c\t\n"), "a\n b\n c\t\n");
  EXPECT_EQ(ChompHeredocContent(""), "");
}

// --- errors, ParseLine, JSON -------------------------------------------------------------

TEST(ParseTest, AFileWithoutInstructionsIsAnError) {
  ExpectError("", "Dockerfile:1:1: file with no instructions");
  ExpectError("# only\n\n   \n# comments\n", "Dockerfile:1:1: file with no instructions");
  absl::StatusOr<SyntaxTree> t = Parse("", "path/to/Containerfile");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "path/to/Containerfile:1:1: file with no instructions");
}

TEST(ParseTest, ErrorAtFormat) {
  absl::Status s = ErrorAt("Dockerfile", Position{12, 3}, "what");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "Dockerfile:12:3: what");
}

TEST(ParseLineTest, OneInstructionAtAGivenLine) {
  absl::StatusOr<Node> n = ParseLine("COPY --chown=1 a b", '\\', "trigger", 7);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->keyword, "copy");
  EXPECT_THAT(n->start, At(7, 1));
  EXPECT_EQ(n->end_line, 7);
  EXPECT_THAT(n->flags, ElementsAre("--chown=1"));
  EXPECT_THAT(n->args, ElementsAre("a", "b"));
  absl::StatusOr<Node> bad = ParseLine("CMD [1]", '\\', "trigger", 7);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "trigger:7:5: when using JSON array syntax, arrays must be comprised of strings only");
}

TEST(SyntaxTreeToJsonTest, DocumentedShape) {
  SyntaxTree t = MustParse("# escape=`\nFROM a\nONBUILD RUN <<EOF\nx\nEOF\nENV A b\n");
  nlohmann::json j = nlohmann::json::parse(SyntaxTreeToJson(t));
  EXPECT_EQ(j["file"], "Dockerfile");
  EXPECT_EQ(j["escape"], "`");
  EXPECT_EQ(j["directives"][0]["name"], "escape");
  EXPECT_EQ(j["directives"][0]["line"], 1);
  ASSERT_EQ(j["instructions"].size(), 3u);
  const nlohmann::json& onbuild = j["instructions"][1];
  EXPECT_EQ(onbuild["name"], "ONBUILD");
  EXPECT_EQ(onbuild["start"]["line"], 3);
  EXPECT_EQ(onbuild["end_line"], 5);
  EXPECT_EQ(onbuild["form"], "shell");
  EXPECT_EQ(onbuild["heredocs"][0]["name"], "EOF");
  EXPECT_EQ(onbuild["heredocs"][0]["content"], "x\n");
  EXPECT_EQ(onbuild["trigger"]["name"], "RUN");
  const nlohmann::json& env = j["instructions"][2];
  EXPECT_EQ(env["key_values"][0]["key"], "A");
  EXPECT_EQ(env["key_values"][0]["legacy"], true);
  EXPECT_FALSE(j["instructions"][0].contains("key_values"));
}

// --- TrimContinuation: an escaped escape at the end is no continuation --------------------

bool Continues(std::string line, char escape = '\\', std::string* rest = nullptr) {
  bool continued = TrimContinuation(&line, escape);
  if (rest != nullptr) *rest = line;
  return continued;
}

TEST(TrimContinuationTest, EscapeAtTheEndContinues) {
  std::string rest;
  EXPECT_TRUE(Continues("RUN echo a \\", '\\', &rest));
  EXPECT_EQ(rest, "RUN echo a ");
  EXPECT_TRUE(Continues("RUN echo a\\ \t ", '\\', &rest));
  EXPECT_EQ(rest, "RUN echo a");
  EXPECT_TRUE(Continues("\\", '\\', &rest));
  EXPECT_EQ(rest, "");
  EXPECT_TRUE(Continues("RUN a `", '`', &rest));
  EXPECT_EQ(rest, "RUN a ");
}

TEST(TrimContinuationTest, EscapedEscapeDoesNotContinue) {
  // BuildKit: ([^\\])\\[ \t]*$|^\\[ \t]*$ — an escape preceded by an escape is no continuation.
  std::string rest;
  EXPECT_FALSE(Continues("RUN echo foo \\\\", '\\', &rest));
  EXPECT_EQ(rest, "RUN echo foo \\\\");
  EXPECT_FALSE(Continues("RUN echo foo \\\\  ", '\\'));
  EXPECT_FALSE(Continues("\\\\", '\\'));
  EXPECT_FALSE(Continues("RUN echo foo ``", '`'));
  // Only the character before counts: three escapes do not continue either.
  EXPECT_FALSE(Continues("RUN echo \\\\\\", '\\'));
  // With escape=` a trailing backslash is an ordinary character, and the reverse.
  EXPECT_FALSE(Continues("RUN echo C:\\", '`'));
  EXPECT_FALSE(Continues("RUN echo `", '\\'));
}

TEST(TrimContinuationTest, NoEscape) {
  EXPECT_FALSE(Continues("RUN echo a"));
  EXPECT_FALSE(Continues(""));
  EXPECT_FALSE(Continues("RUN echo a\\b"));
}

TEST(ParseTest, LineEndingInEscapedEscapeIsAnInstructionOfItsOwn) {
  absl::StatusOr<SyntaxTree> tree = Parse(
      "FROM busybox\n"
      "RUN echo foo \\\\\n"
      "RUN echo bar\n"
      "ENV A=value\\\\\n"
      "LABEL l=x\n",
      "Dockerfile");
  ASSERT_TRUE(tree.ok()) << tree.status();
  ASSERT_EQ(tree->nodes.size(), 5u);
  EXPECT_EQ(tree->nodes[1].keyword, "run");
  ASSERT_EQ(tree->nodes[1].args.size(), 1u);
  EXPECT_EQ(tree->nodes[1].args[0], "echo foo \\\\");
  EXPECT_EQ(tree->nodes[1].end_line, 2);
  EXPECT_EQ(tree->nodes[2].keyword, "run");
  EXPECT_EQ(tree->nodes[2].start.line, 3);
  ASSERT_EQ(tree->nodes[3].key_values.size(), 1u);
  EXPECT_EQ(tree->nodes[3].key_values[0].value, "value\\\\");
  EXPECT_EQ(tree->nodes[4].keyword, "label");
}

TEST(ParseTest, EscapedBacktickWithBacktickEscape) {
  absl::StatusOr<SyntaxTree> tree = Parse(
      "# escape=`\n"
      "FROM busybox\n"
      "RUN echo foo ``\n"
      "RUN echo one `\n"
      "    two\n",
      "Dockerfile");
  ASSERT_TRUE(tree.ok()) << tree.status();
  ASSERT_EQ(tree->nodes.size(), 3u);
  EXPECT_EQ(tree->nodes[1].args[0], "echo foo ``");
  EXPECT_EQ(tree->nodes[2].args[0], "echo one     two");
  EXPECT_EQ(tree->nodes[2].start.line, 4);
  EXPECT_EQ(tree->nodes[2].end_line, 5);
}

TEST(ParseTest, SingleEscapeStillContinues) {
  absl::StatusOr<SyntaxTree> tree = Parse("FROM busybox\nRUN echo a \\\n  b\n", "Dockerfile");
  ASSERT_TRUE(tree.ok()) << tree.status();
  ASSERT_EQ(tree->nodes.size(), 2u);
  EXPECT_EQ(tree->nodes[1].args[0], "echo a   b");
  EXPECT_EQ(tree->nodes[1].end_line, 3);
}

}  // namespace
}  // namespace farm::scheduler::dockerfile
