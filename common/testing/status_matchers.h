// Test helpers for absl::Status in worker tests: ASSERT_OK / EXPECT_OK print the status on
// failure and evaluate their argument once.
#ifndef FARM_COMMON_TESTING_STATUS_MATCHERS_H_
#define FARM_COMMON_TESTING_STATUS_MATCHERS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace farm::common::testing {

inline const absl::Status& ToStatus(const absl::Status& s) { return s; }
template <typename T>
inline const absl::Status& ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace farm::common::testing

#define ASSERT_OK(expr)                                                      \
  do {                                                                       \
    const auto& farm_test_s_ = (expr);                                       \
    ASSERT_TRUE(::farm::common::testing::ToStatus(farm_test_s_).ok())        \
        << #expr << ": " << ::farm::common::testing::ToStatus(farm_test_s_); \
  } while (0)

#define EXPECT_OK(expr)                                                      \
  do {                                                                       \
    const auto& farm_test_s_ = (expr);                                       \
    EXPECT_TRUE(::farm::common::testing::ToStatus(farm_test_s_).ok())        \
        << #expr << ": " << ::farm::common::testing::ToStatus(farm_test_s_); \
  } while (0)

#endif  // FARM_COMMON_TESTING_STATUS_MATCHERS_H_
