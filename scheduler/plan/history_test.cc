// created_by strings, byte for byte as BuildKit's dockerfile2llb writes them (the expected
// strings are what `docker history --no-trunc` shows for images `docker build` made).
#include "scheduler/plan/history.h"

#include "gtest/gtest.h"

namespace farm::scheduler::plan {
namespace {

TEST(RunCreatedByTest, ShellFormWithoutBuildArgs) {
  EXPECT_EQ(RunCreatedBy({}, {"/bin/sh", "-c", "echo deps > /deps"}),
            "RUN /bin/sh -c echo deps > /deps # buildkit");
}

TEST(RunCreatedByTest, BuildArgsAreCountedAndComeFirst) {
  EXPECT_EQ(RunCreatedBy({"VERSION=latest"}, {"/bin/sh", "-c", "echo \"redeclared: $VERSION\""}),
            "RUN |1 VERSION=latest /bin/sh -c echo \"redeclared: $VERSION\" # buildkit");
  EXPECT_EQ(RunCreatedBy({"VERSION=latest", "LOCAL=default"}, {"/bin/sh", "-c", "echo $LOCAL"}),
            "RUN |2 VERSION=latest LOCAL=default /bin/sh -c echo $LOCAL # buildkit");
}

TEST(RunCreatedByTest, ExecFormWordsAreJoinedUnquoted) {
  EXPECT_EQ(RunCreatedBy({}, {"echo", "a b", ""}), "RUN echo a b  # buildkit");
}

TEST(CopyCreatedByTest, SourcesThenTheDestinationAsWritten) {
  EXPECT_EQ(CopyCreatedBy("COPY", {"requirements.txt"}, "."), "COPY requirements.txt . # buildkit");
  EXPECT_EQ(CopyCreatedBy("COPY", {"app/", "lib/"}, "./app/"), "COPY app/ lib/ ./app/ # buildkit");
  EXPECT_EQ(CopyCreatedBy("ADD", {"https://example.com/a.tgz"}, "/opt/"),
            "ADD https://example.com/a.tgz /opt/ # buildkit");
  EXPECT_EQ(CopyCreatedBy("COPY", {"<<EOF"}, "/quoted.txt"), "COPY <<EOF /quoted.txt # buildkit");
}

TEST(CmdCreatedByTest, GoQuotedArgv) {
  EXPECT_EQ(CmdCreatedBy({"python3", "-m", "app"}), "CMD [\"python3\" \"-m\" \"app\"]");
  EXPECT_EQ(CmdCreatedBy({"/bin/sh", "-c", "echo \"hi\" \\o/"}),
            "CMD [\"/bin/sh\" \"-c\" \"echo \\\"hi\\\" \\\\o/\"]");
  EXPECT_EQ(CmdCreatedBy({}), "CMD []");
}

TEST(EntrypointCreatedByTest, GoQuotedArgv) {
  EXPECT_EQ(EntrypointCreatedBy({"/entry", "--flag"}), "ENTRYPOINT [\"/entry\" \"--flag\"]");
  EXPECT_EQ(EntrypointCreatedBy({}), "ENTRYPOINT []");
}

TEST(ShellAndVolumeCreatedByTest, GoListsUnquoted) {
  EXPECT_EQ(ShellCreatedBy({"/bin/bash", "-o", "pipefail", "-c"}),
            "SHELL [/bin/bash -o pipefail -c]");
  EXPECT_EQ(VolumeCreatedBy({"/data", "/var/log"}), "VOLUME [/data /var/log]");
}

TEST(ExposeCreatedByTest, AGoMapInKeyOrder) {
  EXPECT_EQ(ExposeCreatedBy({"8000/tcp"}), "EXPOSE map[8000/tcp:{}]");
  EXPECT_EQ(ExposeCreatedBy({"80/tcp", "8000/tcp", "53/udp", "443/tcp"}),
            "EXPOSE map[443/tcp:{} 53/udp:{} 80/tcp:{} 8000/tcp:{}]");
}

TEST(HealthcheckCreatedByTest, ShellFormWithEveryOption) {
  oci::HealthConfig h;
  h.test = {"CMD-SHELL", "curl -f http://localhost/ || exit 1"};
  h.interval_ns = 30'000'000'000;
  h.timeout_ns = 3'000'000'000;
  h.start_period_ns = 90'000'000'000;
  h.start_interval_ns = 5'000'000'000;
  h.retries = 3;
  EXPECT_EQ(HealthcheckCreatedBy(h),
            "HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f http://localhost/ || exit 1\"] \"30s\" "
            "\"3s\" \"1m30s\" \"5s\" '\\x03'}");
}

TEST(HealthcheckCreatedByTest, ExecFormAndNone) {
  oci::HealthConfig exec;
  exec.test = {"CMD", "/bin/check", "--quick"};
  EXPECT_EQ(HealthcheckCreatedBy(exec),
            "HEALTHCHECK &{[\"CMD\" \"/bin/check\" \"--quick\"] \"0s\" \"0s\" \"0s\" '\\x00'}");
  oci::HealthConfig none;
  none.test = {"NONE"};
  EXPECT_EQ(HealthcheckCreatedBy(none), "HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" '\\x00'}");
}

TEST(HealthcheckCreatedByTest, QuotesInsideTheCommandAreEscaped) {
  oci::HealthConfig h;
  h.test = {"CMD-SHELL",
            "python3 -c \"import urllib.request; "
            "urllib.request.urlopen('http://localhost:8000')\""};
  h.interval_ns = 10'000'000'000;
  EXPECT_EQ(
      HealthcheckCreatedBy(h),
      "HEALTHCHECK &{[\"CMD-SHELL\" \"python3 -c \\\"import urllib.request; "
      "urllib.request.urlopen('http://localhost:8000')\\\"\"] \"10s\" \"0s\" \"0s\" '\\x00'}");
}

TEST(GoQuoteRuneTest, IntAsACharacterLiteral) {
  EXPECT_EQ(GoQuoteRune(0), "'\\x00'");
  EXPECT_EQ(GoQuoteRune(3), "'\\x03'");
  EXPECT_EQ(GoQuoteRune(65), "'A'");
  EXPECT_EQ(GoQuoteRune('\''), "'\\''");
  EXPECT_EQ(GoQuoteRune('\n'), "'\\n'");
}

TEST(GoQuoteTest, StrconvQuote) {
  EXPECT_EQ(GoQuote(""), "\"\"");
  EXPECT_EQ(GoQuote("plain words"), "\"plain words\"");
  EXPECT_EQ(GoQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(GoQuote("l1\nl2\tx\ry"), "\"l1\\nl2\\tx\\ry\"");
  EXPECT_EQ(GoQuote(std::string("\x01\x1f\x7f", 3)), "\"\\x01\\x1f\\x7f\"");
  // Printable UTF-8 stays as it is.
  EXPECT_EQ(GoQuote("caf\xC3\xA9"), "\"caf\xC3\xA9\"");
}

TEST(GoSliceTest, QuotedAndUnquoted) {
  EXPECT_EQ(GoQuoteSlice({"a b", "c"}), "[\"a b\" \"c\"]");
  EXPECT_EQ(GoSlice({"a b", "c"}), "[a b c]");
  EXPECT_EQ(GoQuoteSlice({}), "[]");
  EXPECT_EQ(GoSlice({}), "[]");
}

TEST(GoDurationTest, TimeDurationString) {
  EXPECT_EQ(GoDuration(0), "0s");
  EXPECT_EQ(GoDuration(1), "1ns");
  EXPECT_EQ(GoDuration(999), "999ns");
  EXPECT_EQ(GoDuration(1'500), "1.5\xC2\xB5s");
  EXPECT_EQ(GoDuration(1'000'000), "1ms");
  EXPECT_EQ(GoDuration(100'000'000), "100ms");
  EXPECT_EQ(GoDuration(1'500'000), "1.5ms");
  EXPECT_EQ(GoDuration(1'000'000'000), "1s");
  EXPECT_EQ(GoDuration(1'500'000'000), "1.5s");
  EXPECT_EQ(GoDuration(1'000'000'001), "1.000000001s");
  EXPECT_EQ(GoDuration(60'000'000'000), "1m0s");
  EXPECT_EQ(GoDuration(90'000'000'000), "1m30s");
  EXPECT_EQ(GoDuration(3'600'000'000'000), "1h0m0s");
  EXPECT_EQ(GoDuration(3'661'500'000'000), "1h1m1.5s");
  EXPECT_EQ(GoDuration(-2'000'000'000), "-2s");
}

}  // namespace
}  // namespace farm::scheduler::plan
