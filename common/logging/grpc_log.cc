#include "common/logging/grpc_log.h"

#include <grpc/support/log.h>

#include <atomic>

#include "absl/strings/str_cat.h"

namespace farm::common::logging {

namespace {

struct GrpcTarget {
  Logger logger;
  Level min_level;
};

std::atomic<const GrpcTarget*> g_target{nullptr};

void OnGrpcLog(gpr_log_func_args* args) {
  const GrpcTarget* t = g_target.load(std::memory_order_acquire);
  if (t == nullptr) return;
  Level level = Level::kInfo;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    level = Level::kError;
  } else if (args->severity == GPR_LOG_SEVERITY_DEBUG) {
    level = Level::kDebug;
  }
  if (level < t->min_level) return;
  t->logger.Log(level, absl::StrCat("grpc: ", args->message ? args->message : ""),
                {{"source", absl::StrCat(args->file ? args->file : "?", ":", args->line)}});
}

}  // namespace

void InstallGrpcLogger(const Logger& logger, Level min_level) {
  // Leaked on purpose (also the one it replaces): another thread may be logging through it.
  g_target.store(new GrpcTarget{logger, min_level}, std::memory_order_release);
  // gRPC filters by its own verbosity before calling us; let everything we may want through.
  gpr_set_log_verbosity(min_level == Level::kError ? GPR_LOG_SEVERITY_ERROR
                                                   : GPR_LOG_SEVERITY_DEBUG);
  gpr_set_log_function(&OnGrpcLog);
}

}  // namespace farm::common::logging
