// Status propagation macros for absl::Status / absl::StatusOr (Abseil 20220623 ships none).
//
//   absl::StatusOr<int> Parse(...);
//   absl::Status Run() {
//     RETURN_IF_ERROR(Prepare());
//     ASSIGN_OR_RETURN(int n, Parse(...));
//     ...
//   }
//
// Annotate errors as they travel up with common::Annotate (status_util.h), keeping the code.
#ifndef FARM_COMMON_STATUS_MACROS_H_
#define FARM_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FARM_STATUS_CONCAT_INNER_(a, b) a##b
#define FARM_STATUS_CONCAT_(a, b) FARM_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                                        \
  do {                                                               \
    ::absl::Status farm_status_ = (expr);                            \
    if (ABSL_PREDICT_FALSE(!farm_status_.ok())) return farm_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else moves the
// value into `lhs` (which may be a declaration such as `auto x` or `const Foo& y`).
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  FARM_ASSIGN_OR_RETURN_IMPL_(FARM_STATUS_CONCAT_(farm_statusor_, __LINE__), lhs, rexpr)

#define FARM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) {               \
    return std::move(statusor).status();                  \
  }                                                       \
  lhs = std::move(statusor).value()

#endif  // FARM_COMMON_STATUS_MACROS_H_
