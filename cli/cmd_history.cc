// farm history: the layers and instructions of an image, like `docker image history`.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "oci/config.h"
#include "scheduler/image/store.h"

namespace farm::cli {

int RunHistory(const Args& args) {
  const std::string usage = "farm history [OPTIONS] IMAGE";
  common::FlagSet fs(usage, "Show the history of an image");
  bool human = true, no_trunc = false, quiet = false;
  std::string format, platform_text;
  fs.Bool("human", 'H', &human, "Print sizes and dates in human readable format (default true)");
  fs.Bool("no-trunc", 0, &no_trunc, "Don't truncate output");
  fs.Bool("quiet", 'q', &quiet, "Only show image IDs");
  fs.String("format", 0, &format, "Format output using a custom template");
  fs.String("platform", 0, &platform_text, "Show history for the given platform (index images)");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "history", &pos, &code)) return code;
  if (!CheckArgs(pos, 1, 1, "history", usage)) return 2;
  oci::Platform platform = oci::Platform::Host();
  if (!platform_text.empty()) {
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(platform_text);
    if (!p.ok()) return Fail(p.status());
    platform = *p;
  }

  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  absl::StatusOr<scheduler::image::ImageRecord> rec =
      scheduler::image::LookupImage(*stores->images, pos[0]);
  if (!rec.ok()) return Fail(rec.status());
  absl::StatusOr<const scheduler::image::StoredManifest*> m = rec->ForPlatform(platform);
  if (!m.ok()) return Fail(m.status());
  absl::StatusOr<common::Digest> cd =
      common::Digest::ParseOci((*m)->config_digest, (*m)->config_size);
  if (!cd.ok()) return Fail(cd.status());
  absl::StatusOr<std::string> bytes = stores->blobs->ReadBlob(*cd);
  if (!bytes.ok()) return Fail(bytes.status());
  absl::StatusOr<oci::ImageConfig> cfg = oci::ImageConfig::FromJson(*bytes);
  if (!cfg.ok()) return Fail(cfg.status());

  // Sizes: non-empty history entries map to layers in order.
  struct Entry {
    std::string id, created, created_at, created_by, size, comment;
  };
  std::vector<Entry> entries;
  size_t layer = 0;
  absl::Time now = absl::Now();
  for (const oci::HistoryEntry& h : cfg->history) {
    int64_t size = 0;
    if (!h.empty_layer && layer < (*m)->layers.size()) {
      const farm::v1::Layer& l = (*m)->layers[layer++];
      size = l.uncompressed_size() >= 0 ? l.uncompressed_size() : l.size();
    }
    Entry e;
    e.id = "<missing>";
    // Docker: CreatedAt is always RFC 3339; CreatedSince is "... ago", or CreatedAt with -H=false.
    e.created_at = CreatedAt(h.created);
    e.created = human ? CreatedSince(h.created, now) : e.created_at;
    std::string by = absl::StrReplaceAll(h.created_by, {{"\t", " "}});
    e.created_by = no_trunc ? by : Ellipsis(by, 45);
    e.size = human ? DockerSize(size) : absl::StrCat(size);
    e.comment = h.comment;
    entries.push_back(std::move(e));
  }
  std::reverse(entries.begin(), entries.end());
  if (!entries.empty()) entries[0].id = no_trunc ? rec->Id() : ShortId(rec->Id());

  if (quiet && format.empty()) {
    for (const Entry& e : entries) std::cout << e.id << "\n";
    return 0;
  }
  if (!format.empty() && format != "table") {
    std::vector<nlohmann::json> items;
    for (const Entry& e : entries) {
      items.push_back({{"ID", e.id},
                       {"CreatedSince", e.created},
                       {"CreatedAt", e.created_at},
                       {"CreatedBy", e.created_by},
                       {"Size", e.size},
                       {"Comment", e.comment}});
    }
    absl::StatusOr<std::string> out = RenderFormat(format, items,
                                                   {{"ID", "IMAGE"},
                                                    {"CreatedSince", "CREATED"},
                                                    {"CreatedAt", "CREATED AT"},
                                                    {"CreatedBy", "CREATED BY"},
                                                    {"Size", "SIZE"},
                                                    {"Comment", "COMMENT"}});
    if (!out.ok()) return Fail(out.status());
    std::cout << *out;
    return 0;
  }
  Table t({"IMAGE", human ? "CREATED" : "CREATED AT", "CREATED BY", "SIZE", "COMMENT"});
  for (const Entry& e : entries) t.AddRow({e.id, e.created, e.created_by, e.size, e.comment});
  std::cout << t.Render();
  return 0;
}

}  // namespace farm::cli
