#include "oci/manifest.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace farm::oci {

namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view what, absl::string_view where, absl::string_view detail) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", where, ": ", detail));
}

absl::Status GetStr(const json& o, const char* key, std::string* out, absl::string_view what,
                    absl::string_view where, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) {
    if (required) return Bad(what, where, absl::StrCat("missing \"", key, "\""));
    return absl::OkStatus();
  }
  if (!it->is_string()) return Bad(what, where, absl::StrCat("\"", key, "\" is not a string"));
  *out = it->get_ref<const std::string&>();
  return absl::OkStatus();
}

absl::Status GetStrMap(const json& o, const char* key, std::map<std::string, std::string>* out,
                       absl::string_view what, absl::string_view where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return Bad(what, where, absl::StrCat("\"", key, "\" is not an object"));
  for (auto m = it->begin(); m != it->end(); ++m) {
    if (!m->is_string()) {
      return Bad(what, where, absl::StrCat("\"", key, ".", m.key(), "\" is not a string"));
    }
    (*out)[m.key()] = m->get_ref<const std::string&>();
  }
  return absl::OkStatus();
}

absl::Status GetStrList(const json& o, const char* key, std::vector<std::string>* out,
                        absl::string_view what, absl::string_view where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return Bad(what, where, absl::StrCat("\"", key, "\" is not an array"));
  for (const json& e : *it) {
    if (!e.is_string()) {
      return Bad(what, where, absl::StrCat("\"", key, "\" has a non-string element"));
    }
    out->push_back(e.get_ref<const std::string&>());
  }
  return absl::OkStatus();
}

absl::Status ParsePlatform(const json& p, Platform* out, absl::string_view what,
                           absl::string_view where) {
  if (!p.is_object()) return Bad(what, where, "\"platform\" is not an object");
  std::string w = absl::StrCat(where, ".platform");
  RETURN_IF_ERROR(GetStr(p, "os", &out->os, what, w, false));
  RETURN_IF_ERROR(GetStr(p, "architecture", &out->architecture, what, w, false));
  RETURN_IF_ERROR(GetStr(p, "variant", &out->variant, what, w, false));
  RETURN_IF_ERROR(GetStr(p, "os.version", &out->os_version, what, w, false));
  RETURN_IF_ERROR(GetStrList(p, "os.features", &out->os_features, what, w));
  return absl::OkStatus();
}

absl::Status ParseDescriptor(const json& d, Descriptor* out, absl::string_view what,
                             absl::string_view where) {
  if (!d.is_object()) return Bad(what, where, "not an object");
  RETURN_IF_ERROR(GetStr(d, "mediaType", &out->media_type, what, where, true));
  RETURN_IF_ERROR(GetStr(d, "digest", &out->digest, what, where, true));
  if (!absl::StartsWith(out->digest, "sha256:") ||
      !common::IsValidSha256Hex(absl::string_view(out->digest).substr(7))) {
    return Bad(
        what, where,
        absl::StrCat("digest \"", out->digest,
                     "\" is not sha256:<64 lowercase hex> (the only algorithm Farm stores)"));
  }
  auto size = d.find("size");
  if (size == d.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    return Bad(what, where, "\"size\" must be a non-negative integer");
  }
  out->size = size->get<int64_t>();
  RETURN_IF_ERROR(GetStrList(d, "urls", &out->urls, what, where));
  RETURN_IF_ERROR(GetStrMap(d, "annotations", &out->annotations, what, where));
  RETURN_IF_ERROR(GetStr(d, "artifactType", &out->artifact_type, what, where, false));
  auto p = d.find("platform");
  if (p != d.end() && !p->is_null()) {
    Platform platform;
    RETURN_IF_ERROR(ParsePlatform(*p, &platform, what, where));
    out->platform = std::move(platform);
  }
  return absl::OkStatus();
}

json PlatformJson(const Platform& p) {
  json j = json::object();
  j["os"] = p.os;
  j["architecture"] = p.architecture;
  if (!p.variant.empty()) j["variant"] = p.variant;
  if (!p.os_version.empty()) j["os.version"] = p.os_version;
  if (!p.os_features.empty()) j["os.features"] = p.os_features;
  return j;
}

json DescriptorJson(const Descriptor& d) {
  json j = json::object();
  j["mediaType"] = d.media_type;
  j["digest"] = d.digest;
  j["size"] = d.size;
  if (!d.urls.empty()) j["urls"] = d.urls;
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  if (d.platform) j["platform"] = PlatformJson(*d.platform);
  if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
  return j;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

absl::StatusOr<json> ParseObject(absl::string_view text, absl::string_view what) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  }
  return j;
}

absl::Status CheckSchemaVersion(const json& j, absl::string_view what) {
  auto v = j.find("schemaVersion");
  if (v == j.end() || !v->is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing integer \"schemaVersion\""));
  }
  if (v->get<int64_t>() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": schemaVersion ", v->get<int64_t>(),
        " is not supported (Docker image manifest schema 1 was removed from Docker too; "
        "only schema 2 / OCI)"));
  }
  return absl::OkStatus();
}

// Strips parameters ("; charset=utf-8") from a Content-Type.
std::string BareType(absl::string_view content_type) {
  absl::string_view t = content_type.substr(0, content_type.find(';'));
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(t));
}

}  // namespace

absl::StatusOr<std::string> SniffManifestMediaType(absl::string_view text,
                                                   absl::string_view content_type) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("manifest: not a JSON object");
  }
  std::string declared;
  auto mt = j.find("mediaType");
  if (mt != j.end() && mt->is_string()) declared = mt->get<std::string>();
  std::string type = BareType(content_type);
  if (type == kDockerSchema1Signed || type == kDockerSchema1 || declared == kDockerSchema1Signed ||
      declared == kDockerSchema1 ||
      (j.contains("schemaVersion") && j["schemaVersion"].is_number_integer() &&
       j["schemaVersion"].get<int64_t>() == 1)) {
    return absl::InvalidArgumentError(
        "manifest: Docker image manifest schema 1 is not supported (Docker removed it too); "
        "push the image again with a current tool");
  }
  if (!declared.empty()) return declared;
  if (IsIndexMediaType(type) || IsManifestMediaType(type)) return type;
  return std::string(j.contains("manifests") ? kOciIndex : kOciManifest);
}

absl::StatusOr<Manifest> Manifest::Parse(absl::string_view text, absl::string_view content_type) {
  const char* what = "image manifest";
  absl::StatusOr<json> parsed = ParseObject(text, what);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  absl::StatusOr<std::string> type = SniffManifestMediaType(text, content_type);
  if (!type.ok()) return type.status();
  RETURN_IF_ERROR(CheckSchemaVersion(j, what));
  Manifest m;
  m.media_type = *type;
  if (!IsManifestMediaType(m.media_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": media type ", m.media_type, " is not an image manifest"));
  }
  std::string ct = BareType(content_type);
  if (IsManifestMediaType(ct) && ct != m.media_type) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": mediaType ", m.media_type, " does not match the content type ", ct));
  }
  auto config = j.find("config");
  if (config == j.end()) return Bad(what, "config", "missing");
  RETURN_IF_ERROR(ParseDescriptor(*config, &m.config, what, "config"));
  auto layers = j.find("layers");
  if (layers != j.end() && !layers->is_null()) {
    if (!layers->is_array()) return Bad(what, "layers", "not an array");
    for (size_t i = 0; i < layers->size(); ++i) {
      Descriptor d;
      RETURN_IF_ERROR(ParseDescriptor((*layers)[i], &d, what, absl::StrCat("layers[", i, "]")));
      m.layers.push_back(std::move(d));
    }
  }
  RETURN_IF_ERROR(GetStrMap(j, "annotations", &m.annotations, what, "manifest"));
  RETURN_IF_ERROR(GetStr(j, "artifactType", &m.artifact_type, what, "manifest", false));
  auto subject = j.find("subject");
  if (subject != j.end() && !subject->is_null()) {
    Descriptor d;
    RETURN_IF_ERROR(ParseDescriptor(*subject, &d, what, "subject"));
    m.subject = std::move(d);
  }
  return m;
}

std::string Manifest::ToJson() const {
  json j = json::object();
  j["schemaVersion"] = 2;
  j["mediaType"] = media_type;
  j["config"] = DescriptorJson(config);
  json ls = json::array();
  for (const Descriptor& d : layers) ls.push_back(DescriptorJson(d));
  j["layers"] = std::move(ls);
  if (!annotations.empty()) j["annotations"] = annotations;
  if (subject) j["subject"] = DescriptorJson(*subject);
  if (!artifact_type.empty()) j["artifactType"] = artifact_type;
  return Dump(j);
}

absl::StatusOr<Index> Index::Parse(absl::string_view text, absl::string_view content_type) {
  const char* what = "image index";
  absl::StatusOr<json> parsed = ParseObject(text, what);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  absl::StatusOr<std::string> type = SniffManifestMediaType(text, content_type);
  if (!type.ok()) return type.status();
  RETURN_IF_ERROR(CheckSchemaVersion(j, what));
  Index idx;
  idx.media_type = *type;
  if (!IsIndexMediaType(idx.media_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": media type ", idx.media_type, " is not an index"));
  }
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) return Bad(what, "manifests", "missing or not an array");
  for (size_t i = 0; i < ms->size(); ++i) {
    Descriptor d;
    RETURN_IF_ERROR(ParseDescriptor((*ms)[i], &d, what, absl::StrCat("manifests[", i, "]")));
    idx.manifests.push_back(std::move(d));
  }
  RETURN_IF_ERROR(GetStrMap(j, "annotations", &idx.annotations, what, "index"));
  RETURN_IF_ERROR(GetStr(j, "artifactType", &idx.artifact_type, what, "index", false));
  auto subject = j.find("subject");
  if (subject != j.end() && !subject->is_null()) {
    Descriptor d;
    RETURN_IF_ERROR(ParseDescriptor(*subject, &d, what, "subject"));
    idx.subject = std::move(d);
  }
  return idx;
}

std::string Index::ToJson() const {
  json j = json::object();
  j["schemaVersion"] = 2;
  j["mediaType"] = media_type;
  json ms = json::array();
  for (const Descriptor& d : manifests) ms.push_back(DescriptorJson(d));
  j["manifests"] = std::move(ms);
  if (!annotations.empty()) j["annotations"] = annotations;
  if (subject) j["subject"] = DescriptorJson(*subject);
  if (!artifact_type.empty()) j["artifactType"] = artifact_type;
  return Dump(j);
}

bool PlatformMatches(const Descriptor& entry, const Platform& want) {
  if (!entry.platform) return false;
  auto ref_type = entry.annotations.find("vnd.docker.reference.type");
  if (ref_type != entry.annotations.end() && ref_type->second == "attestation-manifest") {
    return false;
  }
  Platform have = entry.platform->Normalized();
  Platform w = want.Normalized();
  if (have.os != w.os || have.architecture != w.architecture) return false;
  return w.variant.empty() || have.variant == w.variant;
}

absl::StatusOr<Descriptor> SelectPlatform(const Index& index, const Platform& want) {
  Platform w = want.Normalized();
  const Descriptor* compatible = nullptr;
  for (const Descriptor& d : index.manifests) {
    if (!IsManifestMediaType(d.media_type) && !IsIndexMediaType(d.media_type)) continue;
    if (!PlatformMatches(d, w)) continue;
    if (d.platform->Normalized().variant == w.variant) return d;  // exact
    if (compatible == nullptr) compatible = &d;
  }
  if (compatible != nullptr) return *compatible;
  return absl::NotFoundError(
      absl::StrCat("no matching manifest for ", w.String(), " in the manifest list entries"));
}

}  // namespace farm::oci
