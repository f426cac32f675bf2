// Unit tests of the parser's own rules (the golden cases in scheduler/testdata cover whole
// Dockerfiles through the planner).
#include "scheduler/dockerfile/parser.h"

#include <string>

#include "gtest/gtest.h"

namespace dockerfile {
namespace {

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
}  // namespace dockerfile
