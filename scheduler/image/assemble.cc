#include "scheduler/image/assemble.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/byte_sink.h"
#include "common/digest.h"
#include "common/status_macros.h"
#include "oci/compression.h"

namespace farm::scheduler::image {

namespace {

absl::Status ValidateLayer(const farm::v1::Layer& l, absl::string_view where) {
  auto bad_digest = [](const std::string& d) {
    return d.size() != 71 || d.compare(0, 7, "sha256:") != 0 ||
           !common::IsValidSha256Hex(absl::string_view(d).substr(7));
  };
  if (bad_digest(l.digest())) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": layer digest \"", l.digest(), "\" is not sha256:<64 hex>"));
  }
  if (bad_digest(l.diff_id())) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": layer ", l.digest(), " diff_id \"",
                                                   l.diff_id(), "\" is not sha256:<64 hex>"));
  }
  if (l.size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": layer ", l.digest(), " has negative size ", l.size()));
  }
  absl::StatusOr<oci::Compression> c = oci::LayerCompression(l.media_type());
  if (!c.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", c.status().message()));
  return absl::OkStatus();
}

oci::Descriptor LayerDescriptor(const farm::v1::Layer& l) {
  oci::Descriptor d;
  d.media_type = l.media_type();
  d.digest = l.digest();
  d.size = l.size();
  return d;
}

void AppendGoQuoted(std::string* out, absl::string_view s) {
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\a':
          out->append("\\a");
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        case '\v':
          out->append("\\v");
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            absl::StrAppendFormat(out, "\\x%02x", c);
          } else {
            out->push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence; invalid bytes are written as \xNN like strconv.Quote.
    int len = c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (c >= 0xf8) len = 0;
    uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (ok && ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
               (cp >= 0xd800 && cp <= 0xdfff))) {
      ok = false;
    }
    if (!ok) {
      absl::StrAppendFormat(out, "\\x%02x", c);
      ++i;
      continue;
    }
    if (cp < 0xa0 || cp == 0xad) {
      absl::StrAppendFormat(out, "\\u%04x", cp);  // C1 controls, soft hyphen: not printable
    } else {
      out->append(s.substr(i, len).data(), len);
    }
    i += len;
  }
  out->push_back('"');
}

}  // namespace

std::string GoQuotedList(const std::vector<std::string>& list) {
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0) out.push_back(' ');
    AppendGoQuoted(&out, list[i]);
  }
  out.push_back(']');
  return out;
}

std::string RunCreatedBy(const std::vector<std::string>& args,
                         const std::vector<std::pair<std::string, std::string>>& build_args) {
  std::vector<std::string> parts;
  if (!build_args.empty()) {
    // BuildKit keeps the last value of a repeated ARG at its first position.
    std::vector<std::pair<std::string, std::string>> uniq;
    for (const auto& [k, v] : build_args) {
      bool found = false;
      for (auto& u : uniq) {
        if (u.first == k) {
          u.second = v;
          found = true;
        }
      }
      if (!found) uniq.emplace_back(k, v);
    }
    parts.push_back(absl::StrCat("|", uniq.size()));
    for (const auto& [k, v] : uniq) parts.push_back(absl::StrCat(k, "=", v));
  }
  parts.insert(parts.end(), args.begin(), args.end());
  return absl::StrCat("RUN ", absl::StrJoin(parts, " "), " # buildkit");
}

absl::StatusOr<farm::v1::Layer> PutEmptyLayer(cache::BlobStore& cas, oci::Compression compression) {
  const std::string tar(1024, '\0');  // two zero blocks: the end of an archive of nothing
  std::string stored;
  if (compression == oci::Compression::kNone) {
    stored = tar;
  } else {
    common::FunctionSink append([&stored](absl::string_view chunk) {
      stored.append(chunk.data(), chunk.size());
      return absl::OkStatus();
    });
    oci::CompressionOptions o;
    o.compression = compression;
    o.threads = 1;
    ASSIGN_OR_RETURN(std::unique_ptr<oci::Compressor> c, oci::Compressor::Create(o, &append));
    RETURN_IF_ERROR(c->Write(tar));
    RETURN_IF_ERROR(c->Finish());
  }
  ASSIGN_OR_RETURN(common::Digest digest, cas.Put(stored));
  farm::v1::Layer l;
  l.set_digest(digest.OciString());
  l.set_size(digest.size_bytes);
  l.set_diff_id(common::DigestOf(tar).OciString());
  l.set_uncompressed_size(static_cast<int64_t>(tar.size()));
  l.set_media_type(oci::LayerMediaType(compression, /*docker=*/false));
  return l;
}

absl::StatusOr<AssembledImage> Assemble(cache::BlobStore& cas, const AssembleRequest& req,
                                        absl::Time now) {
  const bool docker = req.format == ManifestFormat::kDocker;
  AssembledImage out;
  oci::ImageConfig& cfg = out.image_config;
  cfg = req.config;
  cfg.diff_ids.clear();
  cfg.history.clear();
  int64_t created_unix = 0;
  if (req.source_date_epoch) {
    created_unix = *req.source_date_epoch;
  } else {
    for (const HistoryStep& s : req.steps) created_unix = std::max(created_unix, s.created_unix);
    if (created_unix <= 0) created_unix = absl::ToUnixSeconds(now);
  }
  cfg.created = oci::FormatCreated(created_unix);

  if (req.base != nullptr) {
    const ResolvedImage& base = *req.base;
    if (base.layers.size() != base.config.diff_ids.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("base image ", base.reference, ": ", base.layers.size(),
                       " layers but its config lists ", base.config.diff_ids.size(), " diff_ids"));
    }
    for (size_t i = 0; i < base.layers.size(); ++i) {
      const farm::v1::Layer& l = base.layers[i];
      RETURN_IF_ERROR(ValidateLayer(l, absl::StrCat("base image ", base.reference)));
      if (l.diff_id() != base.config.diff_ids[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("base image ", base.reference, ": layer ", i, " has diff_id ", l.diff_id(),
                         " but its config says ", base.config.diff_ids[i]));
      }
      out.layers.push_back(l);
    }
    cfg.history = base.config.history;
  }
  std::map<oci::Compression, farm::v1::Layer> empty_layers;
  for (size_t i = 0; i < req.steps.size(); ++i) {
    const HistoryStep& step = req.steps[i];
    std::optional<farm::v1::Layer> layer = step.layer;
    if (!layer && step.empty_layer) {
      auto it = empty_layers.find(*step.empty_layer);
      if (it == empty_layers.end()) {
        ASSIGN_OR_RETURN(farm::v1::Layer empty, PutEmptyLayer(cas, *step.empty_layer));
        it = empty_layers.emplace(*step.empty_layer, std::move(empty)).first;
      }
      layer = it->second;
    }
    oci::HistoryEntry h;
    h.created = !req.source_date_epoch && step.created_unix > 0
                    ? oci::FormatCreated(step.created_unix)
                    : cfg.created;
    h.created_by = step.created_by;
    h.comment = step.comment;
    h.empty_layer = !layer.has_value();
    cfg.history.push_back(std::move(h));
    if (layer) {
      RETURN_IF_ERROR(
          ValidateLayer(*layer, absl::StrCat("step ", i + 1, " (", step.created_by, ")")));
      out.layers.push_back(*layer);
    }
  }
  for (farm::v1::Layer& l : out.layers) {
    if (docker && oci::LayerCompression(l.media_type()).value() == oci::Compression::kZstd) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", l.digest(),
                       " is zstd-compressed, which the Docker v2 schema 2 manifest "
                       "format cannot describe; use the OCI format (the default)"));
    }
    l.set_media_type(oci::ConvertLayerMediaType(l.media_type(), docker));
    cfg.diff_ids.push_back(l.diff_id());
  }

  // Every layer must be in the CAS before a manifest names it.
  std::vector<common::Digest> digests;
  for (const farm::v1::Layer& l : out.layers) {
    ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(l.digest(), l.size()));
    digests.push_back(std::move(d));
  }
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas.FindMissing(digests));
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "layer ", missing[0].OciString(), " (", missing[0].size_bytes, " bytes) is not in the CAS",
        missing.size() > 1 ? absl::StrCat(" (and ", missing.size() - 1, " more)") : ""));
  }

  std::string config_json = cfg.ToJson();
  ASSIGN_OR_RETURN(common::Digest config_digest, cas.Put(config_json));
  out.config.media_type = docker ? oci::kDockerConfig : oci::kOciConfig;
  out.config.digest = config_digest.OciString();
  out.config.size = config_digest.size_bytes;

  oci::Manifest m;
  m.media_type = docker ? oci::kDockerManifest : oci::kOciManifest;
  m.config = out.config;
  for (const farm::v1::Layer& l : out.layers) m.layers.push_back(LayerDescriptor(l));
  if (!docker) m.annotations = req.annotations;
  std::string manifest_json = m.ToJson();
  ASSIGN_OR_RETURN(common::Digest manifest_digest, cas.Put(manifest_json));
  out.manifest.media_type = m.media_type;
  out.manifest.digest = manifest_digest.OciString();
  out.manifest.size = manifest_digest.size_bytes;
  oci::Platform p;
  p.os = cfg.os;
  p.architecture = cfg.architecture;
  p.variant = cfg.variant;
  p.os_version = cfg.os_version;
  out.manifest.platform = p;
  return out;
}

absl::StatusOr<oci::Descriptor> AssembleIndex(
    cache::BlobStore& cas, absl::Span<const AssembledImage> images, ManifestFormat format,
    const std::map<std::string, std::string>& annotations) {
  if (images.empty()) return absl::InvalidArgumentError("an index needs at least one image");
  const bool docker = format == ManifestFormat::kDocker;
  oci::Index idx;
  idx.media_type = docker ? oci::kDockerManifestList : oci::kOciIndex;
  std::set<std::string> platforms;
  for (const AssembledImage& img : images) {
    if (img.manifest.media_type != (docker ? oci::kDockerManifest : oci::kOciManifest)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", img.manifest.digest, " is a ", img.manifest.media_type, ", not a ",
          docker ? oci::kDockerManifest : oci::kOciManifest, " as the index format requires"));
    }
    if (!img.manifest.platform) {
      return absl::InvalidArgumentError(
          absl::StrCat("image ", img.manifest.digest, " has no platform"));
    }
    if (!platforms.insert(img.manifest.platform->String()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("two images for platform ", img.manifest.platform->String()));
    }
    oci::Descriptor d = img.manifest;
    d.annotations.clear();
    idx.manifests.push_back(std::move(d));
  }
  if (!docker) idx.annotations = annotations;
  std::string json = idx.ToJson();
  ASSIGN_OR_RETURN(common::Digest digest, cas.Put(json));
  oci::Descriptor out;
  out.media_type = idx.media_type;
  out.digest = digest.OciString();
  out.size = digest.size_bytes;
  return out;
}

}  // namespace farm::scheduler::image
