// farm push: a local image to its registry, like `docker push`.
#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "common/fs.h"
#include "scheduler/image/export_layers.h"
#include "scheduler/image/store.h"
#include "scheduler/image/transfer.h"

namespace farm::cli {

int RunPush(const Args& args) {
  const std::string usage = "farm push [OPTIONS] NAME[:TAG]";
  common::FlagSet fs(usage, "Upload an image to a registry");
  bool all_tags = false, quiet = false;
  std::vector<std::string> insecure;
  int64_t chunk = 0;
  fs.Bool("all-tags", 'a', &all_tags, "Push all tags of an image to the repository");
  fs.Bool("quiet", 'q', &quiet, "Suppress verbose output");
  fs.Repeated("insecure-registry", 0, &insecure,
              "Registry (host:port) reachable over plain HTTP or unverified TLS (loopback "
              "registries always are); also $FARM_INSECURE_REGISTRIES",
              "host:port");
  fs.Size("chunk-size", 0, &chunk,
          "Upload blobs larger than this in chunks of this size, for registries or proxies that "
          "limit request bodies (default 0: each blob in one streamed request)");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "push", &pos, &code)) return code;
  if (!CheckArgs(pos, 1, 1, "push", usage)) return 2;
  absl::StatusOr<oci::Reference> parsed = oci::Reference::Parse(pos[0]);
  if (!parsed.ok()) return Fail(parsed.status());
  if (parsed->has_digest()) {
    return Fail(absl::InvalidArgumentError("cannot push a digest reference"));
  }
  if (all_tags && parsed->has_tag()) {
    return Fail(absl::InvalidArgumentError("tag can't be used with --all-tags/-a"));
  }
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());

  std::vector<oci::Reference> targets;
  if (all_tags) {
    absl::StatusOr<std::vector<scheduler::image::ImageRecord>> all = stores->images->List();
    if (!all.ok()) return Fail(all.status());
    for (const scheduler::image::ImageRecord& rec : *all) {
      absl::StatusOr<std::vector<oci::Reference>> refs = stores->images->ReferencesTo(rec.digest);
      if (!refs.ok()) return Fail(refs.status());
      for (const oci::Reference& r : *refs) {
        if (r.has_tag() && r.Name() == parsed->Name()) targets.push_back(r);
      }
    }
    std::sort(targets.begin(), targets.end());
    if (targets.empty()) {
      return Fail(absl::NotFoundError(
          absl::StrCat("An image does not exist locally with the tag: ", parsed->FamiliarName())));
    }
  } else {
    if (!parsed->has_tag() && !quiet) std::cout << "Using default tag: latest\n";
    targets.push_back(parsed->WithDefaultTag());
  }

  scheduler::registry::RegistryOptions ro = RegistryOptionsFrom(insecure);
  ro.chunk_size = chunk;
  absl::StatusOr<std::unique_ptr<scheduler::registry::Client>> client =
      scheduler::registry::Client::Create(parsed->domain(), ro);
  if (!client.ok()) return Fail(client.status());
  if (!quiet) std::cout << "The push refers to repository [" << parsed->Name() << "]\n";
  scheduler::image::PushOptions po;
  if (!quiet) {
    po.progress = [](const scheduler::image::Progress& p) {
      if (p.status == "Pushing" || p.id.empty()) return;
      std::cout << p.id << ": " << p.status << "\n";
      std::cout.flush();
    };
  }
  for (const oci::Reference& target : targets) {
    absl::StatusOr<std::string> digest = stores->images->ResolveReference(target);
    if (!digest.ok()) {
      return Fail(absl::NotFoundError(
          absl::StrCat("An image does not exist locally with the tag: ", target.FamiliarString())));
    }
    absl::StatusOr<scheduler::image::ImageRecord> rec = stores->images->Get(*digest);
    if (!rec.ok()) return Fail(rec.status());
    // Layers kept uncompressed are gzip-compressed once (remembered in the action cache): the
    // registry gets what a build with --compression gzip would have pushed.
    scheduler::image::LayerExportOptions eo;
    eo.memo = stores->action_cache.get();
    eo.spool_dir = stores->home + "/tmp";
    (void)common::MakeDirs(eo.spool_dir, 0700);
    absl::StatusOr<scheduler::image::ImageRecord> wire =
        scheduler::image::CompressLayersForExport(*stores->blobs, *rec, eo);
    if (!wire.ok()) return Fail(wire.status());
    absl::StatusOr<scheduler::image::PushResult> r =
        scheduler::image::PushImage(**client, *stores->blobs, *wire, target, po);
    if (!r.ok()) return Fail(r.status());
    // The registry's manifest digest names the local image too (Docker's RepoDigests).
    if (r->digest != rec->digest && std::find(rec->index_digests.begin(), rec->index_digests.end(),
                                              r->digest) == rec->index_digests.end()) {
      rec->index_digests.push_back(r->digest);
    }
    // Remember where it lives: a digest reference (Docker's RepoDigests) and a mount source.
    rec->sources.push_back(target.Name());
    absl::Status s = stores->images->Put(*rec);
    if (s.ok())
      s = stores->images->SetReference(target.NameOnly().WithDigest(r->digest), rec->digest)
              .status();
    if (!s.ok()) return Fail(s);
    if (quiet) {
      std::cout << target.String() << "\n";
    } else {
      std::cout << target.tag() << ": digest: " << r->digest << " size: " << r->size << "\n";
    }
  }
  return 0;
}

}  // namespace farm::cli
