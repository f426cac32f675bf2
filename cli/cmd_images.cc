// farm images: list local images like `docker images`.
#include <fnmatch.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "oci/config.h"
#include "scheduler/image/store.h"

namespace farm::cli {

namespace {

using nlohmann::json;

struct Row {
  std::string repo, tag, digest, id, created_since, created_at, size;
  // The image's platforms ("linux/amd64"), with each platform's manifest digest and size.
  struct Platform {
    std::string platform, digest, size;
  };
  std::vector<Platform> platforms;
};

// Bytes of one platform's layers, as ImageRecord::ContentSize counts them.
int64_t ManifestSize(const scheduler::image::StoredManifest& m) {
  int64_t n = 0;
  for (const farm::v1::Layer& l : m.layers) {
    n += l.uncompressed_size() > 0 ? l.uncompressed_size() : l.size();
  }
  return n;
}

// Go's path.Match against FamiliarString, then FamiliarName (reference.FamiliarMatch).
bool FamiliarMatch(const std::string& pattern, const oci::Reference& ref) {
  return fnmatch(pattern.c_str(), ref.FamiliarString().c_str(), FNM_PATHNAME) == 0 ||
         fnmatch(pattern.c_str(), ref.FamiliarName().c_str(), FNM_PATHNAME) == 0;
}

std::string GoTimeString(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) return "N/A";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S +0000 UTC", t, absl::UTCTimeZone());
}

absl::Time CreatedTime(const scheduler::image::ImageRecord& r) {
  absl::Time t = absl::InfinitePast();
  std::string err;
  if (!r.created.empty()) absl::ParseTime(absl::RFC3339_full, r.created, &t, &err);
  return t;
}

}  // namespace

int RunImages(const Args& args) {
  const std::string usage = "farm images [OPTIONS] [REPOSITORY[:TAG]]";
  common::FlagSet fs(usage, "List images");
  bool all = false, digests = false, no_trunc = false, quiet = false, tree = false;
  std::vector<std::string> filters;
  std::string format;
  fs.Bool("all", 'a', &all, "Show all images (default hides intermediate images)");
  fs.Bool("digests", 0, &digests, "Show digests");
  fs.Repeated("filter", 'f', &filters, "Filter output based on conditions provided", "filter");
  fs.String("format", 0, &format, "Format output using a custom template");
  fs.Bool("no-trunc", 0, &no_trunc, "Don't truncate output");
  fs.Bool("quiet", 'q', &quiet, "Only show image IDs");
  fs.Bool("tree", 0, &tree, "Show each image's platforms (manifest digest and size) under it");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "images", &pos, &code)) return code;
  if (!CheckArgs(pos, 0, 1, "images", usage)) return 2;

  std::vector<std::string> ref_patterns;
  std::optional<bool> dangling;
  std::vector<std::pair<std::string, std::optional<std::string>>> labels;
  for (const std::string& f : filters) {
    size_t eq = f.find('=');
    std::string key = f.substr(0, eq), value = eq == std::string::npos ? "" : f.substr(eq + 1);
    if (key == "dangling") {
      if (value != "true" && value != "false" && value != "1" && value != "0") {
        return Fail(
            absl::InvalidArgumentError(absl::StrCat("invalid filter 'dangling=", value, "'")));
      }
      dangling = value == "true" || value == "1";
    } else if (key == "reference") {
      ref_patterns.push_back(value);
    } else if (key == "label") {
      size_t e = value.find('=');
      labels.push_back({value.substr(0, e), e == std::string::npos
                                                ? std::nullopt
                                                : std::optional<std::string>(value.substr(e + 1))});
    } else {
      return Fail(absl::InvalidArgumentError(absl::StrCat("invalid filter '", key, "'")));
    }
  }
  if (!pos.empty()) ref_patterns.push_back(pos[0]);

  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  absl::StatusOr<std::vector<scheduler::image::ImageRecord>> records = stores->images->List();
  if (!records.ok()) return Fail(records.status());
  std::sort(records->begin(), records->end(),
            [](const scheduler::image::ImageRecord& a, const scheduler::image::ImageRecord& b) {
              absl::Time ta = CreatedTime(a), tb = CreatedTime(b);
              if (ta != tb) return ta > tb;
              if (a.added_unix != b.added_unix) return a.added_unix > b.added_unix;
              return a.digest < b.digest;
            });

  absl::Time now = absl::Now();
  std::vector<Row> rows;
  for (const scheduler::image::ImageRecord& rec : *records) {
    absl::StatusOr<std::vector<oci::Reference>> refs = stores->images->ReferencesTo(rec.digest);
    if (!refs.ok()) return Fail(refs.status());
    if (!labels.empty()) {
      bool ok = true;
      for (const scheduler::image::StoredManifest& m : rec.manifests) {
        absl::StatusOr<common::Digest> cd =
            common::Digest::ParseOci(m.config_digest, m.config_size);
        absl::StatusOr<std::string> bytes =
            cd.ok() ? stores->blobs->ReadBlob(*cd) : absl::StatusOr<std::string>(cd.status());
        absl::StatusOr<oci::ImageConfig> cfg =
            bytes.ok() ? oci::ImageConfig::FromJson(*bytes)
                       : absl::StatusOr<oci::ImageConfig>(bytes.status());
        for (const auto& [k, v] : labels) {
          if (!cfg.ok()) {
            ok = false;
            continue;
          }
          auto it = cfg->config.labels.find(k);
          if (it == cfg->config.labels.end() || (v && it->second != *v)) ok = false;
        }
        break;
      }
      if (!ok) continue;
    }
    std::map<std::string, std::vector<std::string>> tags, repo_digests;
    for (const oci::Reference& r : *refs) {
      if (!ref_patterns.empty()) {
        bool found = false;
        for (const std::string& p : ref_patterns) found |= FamiliarMatch(p, r);
        if (!found) continue;
      }
      if (r.has_tag()) tags[r.FamiliarName()].push_back(r.tag());
      if (r.has_digest()) repo_digests[r.FamiliarName()].push_back(r.digest());
    }
    bool untagged = tags.empty() && repo_digests.empty();
    if (untagged && !ref_patterns.empty()) continue;
    if (dangling && *dangling && !tags.empty()) continue;
    if (dangling && !*dangling && untagged) continue;
    Row base;
    base.id = no_trunc ? rec.Id() : ShortId(rec.Id());
    base.created_since = CreatedSince(rec.created, now);
    base.created_at = GoTimeString(rec.created);
    base.size = DockerSize(rec.ContentSize());
    for (const scheduler::image::StoredManifest& m : rec.manifests) {
      base.platforms.push_back(
          {m.platform, no_trunc ? m.digest : ShortId(m.digest), DockerSize(ManifestSize(m))});
    }
    if (untagged) {
      Row r = base;
      r.repo = r.tag = r.digest = "<none>";
      rows.push_back(r);
      continue;
    }
    for (auto& [repo, repo_tags] : tags) {
      std::vector<std::string> ds = digests ? repo_digests[repo] : std::vector<std::string>{};
      repo_digests.erase(repo);
      for (const std::string& tag : repo_tags) {
        if (ds.empty()) {
          Row r = base;
          r.repo = repo;
          r.tag = tag;
          r.digest = "<none>";
          rows.push_back(r);
        }
        for (const std::string& d : ds) {
          Row r = base;
          r.repo = repo;
          r.tag = tag;
          r.digest = d;
          rows.push_back(r);
        }
      }
    }
    for (auto& [repo, ds] : repo_digests) {
      if (digests) {
        for (const std::string& d : ds) {
          Row r = base;
          r.repo = repo;
          r.tag = "<none>";
          r.digest = d;
          rows.push_back(r);
        }
      } else {
        Row r = base;
        r.repo = repo;
        r.tag = "<none>";
        r.digest = "<none>";
        rows.push_back(r);
      }
    }
  }

  if (quiet && format.empty()) {
    for (const Row& r : rows) std::cout << r.id << "\n";
    return 0;
  }
  if (tree) {
    Table t({"IMAGE", "ID", "SIZE", "CREATED"});
    for (const Row& r : rows) {
      t.AddRow({r.repo == "<none>" ? "<untagged>" : absl::StrCat(r.repo, ":", r.tag), r.id, r.size,
                r.created_since});
      for (size_t i = 0; i < r.platforms.size(); ++i) {
        const Row::Platform& p = r.platforms[i];
        t.AddRow({absl::StrCat(i + 1 == r.platforms.size() ? "└─ " : "├─ ", p.platform), p.digest,
                  p.size, ""});
      }
    }
    std::cout << t.Render();
    return 0;
  }
  if (!format.empty() && format != "table") {
    std::vector<json> items;
    for (const Row& r : rows) {
      std::vector<std::string> platforms;
      for (const Row::Platform& p : r.platforms) platforms.push_back(p.platform);
      items.push_back(json{{"Containers", "N/A"},
                           {"CreatedAt", r.created_at},
                           {"CreatedSince", r.created_since},
                           {"Digest", r.digest},
                           {"ID", r.id},
                           {"Repository", r.repo},
                           {"SharedSize", "N/A"},
                           {"Size", r.size},
                           {"Tag", r.tag},
                           {"UniqueSize", "N/A"},
                           {"VirtualSize", r.size}});
      // Farm's own field, only when the template names it ({{json .}} keeps docker's keys).
      if (absl::StrContains(format, "Platforms")) {
        items.back()["Platforms"] = absl::StrJoin(platforms, ",");
      }
    }
    absl::StatusOr<std::string> out = RenderFormat(format, items,
                                                   {{"Repository", "REPOSITORY"},
                                                    {"Tag", "TAG"},
                                                    {"ID", "IMAGE ID"},
                                                    {"Digest", "DIGEST"},
                                                    {"CreatedSince", "CREATED"},
                                                    {"CreatedAt", "CREATED AT"},
                                                    {"Size", "SIZE"},
                                                    {"VirtualSize", "SIZE"},
                                                    {"Containers", "CONTAINERS"},
                                                    {"SharedSize", "SHARED SIZE"},
                                                    {"UniqueSize", "UNIQUE SIZE"},
                                                    {"Platforms", "PLATFORMS"}});
    if (!out.ok()) return Fail(out.status());
    std::cout << *out;
    return 0;
  }
  std::vector<std::string> header = {"REPOSITORY", "TAG"};
  if (digests) header.push_back("DIGEST");
  for (const char* h : {"IMAGE ID", "CREATED", "SIZE"}) header.push_back(h);
  Table t(header);
  for (const Row& r : rows) {
    std::vector<std::string> cells = {r.repo, r.tag};
    if (digests) cells.push_back(r.digest);
    cells.insert(cells.end(), {r.id, r.created_since, r.size});
    t.AddRow(cells);
  }
  std::cout << t.Render();
  return 0;
}

}  // namespace farm::cli
