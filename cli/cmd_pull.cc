// farm pull: an image from its registry into the local store, like `docker pull`.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "scheduler/image/store.h"
#include "scheduler/image/transfer.h"

namespace farm::cli {

int RunPull(const Args& args) {
  const std::string usage = "farm pull [OPTIONS] NAME[:TAG|@DIGEST]";
  common::FlagSet fs(usage, "Download an image from a registry");
  std::string platform_text;
  bool quiet = false;
  std::vector<std::string> insecure;
  fs.String("platform", 0, &platform_text, "Set platform if server is multi-platform capable");
  fs.Bool("quiet", 'q', &quiet, "Suppress verbose output");
  fs.Repeated("insecure-registry", 0, &insecure,
              "Registry (host:port) reachable over plain HTTP or unverified TLS (loopback "
              "registries always are); also $FARM_INSECURE_REGISTRIES",
              "host:port");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "pull", &pos, &code)) return code;
  if (!CheckArgs(pos, 1, 1, "pull", usage)) return 2;
  absl::StatusOr<oci::Reference> parsed = oci::Reference::Parse(pos[0]);
  if (!parsed.ok()) return Fail(parsed.status());
  oci::Reference ref = parsed->WithDefaultTag();
  scheduler::image::PullOptions po;
  if (!platform_text.empty()) {
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(platform_text);
    if (!p.ok()) return Fail(p.status());
    po.platform = *p;
  }
  if (!parsed->has_tag() && !parsed->has_digest() && !quiet) {
    std::cout << "Using default tag: latest\n";
  }
  if (!quiet) {
    po.progress = [](const scheduler::image::Progress& p) {
      if (p.status == "Downloading") return;  // progress bars: not in line output
      if (p.id.empty()) {
        std::cout << p.status << "\n";
      } else {
        std::cout << p.id << ": " << p.status << "\n";
      }
      std::cout.flush();
    };
  }
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  absl::StatusOr<std::vector<scheduler::image::ImageRecord>> all = stores->images->List();
  if (all.ok()) {
    for (const scheduler::image::ImageRecord& r : *all) {
      for (const scheduler::image::StoredManifest& m : r.manifests) {
        po.known_layers.insert(po.known_layers.end(), m.layers.begin(), m.layers.end());
      }
    }
  }
  absl::StatusOr<std::string> before = stores->images->ResolveReference(ref);
  absl::StatusOr<std::unique_ptr<scheduler::registry::Client>> client =
      scheduler::registry::Client::Create(ref.domain(), RegistryOptionsFrom(insecure));
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<scheduler::image::PullResult> r =
      scheduler::image::PullImage(**client, *stores->blobs, ref, po);
  if (!r.ok()) return Fail(r.status());
  absl::Status s = stores->images->Put(r->record);
  if (s.ok()) s = stores->images->SetReference(ref, r->record.digest).status();
  if (s.ok() && !ref.has_digest()) {
    s = stores->images
            ->SetReference(ref.NameOnly().WithDigest(r->resolved_digest), r->record.digest)
            .status();
  }
  if (!s.ok()) return Fail(s);
  if (!quiet) {
    std::cout << "Digest: " << r->resolved_digest << "\n";
    bool up_to_date = before.ok() && *before == r->record.digest;
    std::cout << "Status: "
              << (up_to_date ? "Image is up to date for " : "Downloaded newer image for ")
              << ref.FamiliarString() << "\n";
  }
  std::cout << ref.String() << "\n";
  return 0;
}

}  // namespace farm::cli
