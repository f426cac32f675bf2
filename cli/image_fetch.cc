#include "cli/image_fetch.h"

#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/digest.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/media_types.h"

namespace farm::cli {

namespace {

// A manifest/index document: from `dest` if it has it, else from `source` (stored in `dest`
// too, verified, so a resumed fetch reads it locally).
absl::StatusOr<std::string> ReadDocument(cache::BlobStore& source, cache::BlobStore& dest,
                                         const common::Digest& d, FetchStats* stats) {
  absl::StatusOr<std::string> local = dest.ReadBlob(d);
  if (local.ok()) return local;
  if (!absl::IsNotFound(local.status())) return local.status();
  absl::StatusOr<std::string> read = source.ReadBlob(d);
  if (!read.ok()) return common::Annotate(read.status(), absl::StrCat("reading ", d.OciString()));
  std::string text = *std::move(read);
  RETURN_IF_ERROR(
      common::Annotate(dest.WriteBlob(d, text), absl::StrCat("storing ", d.OciString())));
  stats->blobs_fetched++;
  stats->bytes_fetched += d.size_bytes;
  return text;
}

absl::Status CopyBlob(cache::BlobStore& source, cache::BlobStore& dest, const common::Digest& d) {
  ASSIGN_OR_RETURN(std::unique_ptr<cache::BlobWriter> w, dest.BeginWrite(d));
  RETURN_IF_ERROR(source.Read(d, 0, 0, [&](absl::string_view chunk) { return w->Append(chunk); }));
  return w->Commit();
}

}  // namespace

std::string FetchStats::Summary() const {
  if (layers_fetched == 0) {
    if (blobs_fetched == 0) return absl::StrCat("all ", layers, " layers were local");
    return absl::StrCat("all ", layers, " layers were local; fetched the manifest and config (",
                        common::HumanSize(bytes_fetched), ")");
  }
  return absl::StrCat("fetched ", layers_fetched, " of ", layers, " layers, ",
                      common::HumanSize(bytes_fetched));
}

absl::StatusOr<FetchStats> FetchImage(cache::BlobStore& source, cache::BlobStore& dest,
                                      const oci::Descriptor& top, const FetchOptions& options) {
  FetchStats stats;
  ASSIGN_OR_RETURN(common::Digest top_digest, common::Digest::ParseOci(top.digest, top.size));
  // The documents first (small; they say what else there is).
  std::vector<std::pair<common::Digest, std::string>> manifests;  // digest, media type
  ASSIGN_OR_RETURN(std::string top_json, ReadDocument(source, dest, top_digest, &stats));
  stats.blobs++;
  stats.bytes_total += top_digest.size_bytes;
  ASSIGN_OR_RETURN(std::string top_type, oci::SniffManifestMediaType(top_json, top.media_type));
  std::vector<std::string> manifest_texts;
  if (oci::IsIndexMediaType(top_type)) {
    ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(top_json, top_type));
    for (const oci::Descriptor& m : index.manifests) {
      ASSIGN_OR_RETURN(common::Digest md, common::Digest::ParseOci(m.digest, m.size));
      ASSIGN_OR_RETURN(std::string text, ReadDocument(source, dest, md, &stats));
      stats.blobs++;
      stats.bytes_total += md.size_bytes;
      manifest_texts.push_back(std::move(text));
    }
  } else {
    manifest_texts.push_back(std::move(top_json));
  }
  // Configs and layers: what `dest` lacks, fetched in parallel.
  std::vector<common::Digest> wanted;
  absl::flat_hash_set<std::string> layer_digests, seen;
  for (const std::string& text : manifest_texts) {
    ASSIGN_OR_RETURN(oci::Manifest m, oci::Manifest::Parse(text, ""));
    std::vector<const oci::Descriptor*> blobs = {&m.config};
    for (const oci::Descriptor& l : m.layers) {
      blobs.push_back(&l);
      layer_digests.insert(l.digest);
    }
    for (const oci::Descriptor* b : blobs) {
      if (!seen.insert(b->digest).second) continue;
      ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(b->digest, b->size));
      wanted.push_back(d);
      stats.blobs++;
      stats.bytes_total += d.size_bytes;
    }
  }
  stats.layers = static_cast<int>(layer_digests.size());
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, dest.FindMissing(wanted));
  if (missing.empty()) return stats;

  absl::Mutex mu;
  absl::Status first_error;
  std::atomic<size_t> next{0};
  auto work = [&] {
    while (true) {
      size_t i = next.fetch_add(1);
      if (i >= missing.size()) return;
      {
        absl::MutexLock l(&mu);
        if (!first_error.ok()) return;
      }
      const common::Digest& d = missing[i];
      absl::Status s =
          common::Annotate(CopyBlob(source, dest, d), absl::StrCat("fetching ", d.OciString()));
      absl::MutexLock l(&mu);
      if (!s.ok()) {
        if (first_error.ok()) first_error = s;
        return;
      }
      stats.blobs_fetched++;
      stats.bytes_fetched += d.size_bytes;
      if (layer_digests.contains(d.OciString())) stats.layers_fetched++;
      if (options.progress) options.progress(stats);
    }
  };
  int n = std::max(1, std::min<int>(options.parallel, static_cast<int>(missing.size())));
  std::vector<std::thread> threads;
  for (int i = 1; i < n; ++i) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  RETURN_IF_ERROR(first_error);
  return stats;
}

}  // namespace farm::cli
