#include "scheduler/image/transfer.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/compression.h"
#include "oci/config.h"

namespace farm::scheduler::image {

namespace {

constexpr int64_t kMaxConfigBytes = 32 << 20;

std::string ShortId(absl::string_view digest) {
  absl::ConsumePrefix(&digest, "sha256:");
  return std::string(digest.substr(0, 12));
}

// Serializes progress callbacks coming from worker threads.
class Reporter {
 public:
  explicit Reporter(const ProgressFn& fn) : fn_(fn) {}
  void operator()(const std::string& id, const std::string& status, int64_t current = 0,
                  int64_t total = 0) {
    if (!fn_) return;
    absl::MutexLock lock(&mu_);
    fn_(Progress{id, status, current, total});
  }

 private:
  const ProgressFn& fn_;
  absl::Mutex mu_;
};

// Runs fn(0..n-1) on up to `parallel` threads; returns the first error (later tasks that have
// not started are skipped once one failed).
absl::Status RunParallel(size_t n, int parallel, const std::function<absl::Status(size_t)>& fn) {
  if (n == 0) return absl::OkStatus();
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first;
  std::atomic<bool> failed{false};
  auto worker = [&] {
    while (!failed) {
      size_t i = next.fetch_add(1);
      if (i >= n) return;
      absl::Status s = fn(i);
      if (!s.ok()) {
        absl::MutexLock lock(&mu);
        if (first.ok()) first = s;
        failed = true;
      }
    }
  };
  size_t threads = std::min<size_t>(n, static_cast<size_t>(std::max(1, parallel)));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  return first;
}

absl::StatusOr<std::string> ReadOrFetchSmall(registry::Client& client, cache::BlobStore& cas,
                                             const std::string& repo, const oci::Descriptor& d,
                                             int64_t max, bool* fetched) {
  if (d.size > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", d.digest, " is ", d.size, " bytes, more than ", max, " allowed"));
  }
  ASSIGN_OR_RETURN(common::Digest digest, common::Digest::ParseOci(d.digest, d.size));
  ASSIGN_OR_RETURN(bool present, cas.Has(digest));
  if (present) return cas.ReadBlob(digest, max);
  std::string bytes;
  RETURN_IF_ERROR(client.GetBlob(repo, digest, [&](absl::string_view c) {
    bytes.append(c.data(), c.size());
    return absl::OkStatus();
  }));
  common::Digest actual = common::DigestOf(bytes);
  if (actual != digest) {
    return absl::DataLossError(absl::StrCat("blob verification failed for digest ", d.digest,
                                            ": got ", actual.OciString(), " (", actual.size_bytes,
                                            " bytes) from ", client.domain(), "/", repo));
  }
  RETURN_IF_ERROR(cas.WriteBlob(digest, bytes));
  *fetched = true;
  return bytes;
}

// Streams one layer into the CAS, verifying digest, size and diff_id before it becomes visible.
absl::StatusOr<int64_t> FetchLayer(registry::Client& client, cache::BlobStore& cas,
                                   const std::string& repo, const farm::v1::Layer& layer,
                                   Reporter& report) {
  std::string id = ShortId(layer.digest());
  ASSIGN_OR_RETURN(common::Digest digest, common::Digest::ParseOci(layer.digest(), layer.size()));
  ASSIGN_OR_RETURN(oci::Compression c, oci::LayerCompression(layer.media_type()));
  ASSIGN_OR_RETURN(std::unique_ptr<cache::BlobWriter> writer, cas.BeginWrite(digest));
  // The CAS writer verifies size and digest at Commit; the digester only computes the diff_id
  // (an uncompressed layer is hashed once here: its digest is its diff_id).
  // Decompression runs on a second thread, overlapping the download and the CAS write.
  oci::AsyncLayerDigester digester(c, /*hash_stored=*/false);
  int64_t got = 0, reported = 0;
  absl::Status s = client.GetBlob(repo, digest, [&](absl::string_view chunk) -> absl::Status {
    RETURN_IF_ERROR(digester.Update(chunk));
    RETURN_IF_ERROR(writer->Append(chunk));
    got += static_cast<int64_t>(chunk.size());
    if (got - reported >= (4 << 20) || got == digest.size_bytes) {
      reported = got;
      report(id, "Downloading", got, digest.size_bytes);
    }
    return absl::OkStatus();
  });
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kDataLoss) {
      return absl::DataLossError(absl::StrCat("filesystem layer verification failed for digest ",
                                              layer.digest(), ": ", s.message()));
    }
    return s;
  }
  report(id, "Verifying Checksum");
  absl::StatusOr<oci::LayerDigests> d = digester.Finish();
  if (!d.ok()) {
    return absl::DataLossError(absl::StrCat("filesystem layer verification failed for digest ",
                                            layer.digest(), ": ", d.status().message()));
  }
  if (c == oci::Compression::kNone && d->digest != digest) {
    return absl::DataLossError(absl::StrCat("filesystem layer verification failed for digest ",
                                            layer.digest(), ": the registry ", client.domain(),
                                            " sent ", d->digest.size_bytes, " bytes hashing to ",
                                            d->digest.OciString()));
  }
  if (d->diff_id.OciString() != layer.diff_id()) {
    return absl::DataLossError(
        absl::StrCat("layer ", layer.digest(), " uncompresses to ", d->diff_id.OciString(),
                     ", not the diff_id its image config lists (", layer.diff_id(), ")"));
  }
  absl::Status committed = writer->Commit();
  if (committed.code() == absl::StatusCode::kInvalidArgument) {
    return absl::DataLossError(absl::StrCat("filesystem layer verification failed for digest ",
                                            layer.digest(), ": the registry ", client.domain(),
                                            " sent other bytes (", committed.message(), ")"));
  }
  RETURN_IF_ERROR(common::Annotate(committed, absl::StrCat("storing ", layer.digest())));
  report(id, "Download complete");
  report(id, "Pull complete");
  return d->diff_id.size_bytes;
}

}  // namespace

absl::StatusOr<PullResult> PullImage(registry::Client& client, cache::BlobStore& cas,
                                     const oci::Reference& ref, const PullOptions& options) {
  Reporter report(options.progress);
  const std::string repo = ref.path();
  const std::string want = ref.has_digest() ? ref.digest()
                           : ref.has_tag()  ? ref.tag()
                                            : std::string(oci::kDefaultTag);
  report("", absl::StrCat(want, ": Pulling from ", repo));
  PullResult result;

  // Resolve the reference: HEAD, then GET only what is not in the CAS.
  absl::StatusOr<registry::ManifestInfo> info = client.HeadManifest(repo, want);
  if (!info.ok() && info.status().code() != absl::StatusCode::kNotFound &&
      info.status().code() != absl::StatusCode::kUnimplemented) {
    return info.status();
  }
  if (!info.ok() && info.status().code() == absl::StatusCode::kNotFound) return info.status();
  std::string top_digest = info.ok() ? info->digest : "";
  std::string top_type = info.ok() ? info->media_type : "";
  if (ref.has_digest()) top_digest = ref.digest();
  std::string top_bytes;
  bool have_top = false;
  if (!top_digest.empty() && info.ok() && info->size > 0) {
    absl::StatusOr<common::Digest> d = common::Digest::ParseOci(top_digest, info->size);
    if (d.ok() && cas.Has(*d).value_or(false)) {
      ASSIGN_OR_RETURN(top_bytes, cas.ReadBlob(*d, 4 << 20));
      have_top = true;
    }
  }
  if (!have_top) {
    ASSIGN_OR_RETURN(registry::FetchedManifest m,
                     client.GetManifest(repo, top_digest.empty() ? want : top_digest));
    top_bytes = std::move(m.bytes);
    top_digest = m.info.digest;
    top_type = m.info.media_type;
    result.downloaded = true;
  }
  result.resolved_digest = top_digest;
  ASSIGN_OR_RETURN(std::string media_type, oci::SniffManifestMediaType(top_bytes, top_type));

  oci::Descriptor manifest_desc;
  std::string manifest_bytes;
  if (oci::IsIndexMediaType(media_type)) {
    absl::StatusOr<oci::Index> idx = oci::Index::Parse(top_bytes, media_type);
    if (!idx.ok()) return common::Annotate(idx.status(), top_digest);
    absl::StatusOr<oci::Descriptor> chosen = oci::SelectPlatform(*idx, options.platform);
    if (!chosen.ok()) return common::Annotate(chosen.status(), ref.FamiliarString());
    if (!oci::IsManifestMediaType(chosen->media_type)) {
      return absl::InvalidArgumentError(
          absl::StrCat(ref.FamiliarString(), ": nested index ", chosen->digest, " unsupported"));
    }
    manifest_desc = *chosen;
    ASSIGN_OR_RETURN(common::Digest md,
                     common::Digest::ParseOci(manifest_desc.digest, manifest_desc.size));
    if (cas.Has(md).value_or(false)) {
      ASSIGN_OR_RETURN(manifest_bytes, cas.ReadBlob(md, 4 << 20));
    } else {
      ASSIGN_OR_RETURN(registry::FetchedManifest m, client.GetManifest(repo, manifest_desc.digest));
      if (m.info.size != manifest_desc.size) {
        return absl::DataLossError(absl::StrCat("manifest ", manifest_desc.digest, " is ",
                                                m.info.size, " bytes, the index says ",
                                                manifest_desc.size));
      }
      manifest_bytes = std::move(m.bytes);
      result.downloaded = true;
    }
    result.record.index_digests.push_back(top_digest);
  } else if (oci::IsManifestMediaType(media_type)) {
    manifest_bytes = top_bytes;
    manifest_desc.media_type = media_type;
    manifest_desc.digest = top_digest;
    manifest_desc.size = static_cast<int64_t>(top_bytes.size());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(ref.FamiliarString(), ": media type ", media_type, " is not an image"));
  }
  absl::StatusOr<oci::Manifest> manifest =
      oci::Manifest::Parse(manifest_bytes, manifest_desc.media_type);
  if (!manifest.ok()) return common::Annotate(manifest.status(), manifest_desc.digest);
  manifest_desc.media_type = manifest->media_type;
  if (manifest->config.media_type != oci::kOciConfig &&
      manifest->config.media_type != oci::kDockerConfig) {
    return absl::InvalidArgumentError(absl::StrCat(ref.FamiliarString(),
                                                   " is not a container image (config type ",
                                                   manifest->config.media_type, ")"));
  }

  bool fetched = false;
  ASSIGN_OR_RETURN(std::string config_bytes, ReadOrFetchSmall(client, cas, repo, manifest->config,
                                                              kMaxConfigBytes, &fetched));
  result.downloaded |= fetched;
  absl::StatusOr<oci::ImageConfig> config = oci::ImageConfig::FromJson(config_bytes);
  if (!config.ok()) return common::Annotate(config.status(), manifest->config.digest);
  if (config->diff_ids.size() != manifest->layers.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest ", manifest_desc.digest, " lists ", manifest->layers.size(),
                     " layers but its config has ", config->diff_ids.size(), " diff_ids"));
  }

  std::vector<farm::v1::Layer> layers;
  std::vector<common::Digest> digests;
  for (size_t i = 0; i < manifest->layers.size(); ++i) {
    const oci::Descriptor& d = manifest->layers[i];
    absl::StatusOr<oci::Compression> c = oci::LayerCompression(d.media_type);
    if (!c.ok()) return common::Annotate(c.status(), ref.FamiliarString());
    farm::v1::Layer l;
    l.set_digest(d.digest);
    l.set_size(d.size);
    l.set_media_type(d.media_type);
    l.set_diff_id(config->diff_ids[i]);
    l.set_uncompressed_size(-1);
    for (const farm::v1::Layer& k : options.known_layers) {
      if (k.digest() == d.digest && k.uncompressed_size() >= 0) {
        l.set_uncompressed_size(k.uncompressed_size());
      }
    }
    layers.push_back(std::move(l));
    ASSIGN_OR_RETURN(common::Digest cd, common::Digest::ParseOci(d.digest, d.size));
    digests.push_back(std::move(cd));
  }
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing_list, cas.FindMissing(digests));
  std::set<common::Digest> missing(missing_list.begin(), missing_list.end());
  std::vector<size_t> to_fetch;
  std::set<common::Digest> scheduled;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (missing.count(digests[i]) && scheduled.insert(digests[i]).second) {
      report(ShortId(layers[i].digest()), "Pulling fs layer");
      to_fetch.push_back(i);
    } else if (!missing.count(digests[i])) {
      report(ShortId(layers[i].digest()), "Already exists");
    }
  }
  RETURN_IF_ERROR(RunParallel(to_fetch.size(), options.max_concurrent_downloads, [&](size_t k) {
    farm::v1::Layer& l = layers[to_fetch[k]];
    absl::StatusOr<int64_t> usize = FetchLayer(client, cas, repo, l, report);
    if (!usize.ok()) return usize.status();
    for (farm::v1::Layer& same : layers) {
      if (same.digest() == l.digest()) same.set_uncompressed_size(*usize);
    }
    return absl::OkStatus();
  }));
  result.downloaded |= !to_fetch.empty();

  // The manifest goes in last: whoever finds it in the CAS finds its blobs there too.
  ASSIGN_OR_RETURN(common::Digest md,
                   common::Digest::ParseOci(manifest_desc.digest, manifest_desc.size));
  RETURN_IF_ERROR(cas.WriteBlob(md, manifest_bytes));
  oci::Descriptor stored{manifest_desc.media_type, manifest_desc.digest, manifest_desc.size};
  std::vector<std::string> index_digests = std::move(result.record.index_digests);
  ASSIGN_OR_RETURN(result.record, image::DescribeImage(cas, stored, layers));
  result.record.index_digests = std::move(index_digests);
  result.record.sources.push_back(absl::StrCat(client.domain(), "/", repo));
  return result;
}

absl::StatusOr<PushResult> PushImage(registry::Client& client, cache::BlobStore& cas,
                                     const image::ImageRecord& record, const oci::Reference& target,
                                     const PushOptions& options) {
  Reporter report(options.progress);
  const std::string repo = target.path();
  std::vector<std::string> mount_from;
  for (const std::string& src : record.sources) {
    absl::string_view s = src;
    std::string prefix = client.domain() + "/";
    if (absl::ConsumePrefix(&s, prefix) && s != repo) mount_from.push_back(std::string(s));
  }
  PushResult result;
  absl::Mutex mu;
  auto push_blob = [&](const std::string& digest_str, int64_t size, const std::string& id,
                       bool show) -> absl::Status {
    ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(digest_str, size));
    if (show) report(id, "Pushing", 0, size);
    registry::BlobSource source = [&cas, d](int64_t offset, int64_t limit,
                                            const registry::BodySink& sink) {
      return cas.Read(d, offset, limit, sink);
    };
    absl::StatusOr<registry::BlobPushResult> r = client.PushBlob(repo, d, mount_from, source);
    if (!r.ok()) return common::Annotate(r.status(), absl::StrCat("pushing ", digest_str));
    absl::MutexLock lock(&mu);
    switch (*r) {
      case registry::BlobPushResult::kExists:
        result.existed++;
        if (show) report(id, "Layer already exists");
        break;
      case registry::BlobPushResult::kMounted:
        result.mounted++;
        if (show)
          report(id, absl::StrCat("Mounted from ", mount_from.empty() ? "" : mount_from[0]));
        break;
      case registry::BlobPushResult::kUploaded:
        result.uploaded++;
        if (show) report(id, "Pushed");
        break;
    }
    return absl::OkStatus();
  };

  for (const image::StoredManifest& m : record.manifests) {
    std::vector<const farm::v1::Layer*> unique;
    std::set<std::string> seen;
    for (const farm::v1::Layer& l : m.layers) {
      if (seen.insert(l.digest()).second) unique.push_back(&l);
    }
    for (const farm::v1::Layer* l : unique) report(ShortId(l->diff_id()), "Preparing");
    RETURN_IF_ERROR(RunParallel(unique.size(), options.max_concurrent_uploads, [&](size_t i) {
      return push_blob(unique[i]->digest(), unique[i]->size(), ShortId(unique[i]->diff_id()), true);
    }));
    RETURN_IF_ERROR(push_blob(m.config_digest, m.config_size, "", false));
    ASSIGN_OR_RETURN(common::Digest md, common::Digest::ParseOci(m.digest, m.size));
    ASSIGN_OR_RETURN(std::string bytes, cas.ReadBlob(md, 4 << 20));
    bool by_digest = record.is_index() || !target.has_tag();
    ASSIGN_OR_RETURN(
        std::string pushed,
        client.PutManifest(repo, by_digest ? m.digest : target.tag(), m.media_type, bytes));
    result.digest = pushed;
    result.size = m.size;
  }
  if (record.is_index()) {
    ASSIGN_OR_RETURN(common::Digest id, common::Digest::ParseOci(record.digest, record.size));
    ASSIGN_OR_RETURN(std::string bytes, cas.ReadBlob(id, 4 << 20));
    ASSIGN_OR_RETURN(result.digest,
                     client.PutManifest(repo, target.has_tag() ? target.tag() : record.digest,
                                        record.media_type, bytes));
    result.size = record.size;
  }
  return result;
}

}  // namespace farm::scheduler::image
