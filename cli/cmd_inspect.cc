// farm inspect: an image's details as JSON, like `docker image inspect`.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"
#include "oci/config.h"
#include "scheduler/image/store.h"

namespace farm::cli {

namespace {

using ordered_json = nlohmann::ordered_json;

// The image config's "config" in the shape of Docker's container.Config, which `docker image
// inspect` prints: every field it always writes (empty ones as "", false or null), in its
// order, and the omitempty ones only when set.
ordered_json DockerContainerConfig(const ordered_json& c) {
  auto get = [&c](const char* key) {
    return c.contains(key) ? c[key] : ordered_json();  // null when absent
  };
  auto str = [&c](const char* key) {
    return c.contains(key) && c[key].is_string() ? c[key] : ordered_json("");
  };
  auto set = [](const ordered_json& v) {
    return !v.is_null() && !(v.is_boolean() && !v.get<bool>()) &&
           !((v.is_string() || v.is_array() || v.is_object()) && v.empty());
  };
  ordered_json out = ordered_json::object();
  out["Hostname"] = str("Hostname");
  out["Domainname"] = str("Domainname");
  out["User"] = str("User");
  out["AttachStdin"] = false;
  out["AttachStdout"] = false;
  out["AttachStderr"] = false;
  if (set(get("ExposedPorts"))) out["ExposedPorts"] = c["ExposedPorts"];
  out["Tty"] = false;
  out["OpenStdin"] = false;
  out["StdinOnce"] = false;
  out["Env"] = get("Env");
  out["Cmd"] = get("Cmd");
  if (set(get("Healthcheck"))) out["Healthcheck"] = c["Healthcheck"];
  if (set(get("ArgsEscaped"))) out["ArgsEscaped"] = c["ArgsEscaped"];
  out["Image"] = str("Image");
  out["Volumes"] = get("Volumes");
  out["WorkingDir"] = str("WorkingDir");
  out["Entrypoint"] = get("Entrypoint");
  out["OnBuild"] = get("OnBuild");
  out["Labels"] = get("Labels");
  if (set(get("StopSignal"))) out["StopSignal"] = c["StopSignal"];
  if (set(get("Shell"))) out["Shell"] = c["Shell"];
  return out;
}

absl::StatusOr<ordered_json> Inspect(LocalStores& stores, const scheduler::image::ImageRecord& rec,
                                     const oci::Platform& platform) {
  absl::StatusOr<const scheduler::image::StoredManifest*> m = rec.ForPlatform(platform);
  if (!m.ok()) return m.status();
  absl::StatusOr<common::Digest> cd =
      common::Digest::ParseOci((*m)->config_digest, (*m)->config_size);
  if (!cd.ok()) return cd.status();
  absl::StatusOr<std::string> bytes = stores.blobs->ReadBlob(*cd);
  if (!bytes.ok()) return bytes.status();
  ordered_json raw = ordered_json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (raw.is_discarded() || !raw.is_object()) {
    return absl::DataLossError(absl::StrCat("image config ", (*m)->config_digest, " is not JSON"));
  }
  absl::StatusOr<std::vector<oci::Reference>> refs = stores.images->ReferencesTo(rec.digest);
  if (!refs.ok()) return refs.status();
  ordered_json tags = ordered_json::array(), digests = ordered_json::array();
  for (const oci::Reference& r : *refs) {
    if (r.has_tag()) tags.push_back(r.FamiliarString());
    if (r.has_digest()) digests.push_back(r.FamiliarString());
  }
  ordered_json layers = ordered_json::array();
  for (const farm::v1::Layer& l : (*m)->layers) layers.push_back(l.diff_id());
  ordered_json out;
  out["Id"] = rec.Id();
  out["RepoTags"] = tags;
  out["RepoDigests"] = digests;
  out["Parent"] = "";
  out["Comment"] = "";
  out["Created"] = raw.value("created", "");
  out["DockerVersion"] = "";
  out["Author"] = raw.value("author", "");
  out["Config"] =
      DockerContainerConfig(raw.contains("config") ? raw["config"] : ordered_json::object());
  out["Architecture"] = raw.value("architecture", "");
  if (raw.contains("variant")) out["Variant"] = raw["variant"];
  out["Os"] = raw.value("os", "");
  out["Size"] = rec.ContentSize();
  out["RootFS"] = {{"Type", "layers"}, {"Layers", layers}};
  out["Metadata"] = {
      {"LastTagTime",
       rec.last_tag_unix == 0
           ? std::string("0001-01-01T00:00:00Z")
           : absl::FormatTime(absl::RFC3339_full, absl::FromUnixSeconds(rec.last_tag_unix),
                              absl::UTCTimeZone())}};
  out["Descriptor"] = {{"mediaType", rec.media_type}, {"digest", rec.digest}, {"size", rec.size}};
  if (rec.is_index()) {
    // The platforms of a multi-platform image, in the shape of Docker's (API 1.48) Manifests.
    ordered_json manifests = ordered_json::array();
    for (const scheduler::image::StoredManifest& pm : rec.manifests) {
      absl::StatusOr<oci::Platform> p = oci::Platform::Parse(pm.platform);
      ordered_json platform = {{"architecture", p.ok() ? p->architecture : pm.platform},
                               {"os", p.ok() ? p->os : ""}};
      if (p.ok() && !p->variant.empty()) platform["variant"] = p->variant;
      int64_t size = 0;
      for (const farm::v1::Layer& l : pm.layers) {
        size += l.uncompressed_size() > 0 ? l.uncompressed_size() : l.size();
      }
      manifests.push_back({{"ID", pm.digest},
                           {"Descriptor",
                            {{"mediaType", pm.media_type},
                             {"digest", pm.digest},
                             {"size", pm.size},
                             {"platform", platform}}},
                           {"Available", true},
                           {"Size", {{"Content", size}}},
                           {"Kind", "image"},
                           {"ImageData", {{"Platform", platform}, {"Config", pm.config_digest}}}});
    }
    out["Manifests"] = manifests;
  }
  return out;
}

}  // namespace

int RunInspect(const Args& args) {
  const std::string usage = "farm inspect [OPTIONS] IMAGE [IMAGE...]";
  common::FlagSet fs(usage, "Display detailed information on one or more images");
  std::string format, platform_text;
  fs.String("format", 'f', &format, "Format output using a custom template");
  fs.String("platform", 0, &platform_text, "Inspect the given platform of an index image");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "inspect", &pos, &code)) return code;
  if (!CheckArgs(pos, 1, static_cast<size_t>(-1), "inspect", usage)) return 2;
  oci::Platform platform = oci::Platform::Host();
  if (!platform_text.empty()) {
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(platform_text);
    if (!p.ok()) return Fail(p.status());
    platform = *p;
  }
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  ordered_json all = ordered_json::array();
  std::vector<absl::Status> errors;
  for (const std::string& name : pos) {
    absl::StatusOr<scheduler::image::ImageRecord> rec =
        scheduler::image::LookupImage(*stores->images, name);
    // Like docker image inspect, a single-platform image is shown whatever its platform;
    // --platform picks among an index's.
    oci::Platform show = platform;
    if (rec.ok() && platform_text.empty() && !rec->is_index() && rec->manifests.size() == 1) {
      absl::StatusOr<oci::Platform> own = oci::Platform::Parse(rec->manifests[0].platform);
      if (own.ok()) show = *own;
    }
    absl::StatusOr<ordered_json> j =
        rec.ok() ? Inspect(*stores, *rec, show) : absl::StatusOr<ordered_json>(rec.status());
    if (!j.ok()) {
      errors.push_back(j.status());
      continue;
    }
    all.push_back(std::move(*j));
  }
  if (!format.empty()) {
    for (const ordered_json& item : all) {
      absl::StatusOr<std::string> line = RenderTemplate(format, nlohmann::json::parse(item.dump()));
      if (!line.ok()) return Fail(line.status());
      std::cout << *line << "\n";
    }
  } else {
    std::cout << GoJsonEscape(all.dump(4, ' ', false, ordered_json::error_handler_t::replace))
              << "\n";
  }
  int rc = 0;
  for (const absl::Status& e : errors) rc = Fail(e);
  return rc;
}

}  // namespace farm::cli
