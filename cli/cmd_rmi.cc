// farm rmi: remove images or names, like `docker rmi`.
#include <iostream>

#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "scheduler/image/store.h"

namespace farm::cli {

int RunRmi(const Args& args) {
  const std::string usage = "farm rmi [OPTIONS] IMAGE [IMAGE...]";
  common::FlagSet fs(usage, "Remove one or more images");
  bool force = false, no_prune = false;
  fs.Bool("force", 'f', &force, "Force removal of the image");
  fs.Bool("no-prune", 0, &no_prune,
          "Do not delete untagged parents (no effect: farm images "
          "have no parent images)");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "rmi", &pos, &code)) return code;
  if (!CheckArgs(pos, 1, static_cast<size_t>(-1), "rmi", usage)) return 2;
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  int rc = 0;
  for (const std::string& name : pos) {
    absl::StatusOr<scheduler::image::RemoveResult> r =
        scheduler::image::RemoveImage(*stores->images, name, force);
    if (!r.ok()) {
      rc = Fail(r.status());
      continue;
    }
    for (const std::string& u : r->untagged) std::cout << "Untagged: " << u << "\n";
    for (const std::string& d : r->deleted) std::cout << "Deleted: " << d << "\n";
    // The CAS keeps the blobs (r->unreferenced_blobs) until cache eviction reclaims them.
  }
  return rc;
}

}  // namespace farm::cli
