#include "scheduler/dockerfile/shell_lex.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace farm::scheduler::dockerfile {
namespace {

std::vector<std::string> TestEnv() {
  return {"PWD=/home", "SHELL=bash", "KOREAN=\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", "NULL="};
}

TEST(ShellLexTest, BuildKitEnvVarTable) {
  std::ifstream in("scheduler/dockerfile/testdata/envvar_cases.txt");
  ASSERT_TRUE(in.good());
  std::vector<std::string> env = TestEnv();
  ShellLex lex('\\');
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t bar = line.rfind('|');
    ASSERT_NE(bar, std::string::npos) << line;
    std::string input(absl::StripTrailingAsciiWhitespace(line.substr(0, bar)));
    std::string want(absl::StripAsciiWhitespace(line.substr(bar + 1)));
    absl::StatusOr<std::string> got = lex.ProcessWord(input, EnvFromList(&env));
    if (want == "error") {
      EXPECT_FALSE(got.ok()) << input << " gave " << (got.ok() ? *got : "");
    } else {
      ASSERT_TRUE(got.ok()) << input << ": " << got.status();
      EXPECT_EQ(*got, want) << input;
    }
    ++cases;
  }
  EXPECT_GE(cases, 100);
}

TEST(ShellLexTest, WordsSplitOnUnquotedWhitespaceOnly) {
  std::vector<std::string> env = {"A=x y"};
  ShellLex lex('\\');
  auto w = lex.ProcessWords("a \"b c\" $A 'd e'", EnvFromList(&env));
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, (std::vector<std::string>{"a", "b c", "x", "y", "d e"}));
}

TEST(ShellLexTest, BacktickEscape) {
  std::vector<std::string> env = {"A=1"};
  ShellLex lex('`');
  EXPECT_EQ(*lex.ProcessWord("c:\\dir`$A$A", EnvFromList(&env)), "c:\\dir$A1");
}

TEST(ShellLexTest, RecordsMatchedAndUnmatched) {
  std::vector<std::string> env = {"SET=1"};
  ShellLex lex('\\');
  auto r = lex.Process("$SET ${UNSET:-x} $SET", EnvFromList(&env));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->matched, (std::set<std::string>{"SET"}));
  EXPECT_EQ(r->unmatched, (std::set<std::string>{"UNSET"}));
}

TEST(ShellLexTest, RequiredVariableMessage) {
  std::vector<std::string> env;
  ShellLex lex('\\');
  auto r = lex.ProcessWord("${NEED:?set NEED please}", EnvFromList(&env));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("NEED: set NEED please"), absl::string_view::npos);
}

TEST(ShellLexTest, PatternModifiers) {
  std::vector<std::string> env = {"F=archive.tar.gz", "P=/a/b/c"};
  ShellLex lex('\\');
  auto e = EnvFromList(&env);
  EXPECT_EQ(*lex.ProcessWord("${F%.*}", e), "archive.tar");
  EXPECT_EQ(*lex.ProcessWord("${F%%.*}", e), "archive");
  EXPECT_EQ(*lex.ProcessWord("${F#*.}", e), "tar.gz");
  EXPECT_EQ(*lex.ProcessWord("${F##*.}", e), "gz");
  EXPECT_EQ(*lex.ProcessWord("${P//\\//_}", e), "_a_b_c");
  EXPECT_EQ(*lex.ProcessWord("${P/b/X}", e), "/a/X/c");
  // Found by the fuzzer: an empty pattern in replace-all looped forever.
  EXPECT_EQ(*lex.ProcessWord("${P///-}", e), "/a/b/c");
  EXPECT_EQ(*lex.ProcessWord("${P//*/}", e), "");
  // Many stars must not make matching exponential.
  std::vector<std::string> big = {"V=" + std::string(2000, 'a')};
  EXPECT_EQ(*lex.ProcessWord("${V%%*****************b}", EnvFromList(&big)), big[0].substr(2));
}

}  // namespace
}  // namespace farm::scheduler::dockerfile
