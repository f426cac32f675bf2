#include "cli/build_outputs.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "nlohmann/json.hpp"
#include "oci/manifest.h"
#include "scheduler/image/archive.h"
#include "scheduler/image/export_layers.h"
#include "worker/layerstore/stack_view.h"

namespace farm::cli {

absl::StatusOr<OutputSpec> ParseOutputSpec(const std::string& text) {
  OutputSpec spec;
  if (text.find('=') == std::string::npos) {
    if (text.empty()) return absl::InvalidArgumentError("--output: empty value");
    spec.type = "local";
    spec.dest = text;
    return spec;
  }
  for (absl::string_view field : absl::StrSplit(text, ',')) {
    size_t eq = field.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--output: \"", field, "\" is not a key=value pair"));
    }
    std::string key(field.substr(0, eq));
    std::string value(field.substr(eq + 1));
    if (key == "type") {
      spec.type = value;
    } else if (key == "dest") {
      spec.dest = value;
    } else if (key == "tar") {
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError("--output: tar= must be true or false");
      }
      spec.tar = value == "true";
    } else if (key == "name") {
      spec.name = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--output: unknown key \"", key, "\" (want type, dest, tar or name)"));
    }
  }
  if (spec.type != "oci" && spec.type != "docker" && spec.type != "local" && spec.type != "image") {
    return absl::InvalidArgumentError(absl::StrCat("--output: unsupported type \"", spec.type,
                                                   "\" (want oci, docker, local or image)"));
  }
  if (spec.type != "image" && spec.dest.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--output type=", spec.type, " needs dest="));
  }
  if (spec.type == "local" && spec.dest == "-") {
    return absl::InvalidArgumentError("--output type=local needs a directory, not -");
  }
  return spec;
}

namespace {

absl::Status CopyFileData(const std::string& from, const std::string& to, mode_t mode) {
  int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", from));
  int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
  if (out < 0) {
    int e = errno;
    close(in);
    return common::ErrnoToStatus(e, absl::StrCat("create ", to));
  }
  std::vector<char> buf(1 << 20);
  absl::Status s;
  while (true) {
    ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      s = common::ErrnoToStatus(errno, absl::StrCat("read ", from));
      break;
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        s = common::ErrnoToStatus(errno, absl::StrCat("write ", to));
        break;
      }
      off += w;
    }
    if (!s.ok()) break;
  }
  close(in);
  if (close(out) != 0 && s.ok()) s = common::ErrnoToStatus(errno, absl::StrCat("close ", to));
  return s;
}

class RootfsExporter {
 public:
  RootfsExporter(const worker::layerstore::StackView& view, std::string dest)
      : view_(view), dest_(std::move(dest)) {}

  absl::Status Run() { return Dir(""); }

 private:
  absl::Status Dir(const std::string& rel) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, view_.ReadDir(rel));
    for (const std::string& name : names) {
      std::string child = rel.empty() ? name : absl::StrCat(rel, "/", name);
      ASSIGN_OR_RETURN(std::optional<worker::layerstore::StackView::Found> f, view_.Lookup(child));
      if (!f) continue;
      RETURN_IF_ERROR(Entry(child, *f));
    }
    // Directory metadata last, so creating the children does not change its mtime.
    std::string target = rel.empty() ? dest_ : common::JoinPath(dest_, rel);
    if (!rel.empty()) {
      ASSIGN_OR_RETURN(std::optional<worker::layerstore::StackView::Found> self, view_.Lookup(rel));
      if (self) RETURN_IF_ERROR(Meta(target, self->st, false));
    }
    return absl::OkStatus();
  }

  absl::Status Entry(const std::string& rel, const worker::layerstore::StackView::Found& f) {
    std::string target = common::JoinPath(dest_, rel);
    const struct stat& st = f.st;
    if (S_ISDIR(st.st_mode)) {
      if (mkdir(target.c_str(), 0700) != 0) {
        return common::ErrnoToStatus(errno, absl::StrCat("mkdir ", target));
      }
      return Dir(rel);
    }
    if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto it = links_.find(key);
      if (it != links_.end()) {
        if (link(it->second.c_str(), target.c_str()) != 0) {
          return common::ErrnoToStatus(errno, absl::StrCat("link ", target));
        }
        return absl::OkStatus();
      }
      links_[key] = target;
    }
    if (S_ISREG(st.st_mode)) {
      RETURN_IF_ERROR(CopyFileData(f.host_path, target, st.st_mode));
    } else if (S_ISLNK(st.st_mode)) {
      ASSIGN_OR_RETURN(std::string to, view_.Readlink(rel));
      if (symlink(to.c_str(), target.c_str()) != 0) {
        return common::ErrnoToStatus(errno, absl::StrCat("symlink ", target));
      }
      return Meta(target, st, true);
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
      if (mknod(target.c_str(), st.st_mode, st.st_rdev) != 0) {
        return common::ErrnoToStatus(errno, absl::StrCat("mknod ", target));
      }
    } else {
      return absl::OkStatus();  // sockets are not part of an image
    }
    return Meta(target, st, false);
  }

  static absl::Status Meta(const std::string& path, const struct stat& st, bool is_link) {
    if (lchown(path.c_str(), st.st_uid, st.st_gid) != 0 && errno != EPERM) {
      return common::ErrnoToStatus(errno, absl::StrCat("chown ", path));
    }
    if (!is_link && chmod(path.c_str(), st.st_mode & 07777) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("chmod ", path));
    }
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("utimes ", path));
    }
    return absl::OkStatus();
  }

  const worker::layerstore::StackView& view_;
  const std::string dest_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace

absl::Status ExportRootfs(worker::layerstore::LayerStore& store,
                          const std::vector<farm::v1::Layer>& layers, const std::string& dest) {
  std::vector<worker::layerstore::LayerDesc> descs;
  for (const farm::v1::Layer& l : layers) {
    ASSIGN_OR_RETURN(worker::layerstore::LayerDesc d,
                     worker::layerstore::LayerDesc::FromOci(l.digest(), l.size(), l.diff_id(),
                                                            l.uncompressed_size()));
    descs.push_back(d);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<worker::layerstore::Stack> stack, store.AcquireStack(descs));
  struct stat st;
  if (stat(dest.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(dest, " exists and is not a directory"));
    }
  } else {
    RETURN_IF_ERROR(common::MakeDirs(dest, 0755));
  }
  worker::layerstore::StackView view(stack->lower_dirs());
  return common::Annotate(RootfsExporter(view, dest).Run(),
                          absl::StrCat("exporting the root filesystem to ", dest));
}

absl::Status ExportImage(const OutputSpec& spec, cache::BlobStore& cas,
                         const scheduler::image::ImageRecord& record,
                         const std::vector<oci::Reference>& tags,
                         const std::vector<farm::v1::Layer>& layers,
                         worker::layerstore::LayerStore* layer_store) {
  if (spec.type == "image") return absl::OkStatus();
  if (spec.type == "local") {
    if (layer_store == nullptr) return absl::InternalError("no layer store for type=local");
    if (!record.is_index()) return ExportRootfs(*layer_store, layers, spec.dest);
    // Several platforms: one directory each, named as buildx does (linux_arm64).
    for (const scheduler::image::StoredManifest& m : record.manifests) {
      std::string sub = m.platform;
      std::replace(sub.begin(), sub.end(), '/', '_');
      RETURN_IF_ERROR(ExportRootfs(*layer_store, m.layers, common::JoinPath(spec.dest, sub)));
    }
    return absl::OkStatus();
  }
  if (spec.type == "docker" && record.is_index()) {
    // As buildx: a docker archive holds one image per name, not an index.
    return absl::InvalidArgumentError(
        "type=docker: a multi-platform image cannot be exported as a docker archive (docker "
        "exporter does not support manifest lists); use type=oci, or build one --platform");
  }
  std::vector<oci::Reference> names = tags;
  if (!spec.name.empty()) {
    names.clear();
    for (absl::string_view n : absl::StrSplit(spec.name, ',')) {
      ASSIGN_OR_RETURN(oci::Reference r, oci::Reference::ParseWithDefaultTag(n));
      names.push_back(r);
    }
  }
  std::unique_ptr<scheduler::image::LayoutWriter> writer;
  int fd = -1;
  if (spec.type == "oci" && !spec.tar) {
    ASSIGN_OR_RETURN(writer, scheduler::image::LayoutWriter::Directory(spec.dest));
  } else {
    if (spec.dest == "-") {
      fd = 1;
    } else {
      fd = open(spec.dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", spec.dest));
    }
    ASSIGN_OR_RETURN(writer, scheduler::image::LayoutWriter::Tar(fd));
  }
  scheduler::image::ImageRecord exported = record;
  if (spec.type == "oci") {
    // Layers kept uncompressed leave gzip-compressed, as a registry push would have them.
    ASSIGN_OR_RETURN(exported, scheduler::image::CompressLayersForExport(
                                   cas, record, scheduler::image::LayerExportOptions()));
  }
  absl::Status s = spec.type == "oci"
                       ? scheduler::image::SaveOciLayout(cas, {{exported, names}}, *writer)
                       : scheduler::image::SaveDockerArchive(cas, {{record, names}},
                                                             oci::Platform::Host(), *writer);
  if (s.ok()) s = writer->Close();
  if (fd > 1 && close(fd) != 0 && s.ok()) {
    s = common::ErrnoToStatus(errno, absl::StrCat("close ", spec.dest));
  }
  return common::Annotate(s, absl::StrCat("--output type=", spec.type, ",dest=", spec.dest));
}

std::string BuildMetadataJson(const std::string& config_digest, const std::string& manifest_digest,
                              const std::string& manifest_media_type, int64_t manifest_size,
                              const std::vector<std::string>& names, const std::string& build_id) {
  nlohmann::json j = {
      {"buildx.build.ref", build_id},
      {"containerimage.descriptor",
       {{"mediaType", manifest_media_type}, {"digest", manifest_digest}, {"size", manifest_size}}},
      {"containerimage.digest", manifest_digest},
  };
  // (an index has no config: buildx leaves the key out)
  if (!oci::IsIndexMediaType(manifest_media_type))
    j["containerimage.config.digest"] = config_digest;
  if (!names.empty()) j["image.name"] = absl::StrJoin(names, ",");
  return j.dump(2) + "\n";
}

absl::StatusOr<int64_t> ExtractContextTar(int fd, const std::string& dest) {
  RETURN_IF_ERROR(common::MakeDirs(dest, 0700));
  struct archive* in = archive_read_new();
  archive_read_support_filter_all(in);
  archive_read_support_format_tar(in);
  archive_read_support_format_gnutar(in);
  struct archive* out = archive_write_disk_new();
  archive_write_disk_set_options(out, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                          ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                          ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  auto cleanup = [&]() {
    archive_read_free(in);
    archive_write_free(out);
  };
  if (archive_read_open_fd(in, fd, 1 << 16) != ARCHIVE_OK) {
    std::string msg = archive_error_string(in) ? archive_error_string(in) : "unreadable";
    cleanup();
    return absl::InvalidArgumentError(absl::StrCat("build context on stdin: ", msg));
  }
  auto safe = [](const char* p) -> absl::StatusOr<std::string> {
    std::string path = p == nullptr ? "" : p;
    if (path.empty() || path[0] == '/') {
      return absl::InvalidArgumentError(absl::StrCat("entry \"", path, "\" is absolute"));
    }
    std::string clean = common::CleanPath(path);
    if (clean == ".." || absl::StartsWith(clean, "../")) {
      return absl::InvalidArgumentError(absl::StrCat("entry \"", path, "\" escapes the context"));
    }
    return clean;
  };
  int64_t n = 0;
  struct archive_entry* e;
  while (true) {
    int r = archive_read_next_header(in, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      std::string msg = archive_error_string(in) ? archive_error_string(in) : "bad entry";
      cleanup();
      return absl::InvalidArgumentError(absl::StrCat("build context on stdin: ", msg));
    }
    absl::StatusOr<std::string> path = safe(archive_entry_pathname(e));
    if (!path.ok()) {
      cleanup();
      return common::Annotate(path.status(), "build context on stdin");
    }
    if (*path == ".") continue;
    archive_entry_set_pathname(e, common::JoinPath(dest, *path).c_str());
    if (archive_entry_hardlink(e) != nullptr) {
      absl::StatusOr<std::string> target = safe(archive_entry_hardlink(e));
      if (!target.ok()) {
        cleanup();
        return common::Annotate(target.status(), "build context on stdin (hard link)");
      }
      archive_entry_set_hardlink(e, common::JoinPath(dest, *target).c_str());
    }
    if (archive_write_header(out, e) < ARCHIVE_WARN) {
      std::string msg = archive_error_string(out) ? archive_error_string(out) : "write failed";
      cleanup();
      return absl::InvalidArgumentError(absl::StrCat("build context on stdin: ", msg));
    }
    const void* buf;
    size_t size;
    la_int64_t offset;
    while ((r = archive_read_data_block(in, &buf, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out, buf, size, offset) < ARCHIVE_WARN) break;
    }
    if (r < ARCHIVE_WARN || archive_write_finish_entry(out) < ARCHIVE_WARN) {
      std::string msg = archive_error_string(in) ? archive_error_string(in) : "short read";
      cleanup();
      return absl::InvalidArgumentError(absl::StrCat("build context on stdin: ", msg));
    }
    ++n;
  }
  cleanup();
  return n;
}

}  // namespace farm::cli
