#include "scheduler/plan/keys.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "nlohmann/json.hpp"

namespace farm::scheduler::plan {

std::string KeyOf(const std::vector<std::pair<std::string, std::string>>& preimage) {
  common::Sha256 h;
  for (const auto& [k, v] : preimage) {
    h.Update(k);
    h.Update(": ");
    h.Update(v);
    h.Update("\n");
  }
  return h.Finish().hash;
}

std::string NormalizeShellWhitespace(absl::string_view cmd) {
  std::string out;
  char quote = 0;
  bool pending_space = false;
  for (size_t i = 0; i < cmd.size(); ++i) {
    char c = cmd[i];
    if (quote == 0 && (c == ' ' || c == '\t')) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) {
      out.push_back(' ');
      pending_space = false;
    }
    out.push_back(c);
    if (quote == '\'') {
      if (c == '\'') quote = 0;
    } else if (c == '\\' && i + 1 < cmd.size()) {
      out.push_back(cmd[++i]);
    } else if (quote == '"') {
      if (c == '"') quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    }
  }
  return out;
}

std::string JsonStringArray(const std::vector<std::string>& values) {
  return nlohmann::json(values).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string OctalMode(uint32_t mode) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%04o", mode);
  return buf;
}

std::string LayerOptionsLine(const farm::v1::LayerOptions& o) {
  return absl::StrCat("compression=", farm::v1::LayerOptions::Compression_Name(o.compression()),
                      " level=", o.level(), " source_date_epoch=",
                      o.has_source_date_epoch() ? absl::StrCat(o.source_date_epoch()) : "unset",
                      " normalize_permissions=", o.normalize_permissions() ? "true" : "false");
}

std::string ScratchChain(absl::string_view platform) {
  return KeyOf(
      {{"version", kKeyVersion}, {"from", "scratch"}, {"platform", std::string(platform)}});
}

std::string ImageChain(absl::string_view platform, const std::vector<std::string>& diff_ids) {
  std::vector<std::pair<std::string, std::string>> pre = {
      {"version", kKeyVersion}, {"from", "image"}, {"platform", std::string(platform)}};
  for (const std::string& d : diff_ids) pre.push_back({"diff_id", d});
  return KeyOf(pre);
}

std::string UnresolvedImageChain(absl::string_view reference, absl::string_view platform) {
  return KeyOf({{"version", kKeyVersion},
                {"unresolved-image", std::string(reference)},
                {"platform", std::string(platform)}});
}

std::string LinkChain(absl::string_view parent_chain, absl::string_view key) {
  return KeyOf({{"version", kKeyVersion},
                {"parent", std::string(parent_chain)},
                {"link", std::string(key)}});
}

std::string ContextEntryLine(absl::string_view rel, const worker::copy::FileInfo& fi,
                             bool exact_modes) {
  std::string line = absl::StrCat(rel, "\t");
  switch (fi.type) {
    case worker::copy::FileType::kDirectory:
      absl::StrAppend(&line, "dir\t", exact_modes ? OctalMode(fi.mode) : "");
      break;
    case worker::copy::FileType::kSymlink:
      absl::StrAppend(&line, "symlink\t", fi.link_target);
      break;
    case worker::copy::FileType::kRegular:
      absl::StrAppend(&line, "file\t",
                      exact_modes ? OctalMode(fi.mode) : (fi.executable() ? "x" : "-"), "\t",
                      fi.digest ? absl::StrCat(fi.digest->hash, "/", fi.digest->size_bytes)
                                : std::string("unhashed"));
      if (!fi.hardlink_group.empty()) absl::StrAppend(&line, "\tlinked ", fi.hardlink_group);
      break;
    default:
      absl::StrAppend(&line, "other");
  }
  return line;
}

}  // namespace farm::scheduler::plan
