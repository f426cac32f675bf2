// farm tag: name an image, like `docker tag`.
#include <iostream>

#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "scheduler/image/store.h"

namespace farm::cli {

int RunTag(const Args& args) {
  const std::string usage = "farm tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]";
  common::FlagSet fs(usage, "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "tag", &pos, &code)) return code;
  if (!CheckArgs(pos, 2, 2, "tag", usage)) return 2;
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  absl::Status s = scheduler::image::TagImage(*stores->images, pos[0], pos[1]);
  if (!s.ok()) return Fail(s);
  return 0;
}

}  // namespace farm::cli
