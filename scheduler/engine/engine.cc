#include "scheduler/engine/engine.h"

#include <unistd.h>

#include <atomic>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::scheduler::engine {

namespace {

namespace reapi = build::bazel::remote::execution::v2;

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

oci::Compression LayerCompressionOf(const farm::v1::LayerOptions& o) {
  switch (o.compression()) {
    case farm::v1::LayerOptions::ZSTD:
      return oci::Compression::kZstd;
    case farm::v1::LayerOptions::UNCOMPRESSED:
      return oci::Compression::kNone;
    default:
      return oci::Compression::kGzip;
  }
}

// One needed stage, as the engine tracks it.
struct StageRun {
  const plan::Stage* stage = nullptr;
  absl::Notification done;
  absl::Status status;
  std::vector<farm::v1::Layer> layers;  // the whole chain once done
  std::vector<std::optional<farm::v1::Layer>> step_layers;
  std::vector<int64_t> step_created;  // per step: when its result was made (0: unknown)
  std::vector<int> vertex;            // per step: its vertex id (0 for metadata steps)
  int from_vertex = 0;
};

class Engine {
 public:
  Engine(const EngineDeps& deps, const BuildRequest& req, const EventSink& sink,
         const absl::Notification* user_cancel)
      : deps_(deps),
        req_(req),
        events_(sink),
        user_cancel_(user_cancel),
        inflight_(deps.inflight != nullptr ? deps.inflight : std::make_shared<InflightSteps>()) {
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    slots_ = req.max_parallel > 0 ? req.max_parallel : std::max(1, cores);
  }

  absl::StatusOr<BuildOutput> Run() {
    const plan::Plan& p = *req_.plan;
    if (p.stages.empty()) return absl::InvalidArgumentError("the plan has no stages");
    runs_.resize(p.stages.size());
    int next = req_.first_vertex_id;
    for (size_t i = 0; i < p.stages.size(); ++i) {
      const plan::Stage& s = p.stages[i];
      by_index_[s.index] = static_cast<int>(i);
      runs_[i] = std::make_unique<StageRun>();
      StageRun& r = *runs_[i];
      r.stage = &s;
      r.step_layers.resize(s.steps.size());
      r.step_created.assign(s.steps.size(), 0);
      r.vertex.assign(s.steps.size(), 0);
      if (s.base_kind == plan::Stage::BaseKind::kImage) {
        if (!s.base_image) {
          return absl::InvalidArgumentError(
              absl::StrCat("stage ", s.index, ": base image ", s.base_ref, " was not resolved"));
        }
        r.from_vertex = next++;
      }
      for (size_t k = 0; k < s.steps.size(); ++k) {
        if (!s.steps[k].key.empty()) r.vertex[k] = next++;
      }
    }

    next_vertex_ = next;
    std::thread watcher;
    absl::Notification watcher_stop;
    if (user_cancel_ != nullptr) {
      // Polls the caller's notification (there is no waiting on two at once); wakes at once
      // when the build ends, so joining it costs nothing.
      watcher = std::thread([&] {
        while (!watcher_stop.WaitForNotificationWithTimeout(absl::Milliseconds(5))) {
          if (user_cancel_->HasBeenNotified()) {
            Fail(absl::CancelledError("the build was canceled"));
            return;
          }
        }
      });
    }
    std::vector<std::thread> threads;
    for (size_t i = 0; i < runs_.size(); ++i) {
      threads.emplace_back([this, i] { StageThread(static_cast<int>(i)); });
    }
    for (std::thread& t : threads) t.join();
    watcher_stop.Notify();
    if (watcher.joinable()) watcher.join();
    for (const std::string& lease : leases_) deps_.cas->ReleaseLease(lease).IgnoreError();
    RecordPending();  // also after a failure: the steps that succeeded are kept

    {
      absl::MutexLock l(&mu_);
      if (!first_error_.ok()) return first_error_;
    }
    return Assemble();
  }

 private:
  void EmitVertex(int id, const std::string& name, farm::v1::VertexUpdate::State state,
                  int64_t micros = 0, const std::string& key = "") {
    events_.Vertex(id, name, state, micros, key);
  }

  void Fail(absl::Status s) {
    absl::MutexLock l(&mu_);
    if (first_error_.ok()) first_error_ = std::move(s);
    if (!cancel_.HasBeenNotified()) cancel_.Notify();
  }

  bool Canceled() const { return cancel_.HasBeenNotified(); }

  // The layer chain of a needed stage, once it is built. CANCELLED if the build stopped first.
  absl::StatusOr<std::vector<farm::v1::Layer>> StageLayers(int dockerfile_index) {
    auto it = by_index_.find(dockerfile_index);
    if (it == by_index_.end()) {
      return absl::InternalError(absl::StrCat("stage ", dockerfile_index, " was not planned"));
    }
    StageRun& r = *runs_[it->second];
    while (!r.done.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
      if (Canceled()) return absl::CancelledError("the build stopped");
    }
    if (!r.status.ok()) return absl::CancelledError("a stage it depends on failed");
    return r.layers;
  }

  absl::StatusOr<std::vector<farm::v1::Layer>> SourceLayers(const plan::SourceRef& ref) {
    if (ref.stage >= 0) return StageLayers(ref.stage);
    if (ref.image) return ref.image->layers;
    return absl::InternalError("a source that is neither a stage nor an image");
  }

  void StageThread(int i) {
    StageRun& r = *runs_[i];
    r.status = RunStage(r);
    // The first error wins; a stage stopped because of it adds nothing.
    if (!r.status.ok()) Fail(r.status);
    r.done.Notify();
  }

  absl::Status RunStage(StageRun& r) {
    const plan::Stage& s = *r.stage;
    std::vector<farm::v1::Layer> layers;
    switch (s.base_kind) {
      case plan::Stage::BaseKind::kScratch:
        break;
      case plan::Stage::BaseKind::kImage:
        layers = s.base_image->layers;
        EmitVertex(
            r.from_vertex,
            absl::StrCat(
                VertexName(*req_.plan, s, -1, req_.vertex_label), " FROM ", s.base_image->reference,
                s.base_image->manifest_digest.empty() ? "" : "@" + s.base_image->manifest_digest),
            farm::v1::VertexUpdate::CACHED);
        break;
      case plan::Stage::BaseKind::kStage: {
        ASSIGN_OR_RETURN(layers, StageLayers(s.base_stage));
        break;
      }
    }
    for (size_t k = 0; k < s.steps.size(); ++k) {
      if (Canceled()) return absl::CancelledError("the build stopped");
      const plan::Step& step = s.steps[k];
      if (step.key.empty()) continue;
      ASSIGN_OR_RETURN(std::optional<farm::v1::Layer> layer,
                       RunStep(s, step, static_cast<int>(k), r.vertex[k], layers));
      r.step_layers[k] = layer;
      r.step_created[k] = CreatedOf(step.key);
      if (layer) layers.push_back(*layer);
    }
    r.layers = std::move(layers);
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<farm::v1::Layer>> Lookup(const plan::Step& step) {
    absl::StatusOr<std::string> hit = deps_.ac->Get(req_.cache_read_scopes, ActionKey(step));
    if (!hit.ok()) {
      if (!absl::IsNotFound(hit.status())) {
        Warn(absl::StrCat("reading the action cache for ", step.instruction, ": ",
                          hit.status().message(), " (running the step)"));
      }
      return hit.status();
    }
    absl::StatusOr<CachedStep> cached = CachedStepFromActionResult(*hit);
    if (!cached.ok()) {
      Warn(absl::StrCat("ignoring a foreign action-cache entry for ", step.instruction, ": ",
                        cached.status().message()));
      return absl::NotFoundError("foreign entry");
    }
    const std::optional<farm::v1::Layer>& layer = cached->layer;
    if (layer) {
      absl::StatusOr<common::Digest> d = common::Digest::ParseOci(layer->digest(), layer->size());
      if (d.ok()) {
        absl::StatusOr<cache::BlobStore::Lease> lease =
            deps_.cas->AcquireLease({*d}, req_.lease_ttl);
        if (lease.ok()) {
          absl::MutexLock l(&mu_);
          leases_.push_back(lease->id);
          if (!lease->missing.empty()) return absl::NotFoundError("layer evicted meanwhile");
        }
      }
    }
    SetCreated(step.key, cached->created_unix);
    return layer;
  }

  // When the result of the step keyed `key` was made, as this build knows it (0: unknown).
  void SetCreated(const std::string& key, int64_t created_unix) {
    if (created_unix <= 0) return;
    absl::MutexLock l(&mu_);
    created_[key] = created_unix;
  }
  int64_t CreatedOf(const std::string& key) {
    absl::MutexLock l(&mu_);
    auto it = created_.find(key);
    return it == created_.end() ? 0 : it->second;
  }

  void Warn(const std::string& w) { events_.Warn(w); }

  absl::StatusOr<std::optional<farm::v1::Layer>> RunStep(
      const plan::Stage& s, const plan::Step& step, int index, int vertex,
      const std::vector<farm::v1::Layer>& parents) {
    std::string name = VertexName(*req_.plan, s, index, req_.vertex_label);
    // In-flight dedup: the first claimant runs the key, the others wait for its result. When
    // the runner's build stopped for a reason of its own (another build of a bake failed), the
    // step is claimed again rather than failing this build.
    for (;;) {
      InflightSteps::Claim claim = inflight_->Get(step.key);
      if (claim.theirs) {
        while (!claim.theirs->done.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
          if (Canceled()) return absl::CancelledError("the build stopped");
        }
        const InflightSteps::Result& theirs = claim.theirs->result;
        if (!theirs.ok()) {
          if (absl::IsCancelled(theirs.status()) && !Canceled()) continue;
          return absl::CancelledError("the same step failed elsewhere");
        }
        EmitVertex(vertex, name, farm::v1::VertexUpdate::CACHED, 0, step.key);
        SetCreated(step.key, claim.theirs->created_unix);
        Record(s, step, true, *theirs, 0);
        return *theirs;
      }
      InflightSteps::Result result = Execute(s, step, name, vertex, parents);
      claim.mine->created_unix = CreatedOf(step.key);  // published with `done`
      inflight_->Finish(step.key, claim.mine, result);
      return result;
    }
  }

  absl::StatusOr<std::optional<farm::v1::Layer>> Execute(
      const plan::Stage& s, const plan::Step& step, const std::string& name, int vertex,
      const std::vector<farm::v1::Layer>& parents) {
    if (!req_.no_cache) {
      absl::StatusOr<std::optional<farm::v1::Layer>> hit = Lookup(step);
      if (hit.ok()) {
        EmitVertex(vertex, name, farm::v1::VertexUpdate::CACHED, 0, step.key);
        Record(s, step, true, *hit, 0);
        return *hit;
      }
    }
    farm::v1::StepRequest request = step.request;
    bool link = request.has_copy() && request.copy().link();
    if (!link) {
      for (const farm::v1::Layer& l : parents) *request.add_parents() = l;
    }
    if (step.copy_from) {
      ASSIGN_OR_RETURN(std::vector<farm::v1::Layer> src, SourceLayers(*step.copy_from));
      farm::v1::LayerChain* chain = request.mutable_copy()->mutable_source()->mutable_layers();
      chain->clear_layers();
      for (const farm::v1::Layer& l : src) *chain->add_layers() = l;
    }
    for (const auto& [idx, ref] : step.mount_from) {
      ASSIGN_OR_RETURN(std::vector<farm::v1::Layer> src, SourceLayers(ref));
      farm::v1::LayerChain* chain =
          request.mutable_run()->mutable_mounts(idx)->mutable_from()->mutable_layers();
      chain->clear_layers();
      for (const farm::v1::Layer& l : src) *chain->add_layers() = l;
    }
    // Wait for an execution slot.
    {
      absl::MutexLock l(&mu_);
      auto free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return running_ < slots_ || cancel_.HasBeenNotified();
      };
      mu_.Await(absl::Condition(&free));
      if (cancel_.HasBeenNotified()) return absl::CancelledError("the build stopped");
      ++running_;
    }
    int64_t start = NowMicros();
    EmitVertex(vertex, name, farm::v1::VertexUpdate::STARTED, 0, step.key);
    if (request.has_run() && request.run().timeout_seconds() == 0 &&
        req_.default_step_timeout_seconds > 0) {
      request.mutable_run()->set_timeout_seconds(req_.default_step_timeout_seconds);
    }
    // Bytes logged so far; past the limit, one notice and nothing more (as BuildKit clips).
    auto logged = std::make_shared<std::atomic<int64_t>>(0);
    const int64_t max_log = req_.max_step_log_bytes;
    executor::LogSink log = [this, vertex, start, logged, max_log](absl::string_view line,
                                                                   bool is_stderr) {
      if (max_log > 0) {
        int64_t before = logged->fetch_add(static_cast<int64_t>(line.size()) + 1);
        if (before >= max_log) return;
        if (before + static_cast<int64_t>(line.size()) + 1 > max_log) {
          events_.Log(vertex,
                      absl::StrCat("[output clipped, log limit ", common::HumanSize(max_log),
                                   " per step reached]"),
                      true, NowMicros() - start);
          return;
        }
      }
      events_.Log(vertex, line, is_stderr, NowMicros() - start);
    };
    absl::StatusOr<farm::v1::StepResult> result = deps_.executor->Execute(request, log, &cancel_);
    {
      absl::MutexLock l(&mu_);
      --running_;
    }
    int64_t micros = NowMicros() - start;
    auto failed = [&](const std::string& error, const farm::v1::StepResult* r) {
      farm::v1::VertexUpdate u;
      u.set_id(vertex);
      u.set_name(name);
      u.set_state(absl::IsCancelled(result.status()) && Canceled()
                      ? farm::v1::VertexUpdate::CANCELED
                      : farm::v1::VertexUpdate::FAILED);
      u.set_duration_micros(micros);
      u.set_error(error);
      u.set_dockerfile(req_.dockerfile);
      u.set_line(step.pos.line);
      u.set_end_line(step.end_line);
      u.set_key(step.key);
      if (r != nullptr) {
        u.set_worker(r->worker());
        for (const std::string& t : r->output_tail()) u.add_output_tail(t);
      }
      events_.Emit(std::move(u));
    };
    if (!result.ok()) {
      failed(std::string(result.status().message()), nullptr);
      return common::Annotate(result.status(), name);
    }
    if (result->exit_code() != 0 || result->timed_out()) {
      std::string argv = absl::StrJoin(request.run().args(), " ");
      std::string error =
          result->timed_out()
              ? absl::StrCat("process \"", argv, "\" timed out after ",
                             request.run().timeout_seconds(), "s")
              : absl::StrCat("process \"", argv,
                             "\" did not complete successfully: exit code: ", result->exit_code());
      failed(error, &*result);
      return absl::FailedPreconditionError(absl::StrCat(name, ": ", error));
    }
    std::optional<farm::v1::Layer> layer;
    if (result->has_layer()) layer = result->layer();
    int64_t created = absl::ToUnixSeconds(absl::Now());
    SetCreated(step.key, created);
    PendingRecord record{name, ActionKey(step), StepActionResult(step, layer, Hostname(), created)};
    if (result->store_pending()) {
      // The layer is still being stored (the executor writes behind the build): recorded once
      // Sync() says it is in the CAS (RecordPending).
      absl::MutexLock l(&mu_);
      pending_records_.push_back(std::move(record));
    } else {
      RecordInActionCache(record);
    }
    farm::v1::VertexUpdate done;
    done.set_id(vertex);
    done.set_name(name);
    done.set_state(farm::v1::VertexUpdate::DONE);
    done.set_duration_micros(micros);
    done.set_key(step.key);
    done.set_worker(result->worker());
    events_.Emit(std::move(done));
    Record(s, step, false, layer, micros);
    return layer;
  }

  struct PendingRecord {
    std::string name;
    common::Digest key;
    std::string action_result;
  };

  void RecordInActionCache(const PendingRecord& r) {
    absl::Status recorded = deps_.ac->Update(req_.cache_write_scope, r.key, r.action_result);
    if (!recorded.ok()) {
      Warn(absl::StrCat("recording ", r.name, " in the action cache: ", recorded.message()));
    }
  }

  // Records the steps whose layers the executor stored behind the build, once they are all in
  // the CAS; a layer that could not be stored fails the build and records none of them. Waits
  // even with nothing of its own pending: a layer this build took from another build in flight
  // in the same process (another platform) may still be being stored, and the image is
  // assembled from it next.
  void RecordPending() {
    std::vector<PendingRecord> records;
    {
      absl::MutexLock l(&mu_);
      records.swap(pending_records_);
    }
    absl::Status synced = deps_.executor->Sync();
    if (!synced.ok()) {
      Fail(synced);
      return;
    }
    for (const PendingRecord& r : records) RecordInActionCache(r);
  }

  void Record(const plan::Stage& s, const plan::Step& step, bool cached,
              const std::optional<farm::v1::Layer>& layer, int64_t micros) {
    absl::MutexLock l(&mu_);
    StepOutcome o;
    o.stage = &s;
    o.step = &step;
    o.cached = cached;
    o.layer = layer;
    o.duration_micros = micros;
    outcomes_.push_back(std::move(o));
  }

  absl::StatusOr<BuildOutput> Assemble() {
    const plan::Plan& p = *req_.plan;
    std::map<int, image::AssembledImage> assembled;  // by Dockerfile index
    std::map<int, image::ResolvedImage> as_base;
    for (size_t i = 0; i < p.stages.size(); ++i) {
      const plan::Stage& s = p.stages[i];
      StageRun& r = *runs_[i];
      image::AssembleRequest a;
      if (s.base_kind == plan::Stage::BaseKind::kImage) {
        a.base = &*s.base_image;
      } else if (s.base_kind == plan::Stage::BaseKind::kStage) {
        auto it = as_base.find(s.base_stage);
        if (it == as_base.end()) {
          return absl::InternalError(absl::StrCat("stage ", s.base_stage, " not assembled"));
        }
        a.base = &it->second;
      }
      a.config = s.config;
      if (static_cast<int>(i) == p.target) {
        for (const auto& [k, v] : req_.labels) a.config.config.labels[k] = v;
      }
      for (size_t k = 0; k < s.steps.size(); ++k) {
        const plan::Step& step = s.steps[k];
        if (!step.in_history) continue;
        image::HistoryStep h;
        h.created_by = step.created_by;
        h.layer = r.step_layers[k];
        h.created_unix = r.step_created[k];
        if (step.kind != plan::StepKind::kMetadata) {
          // Docker gives RUN, COPY, ADD and WORKDIR a layer even when they changed nothing.
          h.empty_layer = LayerCompressionOf(step.request.output());
        }
        a.steps.push_back(std::move(h));
      }
      a.source_date_epoch = req_.source_date_epoch;
      a.format = req_.format;
      absl::StatusOr<image::AssembledImage> img = image::Assemble(*deps_.cas, a);
      if (!img.ok()) {
        return common::Annotate(img.status(), absl::StrCat("assembling stage ", s.index));
      }
      image::ResolvedImage base;
      base.reference = absl::StrCat("stage ", s.name.empty() ? absl::StrCat(s.index) : s.name);
      base.manifest_digest = img->manifest.digest;
      base.config_digest = img->config.digest;
      base.config = img->image_config;
      base.layers = img->layers;
      as_base[s.index] = std::move(base);
      assembled[s.index] = *std::move(img);
    }
    BuildOutput out;
    out.image = assembled[p.stages[p.target].index];
    absl::MutexLock l(&mu_);
    out.steps = outcomes_;
    out.next_vertex_id = next_vertex_;
    out.steps_total = static_cast<int>(outcomes_.size());
    for (const StepOutcome& o : outcomes_) out.steps_cached += o.cached ? 1 : 0;
    return out;
  }

  const EngineDeps& deps_;
  const BuildRequest& req_;
  EventWriter events_;
  const absl::Notification* user_cancel_;
  std::shared_ptr<InflightSteps> inflight_;
  int slots_ = 1;
  std::vector<std::unique_ptr<StageRun>> runs_;
  std::map<int, int> by_index_;  // Dockerfile stage index → position in the plan
  absl::Notification cancel_;    // the build is stopping (failure or user cancel)
  int next_vertex_ = 0;          // the first vertex id after the build's steps
  absl::Mutex mu_;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> leases_ ABSL_GUARDED_BY(mu_);
  std::vector<StepOutcome> outcomes_ ABSL_GUARDED_BY(mu_);
  std::vector<PendingRecord> pending_records_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> created_ ABSL_GUARDED_BY(mu_);  // step key -> its time
};

}  // namespace

InflightSteps::Claim InflightSteps::Get(const std::string& key) {
  absl::MutexLock l(&mu_);
  Claim c;
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    c.theirs = it->second;
    return c;
  }
  c.mine = std::make_shared<Entry>();
  entries_[key] = c.mine;
  return c;
}

void InflightSteps::Finish(const std::string& key, const std::shared_ptr<Entry>& mine,
                           Result result) {
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(key);
    if (!result.ok() && it != entries_.end() && it->second == mine) entries_.erase(it);
  }
  mine->result = std::move(result);
  mine->done.Notify();
}

common::Digest ActionKey(const plan::Step& step) {
  int64_t size = 0;
  for (const auto& [k, v] : step.preimage) size += k.size() + 2 + v.size() + 1;
  common::Digest d;
  d.hash = step.key;
  d.size_bytes = size;
  return d;
}

std::string StepActionResult(const plan::Step& step, const std::optional<farm::v1::Layer>& layer,
                             const std::string& worker, int64_t created_unix) {
  reapi::ActionResult ar;
  farm::v1::StepOutput out;
  out.set_instruction(step.instruction);
  out.set_created_unix(created_unix);
  if (layer) {
    *out.mutable_layer() = *layer;
    reapi::OutputFile* f = ar.add_output_files();
    f->set_path("layer");
    std::string hash = layer->digest();
    if (hash.rfind("sha256:", 0) == 0) hash = hash.substr(7);
    f->mutable_digest()->set_hash(hash);
    f->mutable_digest()->set_size_bytes(layer->size());
  }
  ar.mutable_execution_metadata()->set_worker(worker);
  ar.mutable_execution_metadata()->add_auxiliary_metadata()->PackFrom(out);
  return ar.SerializeAsString();
}

absl::StatusOr<CachedStep> CachedStepFromActionResult(absl::string_view bytes) {
  reapi::ActionResult ar;
  if (!ar.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError("not an ActionResult");
  }
  for (const auto& any : ar.execution_metadata().auxiliary_metadata()) {
    farm::v1::StepOutput out;
    if (any.UnpackTo(&out)) {
      CachedStep c;
      if (out.has_layer()) c.layer = out.layer();
      // A time before 1970 or more than a day ahead is not believed (history shows it).
      if (out.created_unix() > 0 &&
          out.created_unix() < absl::ToUnixSeconds(absl::Now() + absl::Hours(24))) {
        c.created_unix = out.created_unix();
      }
      return c;
    }
  }
  return absl::InvalidArgumentError("no farm.v1.StepOutput in the entry");
}

int VertexCount(const plan::Plan& plan) {
  int n = 0;
  for (const plan::Stage& s : plan.stages) {
    if (s.base_kind == plan::Stage::BaseKind::kImage) ++n;
    for (const plan::Step& step : s.steps) {
      if (!step.key.empty()) ++n;
    }
  }
  return n;
}

std::string VertexName(const plan::Plan& plan, const plan::Stage& stage, int step_index,
                       const std::string& prefix) {
  int total = stage.base_kind == plan::Stage::BaseKind::kImage ? 1 : 0;
  int position = step_index < 0 ? 1 : 0;
  for (size_t k = 0; k < stage.steps.size(); ++k) {
    if (stage.steps[k].key.empty()) continue;
    ++total;
    if (static_cast<int>(k) == step_index) position = total;
  }
  std::string label = prefix.empty() ? "" : prefix + " ";
  if (plan.stages.size() > 1) {
    absl::StrAppend(&label, stage.name.empty() ? absl::StrCat("stage-", stage.index) : stage.name,
                    " ");
  }
  std::string name = absl::StrCat("[", label, std::max(position, 1), "/", std::max(total, 1), "]");
  if (step_index >= 0 && step_index < static_cast<int>(stage.steps.size())) {
    absl::StrAppend(&name, " ", stage.steps[step_index].instruction);
  }
  return name;
}

absl::StatusOr<BuildOutput> RunBuild(const EngineDeps& deps, const BuildRequest& request,
                                     const EventSink& sink, const absl::Notification* cancel) {
  if (request.plan == nullptr) return absl::InvalidArgumentError("no plan");
  Engine engine(deps, request, sink, cancel);
  return engine.Run();
}

}  // namespace farm::scheduler::engine
