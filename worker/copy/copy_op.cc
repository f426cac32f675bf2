#include "worker/copy/copy_op.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/patternmatcher.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/copy/layer_tree.h"
#include "worker/copy/materialize.h"
#include "worker/copy/select.h"
#include "worker/user/user_db.h"

namespace farm::worker::copy {

bool IsTarArchive(const std::string& path) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  bool ok = false;
  if (archive_read_open_filename(a, path.c_str(), 1 << 16) == ARCHIVE_OK) {
    struct archive_entry* e = nullptr;
    ok = archive_read_next_header(a, &e) == ARCHIVE_OK;
  }
  archive_read_free(a);
  return ok;
}

namespace {

constexpr int64_t kMaxUserFile = 16 << 20;

std::string Parent(const std::string& rel) {
  size_t s = rel.rfind('/');
  return s == std::string::npos ? "" : rel.substr(0, s);
}
std::string Base(const std::string& rel) {
  size_t s = rel.rfind('/');
  return s == std::string::npos ? rel : rel.substr(s + 1);
}
std::string Join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "/" + b;
}

bool IsUrl(absl::string_view s) {
  return absl::StartsWith(s, "http://") || absl::StartsWith(s, "https://");
}
bool IsGitUrl(absl::string_view s) {
  return absl::StartsWith(s, "git://") || absl::StartsWith(s, "git@") ||
         (IsUrl(s) && absl::EndsWith(s.substr(0, s.find('#')), ".git"));
}

absl::StatusOr<uint32_t> ParseChmod(const std::string& s) {
  if (s.empty() || s.size() > 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chmod=", s, ": want an octal mode such as 0755"));
  }
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '7') {
      return absl::InvalidArgumentError(absl::StrCat(
          "--chmod=", s, ": only octal modes are supported (symbolic modes such as u+x are not)"));
    }
    v = v * 8 + static_cast<uint32_t>(c - '0');
  }
  if (v > 07777)
    return absl::InvalidArgumentError(absl::StrCat("--chmod=", s, ": mode out of range"));
  return v;
}

// Removes whatever is at `host`; says whether there was something.
absl::StatusOr<bool> RemoveEntry(const std::string& host) {
  struct stat st;
  if (lstat(host.c_str(), &st) != 0) return false;
  RETURN_IF_ERROR(common::RemoveAll(host));
  return true;
}

class Copier {
 public:
  explicit Copier(const CopyInputs& in) : in_(in), op_(*in.op), tree_(in.out_dir, Image()) {}

  absl::Status Run() {
    // The caller names the step: these messages say only what is wrong with it.
    if (op_.dest().empty()) return absl::InvalidArgumentError("no destination");
    if (op_.srcs_size() == 0) return absl::InvalidArgumentError("no source");
    const std::string& dest = op_.dest();
    dest_dir_syntax_ = absl::EndsWith(dest, "/") || dest == "." || absl::EndsWith(dest, "/.");
    if (op_.srcs_size() > 1 && !dest_dir_syntax_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "When using ", op_.add() ? "ADD" : "COPY",
          " with more than one source file, the destination must be a directory and end with a /"
          " (destination \"",
          dest, "\")"));
    }
    std::string workdir = in_.env->workdir().empty() ? "/" : in_.env->workdir();
    std::string abs = absl::StartsWith(dest, "/") ? dest : absl::StrCat(workdir, "/", dest);
    ctx_mtime_ = in_.output->has_source_date_epoch() ? in_.output->source_date_epoch() : 0;
    if (!op_.chmod().empty()) {
      ASSIGN_OR_RETURN(chmod_, ParseChmod(op_.chmod()));
    }
    if (!op_.chown().empty()) {
      ASSIGN_OR_RETURN(user::Owner o, user::ResolveChown(op_.chown(), ImageFile("/etc/passwd"),
                                                         ImageFile("/etc/group")));
      chown_ = o;
    }
    created_ = Attrs{0755, chown_ ? chown_->uid : 0u, chown_ ? chown_->gid : 0u, ctx_mtime_};
    if (!op_.excludes().empty()) {
      std::vector<std::string> patterns(op_.excludes().begin(), op_.excludes().end());
      auto m = common::PatternMatcher::Create(patterns);
      if (!m.ok()) return common::Annotate(m.status(), "--exclude");
      excludes_ = std::make_unique<common::PatternMatcher>(std::move(*m));
    }

    // The destination, resolved in the image.
    ASSIGN_OR_RETURN(layerstore::StackView::Resolved d, Merged().Resolve(abs, true));
    dest_ = d.path;
    dest_exists_ = d.exists;
    dest_is_dir_ = d.exists && S_ISDIR(d.st.st_mode);

    std::map<std::string, const farm::v1::InlineFile*> inline_files;
    for (const auto& f : op_.inline_files()) inline_files[f.name()] = &f;
    for (const std::string& src : op_.srcs()) {
      if (in_.cancel != nullptr && in_.cancel->HasBeenNotified()) {
        return absl::CancelledError("COPY cancelled");
      }
      resolved_dirs_.clear();  // earlier sources may have changed the tree
      absl::string_view heredoc = src;
      absl::Status s;
      if (absl::ConsumePrefix(&heredoc, "<<")) {
        auto it = inline_files.find(std::string(heredoc));
        s = it != inline_files.end()
                ? CopyInline(*it->second)
                : absl::InvalidArgumentError("no heredoc of that name in the request");
      } else if (IsGitUrl(src)) {
        s = absl::UnimplementedError("ADD of a git repository is not supported");
      } else if (IsUrl(src)) {
        s = op_.add() ? AddUrl(src)
                      : absl::InvalidArgumentError("COPY cannot download URLs; use ADD");
      } else {
        s = CopyLocal(src);
      }
      RETURN_IF_ERROR(common::Annotate(s, absl::StrCat("source \"", src, "\"")));
    }
    return tree_.Finish();
  }

 private:
  const layerstore::StackView* Image() const { return in_.op->link() ? nullptr : in_.image; }

  // The image with what this COPY wrote so far on top: where paths resolve.
  layerstore::StackView Merged() const {
    std::vector<std::string> layers = {in_.out_dir};
    if (Image() != nullptr) {
      for (const std::string& l : Image()->layers()) layers.push_back(l);
    }
    return layerstore::StackView(std::move(layers));
  }

  std::optional<std::string> ImageFile(const char* path) const {
    if (in_.image == nullptr) return std::nullopt;  // (--link still resolves names in the image)
    auto r = in_.image->Resolve(path, true);
    if (!r.ok() || !r->exists || !S_ISREG(r->st.st_mode)) return std::nullopt;
    auto text = in_.image->ReadFile(r->path, kMaxUserFile);
    if (!text.ok()) return std::nullopt;
    return *text;
  }

  // Resolves directory `rel` (as written below the destination) through the symlinks of the
  // image and of what was written, and makes it exist in the layer. Returns its real path.
  absl::StatusOr<std::string> Dir(const std::string& rel) {
    auto cached = resolved_dirs_.find(rel);
    if (cached != resolved_dirs_.end()) return cached->second;
    ASSIGN_OR_RETURN(layerstore::StackView::Resolved r, Merged().Resolve(rel, true));
    if (r.exists && !S_ISDIR(r.st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot copy into /", r.path, ": not a directory"));
    }
    RETURN_IF_ERROR(tree_.EnsureDir(r.path, created_));
    resolved_dirs_[rel] = r.path;
    return r.path;
  }

  // Where a non-directory entry named `rel` goes: its parent resolved, any earlier entry of
  // this COPY there removed unless `remove` is false (the caller's create fails on it and the
  // caller removes it then). Returns the real relative path.
  absl::StatusOr<std::string> Target(const std::string& rel, bool remove = true) {
    ASSIGN_OR_RETURN(std::string parent, Dir(Parent(rel)));
    std::string target = Join(parent, Base(rel));
    if (remove) RETURN_IF_ERROR(RemoveEntry(tree_.HostPath(target)).status());
    return target;
  }

  Attrs AttrsFor(const FileInfo& info, bool from_context) const {
    Attrs a;
    a.mode = info.mode & 07777;
    if (chmod_.has_value() && !info.is_symlink()) a.mode = *chmod_;
    if (chown_.has_value()) {
      a.uid = chown_->uid;
      a.gid = chown_->gid;
    } else if (!from_context) {
      a.uid = info.uid;
      a.gid = info.gid;
    }
    a.mtime = from_context ? ctx_mtime_ : info.mtime_sec;
    return a;
  }

  absl::Status WriteBytes(const std::string& target, absl::string_view data) {
    std::string host = tree_.HostPath(target);
    int fd = open(host.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return common::ErrnoToStatus(errno, "create " + host);
    bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    int e = errno;
    close(fd);
    if (!ok) return common::ErrnoToStatus(e, "write " + host);
    return absl::OkStatus();
  }

  // The file pool's key for a context file written at `target` with `a`, when the pool may
  // hold it: the content is the CAS's (verified when stored) and known by digest, and the file
  // has no other name in the source. Never for stage files (their metadata varies) or host paths
  // (a host file may have changed since it was hashed).
  std::optional<layerstore::FilePool::Key> PoolKey(const SourceTree& tree,
                                                   const std::string& src_path,
                                                   const FileInfo& info, const std::string& target,
                                                   const Attrs& a, bool from_context) const {
    if (in_.file_pool == nullptr || !from_context || !info.digest.has_value() ||
        !info.hardlink_group.empty() || info.digest->size_bytes != info.size ||
        !tree.HostPath(src_path).empty()) {
      return std::nullopt;
    }
    return layerstore::FilePool::Key{target, *info.digest, a.mode, a.uid, a.gid, a.mtime};
  }

  // Writes one entry of a source tree at `rel` (as written below the destination).
  absl::Status WriteEntry(const SourceTree& tree, const std::string& src_path, const FileInfo& info,
                          const std::string& rel, bool from_context) {
    Attrs a = AttrsFor(info, from_context);
    switch (info.type) {
      case FileType::kDirectory: {
        ASSIGN_OR_RETURN(std::string dir, Dir(rel));
        RETURN_IF_ERROR(LayerTree::Apply(tree_.HostPath(dir), a, false));
        tree_.AddDir(dir, a);
        return absl::OkStatus();
      }
      case FileType::kRegular: {
        // The common case, a pooled file linked at a new name, costs no lookup of the name:
        // link() fails on an earlier entry, which is removed then.
        ASSIGN_OR_RETURN(std::string target, Target(rel, /*remove=*/false));
        std::optional<layerstore::FilePool::Key> pooled =
            PoolKey(tree, src_path, info, target, a, from_context);
        if (pooled.has_value() && in_.file_pool->LinkInto(*pooled, tree_.HostPath(target))) {
          return absl::OkStatus();
        }
        ASSIGN_OR_RETURN(bool replaced, RemoveEntry(tree_.HostPath(target)));
        if (replaced && pooled.has_value() &&
            in_.file_pool->LinkInto(*pooled, tree_.HostPath(target))) {
          return absl::OkStatus();
        }
        if (!info.hardlink_group.empty()) {
          // Another name of a file this COPY already wrote: a hard link, as in the source.
          auto first = hardlinks_.find(info.hardlink_group);
          if (first != hardlinks_.end()) {
            if (link(tree_.HostPath(first->second).c_str(), tree_.HostPath(target).c_str()) != 0) {
              return common::ErrnoToStatus(errno, "link " + tree_.HostPath(target));
            }
            return absl::OkStatus();
          }
          hardlinks_[info.hardlink_group] = target;
        }
        RETURN_IF_ERROR(CopyFileContent(tree, src_path, tree_.HostPath(target)));
        RETURN_IF_ERROR(LayerTree::Apply(tree_.HostPath(target), a, false));
        if (pooled.has_value()) in_.file_pool->Add(*pooled, tree_.HostPath(target));
        return absl::OkStatus();
      }
      case FileType::kSymlink: {
        ASSIGN_OR_RETURN(std::string target, Target(rel));
        std::string host = tree_.HostPath(target);
        if (symlink(info.link_target.c_str(), host.c_str()) != 0) {
          return common::ErrnoToStatus(errno, "symlink " + host);
        }
        return LayerTree::Apply(host, a, true);
      }
      case FileType::kOther: {
        // Devices and fifos from a stage (sockets cannot be copied).
        std::string host_src = tree.HostPath(src_path);
        struct stat st;
        if (host_src.empty() || lstat(host_src.c_str(), &st) != 0 || S_ISSOCK(st.st_mode)) {
          return absl::OkStatus();
        }
        ASSIGN_OR_RETURN(std::string target, Target(rel));
        std::string host = tree_.HostPath(target);
        if (mknod(host.c_str(), st.st_mode & S_IFMT, st.st_rdev) != 0) {
          return common::ErrnoToStatus(errno, "mknod " + host);
        }
        return LayerTree::Apply(host, a, false);
      }
    }
    return absl::OkStatus();
  }

  // A file source lands in the destination directory under `name`, or at the destination.
  std::string FileDest(const std::string& name, bool force_dir) const {
    if (dest_dir_syntax_ || dest_is_dir_ || force_dir) return Join(dest_, name);
    return dest_;
  }

  absl::Status CopyInline(const farm::v1::InlineFile& f) {
    FileInfo info;
    info.mode = f.mode() != 0 ? f.mode() : 0644;
    ASSIGN_OR_RETURN(std::string target, Target(FileDest(f.name(), false)));
    RETURN_IF_ERROR(WriteBytes(target, f.content()));
    return LayerTree::Apply(tree_.HostPath(target), AttrsFor(info, true), false);
  }

  absl::Status CopyLocal(const std::string& src) {
    if (in_.source == nullptr)
      return absl::InvalidArgumentError("no source tree for a local source");
    if (!op_.checksum().empty()) {
      return absl::InvalidArgumentError("--checksum is only supported for HTTP(S) sources");
    }
    SelectOptions sel;
    sel.parents = op_.parents();
    sel.excludes = excludes_.get();
    ASSIGN_OR_RETURN(std::vector<Match> matches, ResolveSources(*in_.source, {src}, sel));
    bool many = matches.size() > 1;
    bool context = in_.source_is_context;
    for (const Match& m : matches) {
      std::string kept;  // --parents: the path below the pivot
      if (op_.parents()) {
        absl::string_view p = m.path;
        if (!m.base.empty() && absl::StartsWith(p, m.base)) p.remove_prefix(m.base.size());
        while (absl::StartsWith(p, "/")) p.remove_prefix(1);
        kept = std::string(p);
      }
      if (m.info.is_dir()) {
        if (dest_exists_ && !dest_is_dir_ && kept.empty()) {
          return absl::FailedPreconditionError(
              absl::StrCat("cannot copy a directory to /", dest_, ": not a directory"));
        }
        std::string base = op_.parents() ? Join(dest_, kept) : dest_;
        RETURN_IF_ERROR(WalkMatch(
            *in_.source, m, excludes_.get(),
            [&](const std::string& rel, const FileInfo& info) -> absl::Status {
              if (rel.empty()) {
                // The directory itself: its contents go to `base`.
                ASSIGN_OR_RETURN(std::string d, Dir(base));
                if (op_.parents()) {
                  Attrs a = AttrsFor(info, context);
                  RETURN_IF_ERROR(LayerTree::Apply(tree_.HostPath(d), a, false));
                  tree_.AddDir(d, a);
                }
                return absl::OkStatus();
              }
              return WriteEntry(*in_.source, Join(m.resolved, rel), info, Join(base, rel), context);
            }));
        continue;
      }
      std::string name = Base(m.path.empty() ? m.resolved : m.path);
      std::string rel = op_.parents() ? Join(dest_, kept) : FileDest(name, many);
      if (op_.add() && !(op_.has_unpack() && !op_.unpack()) && m.info.type == FileType::kRegular) {
        // ADD of a local archive: extracted when it is a tar archive.
        std::string staged = HostFileFor(m);
        if (staged.empty()) {
          staged = absl::StrCat(in_.scratch_dir, "/archive-", staged_++);
          RETURN_IF_ERROR(CopyFileContent(*in_.source, m.resolved, staged));
        }
        if (IsTarArchive(staged)) {
          // (the destination is a directory then)
          RETURN_IF_ERROR(Extract(staged, dest_, m.path.empty() ? m.resolved : m.path));
          continue;
        }
      }
      RETURN_IF_ERROR(WriteEntry(*in_.source, m.resolved, m.info, rel, context));
    }
    return absl::OkStatus();
  }

  std::string HostFileFor(const Match& m) const { return in_.source->HostPath(m.resolved); }

  absl::Status AddUrl(const std::string& url) {
    if (!in_.fetch) return absl::FailedPreconditionError("no URL fetcher configured");
    std::string file = absl::StrCat(in_.scratch_dir, "/download-", staged_++);
    ASSIGN_OR_RETURN(Fetched f, in_.fetch(url, file, in_.cancel));
    if (!op_.checksum().empty()) {
      absl::string_view want = op_.checksum();
      if (!absl::ConsumePrefix(&want, "sha256:")) {
        return absl::InvalidArgumentError(
            absl::StrCat("--checksum=", op_.checksum(), ": only sha256:<hex> is supported"));
      }
      if (want != f.digest.hash) {
        return absl::InvalidArgumentError(absl::StrCat("checksum mismatch: --checksum says ",
                                                       op_.checksum(), ", the download is ",
                                                       f.digest.OciString()));
      }
    }
    if (op_.has_unpack() && op_.unpack() && IsTarArchive(file)) return Extract(file, dest_, url);
    if (f.filename.empty() && (dest_dir_syntax_ || dest_is_dir_)) {
      return absl::InvalidArgumentError(
          "cannot determine a file name for the download; give a file destination");
    }
    ASSIGN_OR_RETURN(std::string target, Target(FileDest(f.filename, false)));
    if (rename(file.c_str(), tree_.HostPath(target).c_str()) != 0) {
      return common::ErrnoToStatus(errno, "moving the download into the layer");
    }
    FileInfo info;
    info.mode = 0600;  // what Docker gives remote files
    Attrs a = AttrsFor(info, true);
    if (f.last_modified.has_value()) a.mtime = *f.last_modified;
    return LayerTree::Apply(tree_.HostPath(target), a, false);
  }

  // Extracts tar archive `path` into directory `dest` (relative, below the destination rules).
  // `source`: what the Dockerfile named (a context path or a URL), for errors.
  absl::Status Extract(const std::string& path, const std::string& dest,
                       const std::string& source) {
    // The bound counts what an entry declares, not what the compressed file holds: a sparse
    // entry (GNU or PAX) or a bomb's zeros become files of their full size, and the layer
    // made from them is read back and archived at that size.
    int64_t total = 0;
    auto count = [&](int64_t n, const std::string& entry) -> absl::Status {
      const int64_t max = in_.max_extract_bytes;
      if (max <= 0) return absl::OkStatus();
      if (n < 0 || n > max - total) {
        return absl::ResourceExhaustedError(
            absl::StrCat("ADD ", source, ": the archive expands to more than ",
                         common::HumanBinarySize(max), " (at entry \"", entry,
                         "\"), the limit per archive (extract-max-size; farm-worker "
                         "--extract-max-size, $FARM_HOME/sandbox.conf for farm build)"));
      }
      total += n;
      return absl::OkStatus();
    };
    struct archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    std::unique_ptr<struct archive, int (*)(struct archive*)> closer(a, archive_read_free);
    if (archive_read_open_filename(a, path.c_str(), 1 << 20) != ARCHIVE_OK) {
      return absl::InvalidArgumentError(absl::StrCat("reading archive: ", archive_error_string(a)));
    }
    ASSIGN_OR_RETURN(std::string base, Dir(dest));
    std::map<std::string, std::string> written;  // entry name -> real path (for hard links)
    while (true) {
      struct archive_entry* e = nullptr;
      int r = archive_read_next_header(a, &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        return absl::InvalidArgumentError(
            absl::StrCat("reading archive: ", archive_error_string(a)));
      }
      const char* raw = archive_entry_pathname(e);
      std::string name = raw != nullptr ? raw : "";
      RETURN_IF_ERROR(count(512, name));  // an entry costs an inode and a block, at least
      std::vector<std::string> parts;
      for (absl::string_view p : absl::StrSplit(name, '/', absl::SkipEmpty())) {
        if (p == ".") continue;
        if (p == "..") {
          if (parts.empty()) {
            return absl::InvalidArgumentError(
                absl::StrCat("archive entry \"", name, "\" escapes the destination"));
          }
          parts.pop_back();
          continue;
        }
        parts.emplace_back(p);
      }
      if (parts.empty()) continue;  // the archive's root
      std::string rel = Join(base, absl::StrJoin(parts, "/"));
      FileInfo info;
      info.mode = archive_entry_perm(e) & 07777;
      info.uid = static_cast<uint32_t>(archive_entry_uid(e));
      info.gid = static_cast<uint32_t>(archive_entry_gid(e));
      info.mtime_sec = archive_entry_mtime(e);
      Attrs attrs = AttrsFor(info, false);
      if (chmod_.has_value()) attrs.mode = info.mode;  // --chmod is not applied to archives
      const char* hardlink = archive_entry_hardlink(e);
      if (hardlink != nullptr) {
        auto it = written.find(absl::StrJoin(SplitClean(hardlink), "/"));
        if (it == written.end()) {
          return absl::InvalidArgumentError(absl::StrCat("archive entry \"", name,
                                                         "\": hard link to \"", hardlink,
                                                         "\", which is not an earlier entry"));
        }
        ASSIGN_OR_RETURN(std::string target, Target(rel));
        if (link(tree_.HostPath(it->second).c_str(), tree_.HostPath(target).c_str()) != 0) {
          return common::ErrnoToStatus(errno, "link " + target);
        }
        written[absl::StrJoin(parts, "/")] = target;
        continue;
      }
      mode_t type = archive_entry_filetype(e);
      if (type == AE_IFDIR) {
        ASSIGN_OR_RETURN(std::string d, Dir(rel));
        RETURN_IF_ERROR(LayerTree::Apply(tree_.HostPath(d), attrs, false));
        tree_.AddDir(d, attrs);
        continue;
      }
      ASSIGN_OR_RETURN(std::string target, Target(rel));
      std::string host = tree_.HostPath(target);
      if (type == AE_IFREG) {
        int64_t declared = archive_entry_size(e);
        RETURN_IF_ERROR(count(declared, name));
        int fd = open(host.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return common::ErrnoToStatus(errno, "create " + host);
        const void* buf;
        size_t size;
        la_int64_t offset;
        absl::Status s;
        while (true) {
          int rr = archive_read_data_block(a, &buf, &size, &offset);
          if (rr == ARCHIVE_EOF) break;
          if (rr != ARCHIVE_OK) {
            s = absl::InvalidArgumentError(
                absl::StrCat("reading archive: ", archive_error_string(a)));
            break;
          }
          if (int64_t end = offset + static_cast<int64_t>(size); end > declared) {
            // Data past the declared size (libarchive should not give any): counted too.
            s = count(end - declared, name);
            if (!s.ok()) break;
            declared = end;
          }
          if (pwrite(fd, buf, size, offset) != static_cast<ssize_t>(size)) {
            s = common::ErrnoToStatus(errno, "write " + host);
            break;
          }
        }
        if (s.ok() && ftruncate(fd, archive_entry_size(e)) != 0) {
          s = common::ErrnoToStatus(errno, "truncate " + host);
        }
        close(fd);
        RETURN_IF_ERROR(s);
        RETURN_IF_ERROR(LayerTree::Apply(host, attrs, false));
      } else if (type == AE_IFLNK) {
        const char* target_path = archive_entry_symlink(e);
        if (symlink(target_path != nullptr ? target_path : "", host.c_str()) != 0) {
          return common::ErrnoToStatus(errno, "symlink " + host);
        }
        RETURN_IF_ERROR(LayerTree::Apply(host, attrs, true));
      } else if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO) {
        if (mknod(host.c_str(), type, archive_entry_rdev(e)) != 0) {
          return common::ErrnoToStatus(errno, "mknod " + host);
        }
        RETURN_IF_ERROR(LayerTree::Apply(host, attrs, false));
      }
      written[absl::StrJoin(parts, "/")] = target;
    }
    return absl::OkStatus();
  }

  static std::vector<std::string> SplitClean(const char* p) { return layerstore::SplitClean(p); }

  const CopyInputs& in_;
  const farm::v1::CopyOp& op_;
  LayerTree tree_;
  bool dest_dir_syntax_ = false;
  std::string dest_;
  bool dest_exists_ = false;
  bool dest_is_dir_ = false;
  int64_t ctx_mtime_ = 0;
  std::optional<uint32_t> chmod_;
  std::optional<user::Owner> chown_;
  Attrs created_;
  std::unique_ptr<common::PatternMatcher> excludes_;
  std::map<std::string, std::string> resolved_dirs_;
  std::map<std::string, std::string> hardlinks_;  // hard-link group -> the first name written
  int staged_ = 0;
};

}  // namespace

absl::Status BuildCopyLayer(const CopyInputs& in) {
  Copier c(in);
  return c.Run();
}

}  // namespace farm::worker::copy
