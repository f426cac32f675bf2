#include "worker/agent/backoff.h"

#include <vector>

#include "gtest/gtest.h"

namespace worker {
namespace agent {
namespace {

TEST(BackoffTest, GrowsExponentiallyUpToTheCap) {
  Backoff b({absl::Milliseconds(100), absl::Seconds(1), 2.0, 0.2}, [] { return 0.5; });
  std::vector<absl::Duration> got;
  for (int i = 0; i < 7; ++i) got.push_back(b.Next());
  EXPECT_EQ(got,
            (std::vector<absl::Duration>{absl::Milliseconds(100), absl::Milliseconds(200),
                                         absl::Milliseconds(400), absl::Milliseconds(800),
                                         absl::Seconds(1), absl::Seconds(1), absl::Seconds(1)}));
  EXPECT_EQ(b.attempts(), 7);
  b.Reset();
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
}

TEST(BackoffTest, JitterStaysWithinItsBoundsAndNeverExceedsTheCap) {
  double u = 0.0;
  Backoff low({absl::Milliseconds(100), absl::Seconds(1), 2.0, 0.2}, [&] { return u; });
  EXPECT_EQ(low.Next(), absl::Milliseconds(80));
  u = 0.999999;
  EXPECT_NEAR(absl::ToDoubleMilliseconds(low.Next()), 240.0, 0.01);
  for (int i = 0; i < 10; ++i) low.Next();
  EXPECT_EQ(low.Next(), absl::Seconds(1));  // 1s * 1.2, capped
  u = 0.0;
  EXPECT_EQ(low.Next(), absl::Milliseconds(800));

  Backoff real({absl::Milliseconds(10), absl::Milliseconds(50), 2.0, 0.5});
  for (int i = 0; i < 100; ++i) {
    absl::Duration d = real.Next();
    EXPECT_GE(d, absl::Milliseconds(5));
    EXPECT_LE(d, absl::Milliseconds(50));
  }
}

TEST(BackoffTest, LongOutagesDoNotOverflow) {
  Backoff b({absl::Milliseconds(250), absl::Seconds(30), 2.0, 0.0});
  absl::Duration last;
  for (int i = 0; i < 10000; ++i) last = b.Next();
  EXPECT_EQ(last, absl::Seconds(30));
}

TEST(BackoffTest, BadOptionsAreMadeSafe) {
  Backoff b({absl::ZeroDuration(), absl::ZeroDuration(), 0.5, 7.0}, [] { return 0.5; });
  EXPECT_EQ(b.Next(), absl::Milliseconds(1));
  EXPECT_EQ(b.Next(), absl::Milliseconds(1));
}

}  // namespace
}  // namespace agent
}  // namespace worker
