// The two kinds of build context the pipeline reads (see pipeline.h's Context):
//   LocalContext  a directory on this machine, filtered by .dockerignore and hashed in place
//                 (with a stat cache, so an unchanged file is not read again): `farm build`.
//   CasContext    a context root a client uploaded to farm-cache: farm-scheduler.
//
//   pipeline::LocalContext ctx("/src/app", "/src/app/Dockerfile", {});
//   req.context = &ctx;  // loaded by the pipeline; then ctx.snapshot() is available
#ifndef FARM_SCHEDULER_PIPELINE_CONTEXTS_H_
#define FARM_SCHEDULER_PIPELINE_CONTEXTS_H_

#include <memory>
#include <string>
#include <thread>

#include "cache/blob_store.h"
#include "scheduler/context/context.h"
#include "scheduler/pipeline/pipeline.h"
#include "worker/copy/trees.h"

namespace farm::scheduler::pipeline {

class LocalContext : public Context {
 public:
  // `dockerfile_path` chooses the ignore file (<Dockerfile>.dockerignore beside it, else the
  // context's .dockerignore); "" for a Dockerfile that came on stdin.
  LocalContext(std::string dir, std::string dockerfile_path, context::SnapshotOptions options)
      : dir_(std::move(dir)), dockerfile_path_(std::move(dockerfile_path)), options_(options) {}
  ~LocalContext() override;

  // Starts hashing the context on a thread of its own, so that it overlaps what the caller
  // does before the pipeline loads it (farm build opens its stores meanwhile); Load() then
  // waits for it. Optional; at most once, before Load.
  void Prefetch();
  absl::Status Load(const std::function<void(const std::string&)>& log) override;
  const worker::copy::SourceTree& tree() const override { return snapshot_->tree(); }
  farm::v1::ContextRoot root() const override { return snapshot_->root(); }
  // The hashed snapshot (after Load): its files can be served from disk (Overlay) or uploaded.
  const context::Snapshot& snapshot() const { return *snapshot_; }

 private:
  std::string dir_;
  std::string dockerfile_path_;
  context::SnapshotOptions options_;
  std::unique_ptr<context::Snapshot> snapshot_;
  std::thread prefetch_;
  absl::StatusOr<std::unique_ptr<context::Snapshot>> prefetched_;
};

class CasContext : public Context {
 public:
  CasContext(std::shared_ptr<cache::BlobStore> cas, farm::v1::ContextRoot root)
      : cas_(std::move(cas)), root_(std::move(root)) {}

  // NOT_FOUND when the root is not in the CAS (the client did not upload it), INVALID_ARGUMENT
  // for a malformed digest.
  absl::Status Load(const std::function<void(const std::string&)>& log) override;
  const worker::copy::SourceTree& tree() const override { return *tree_; }
  farm::v1::ContextRoot root() const override { return root_; }

 private:
  std::shared_ptr<cache::BlobStore> cas_;
  farm::v1::ContextRoot root_;
  std::unique_ptr<worker::copy::CasTree> tree_;
};

}  // namespace farm::scheduler::pipeline

#endif  // FARM_SCHEDULER_PIPELINE_CONTEXTS_H_
