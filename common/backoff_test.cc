#include "common/backoff.h"

#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace farm::common {
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

TEST(RetryTest, RetriesOnlyUnavailableUpToMaxAttempts) {
  RetryOptions o;
  o.max_attempts = 4;
  o.initial_backoff = absl::Microseconds(10);
  o.max_backoff = absl::Microseconds(20);
  int calls = 0;
  absl::Status s = Retry(o, [&] {
    ++calls;
    return absl::UnavailableError("down");
  });
  EXPECT_TRUE(absl::IsUnavailable(s));
  EXPECT_EQ(calls, 4);

  calls = 0;
  s = Retry(o, [&] {
    ++calls;
    return absl::NotFoundError("gone");
  });
  EXPECT_TRUE(absl::IsNotFound(s));
  EXPECT_EQ(calls, 1);  // final: not retried
}

TEST(RetryTest, ReturnsTheFirstSuccessWithItsValue) {
  RetryOptions o;
  o.initial_backoff = absl::Microseconds(10);
  int calls = 0;
  absl::StatusOr<int> r = Retry(o, [&]() -> absl::StatusOr<int> {
    if (++calls < 3) return absl::UnavailableError("not yet");
    return 42;
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace farm::common
