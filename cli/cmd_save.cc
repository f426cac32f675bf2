// farm save: images to a docker-archive tar (what `docker load` reads) or an OCI layout.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_util.h"
#include "scheduler/image/archive.h"
#include "scheduler/image/store.h"

namespace farm::cli {

namespace {

// The images and tags `name` stands for, as `docker save` decides: NAME:TAG (or NAME@DIGEST)
// is that image with that tag; a bare NAME is every tag of the repository; an ID has no tag.
absl::Status Collect(scheduler::image::ImageStore& store, const std::string& name,
                     std::vector<scheduler::image::ImageToSave>* out) {
  auto add = [&](const scheduler::image::ImageRecord& rec,
                 const std::optional<oci::Reference>& tag) {
    for (scheduler::image::ImageToSave& s : *out) {
      if (s.record.digest == rec.digest) {
        if (tag) s.tags.push_back(*tag);
        return;
      }
    }
    scheduler::image::ImageToSave s;
    s.record = rec;
    if (tag) s.tags.push_back(*tag);
    out->push_back(std::move(s));
  };
  absl::StatusOr<oci::Reference> ref = oci::Reference::Parse(name);
  if (ref.ok() && !ref->has_tag() && !ref->has_digest()) {
    absl::StatusOr<std::vector<scheduler::image::ImageRecord>> all = store.List();
    if (!all.ok()) return all.status();
    bool found = false;
    for (const scheduler::image::ImageRecord& rec : *all) {
      absl::StatusOr<std::vector<oci::Reference>> refs = store.ReferencesTo(rec.digest);
      if (!refs.ok()) return refs.status();
      for (const oci::Reference& r : *refs) {
        if (r.has_tag() && r.Name() == ref->Name()) {
          add(rec, r);
          found = true;
        }
      }
    }
    if (found) return absl::OkStatus();
  }
  absl::StatusOr<scheduler::image::ImageRecord> rec = scheduler::image::LookupImage(store, name);
  if (!rec.ok()) return rec.status();
  std::optional<oci::Reference> tag;
  if (ref.ok() && ref->has_tag()) tag = *ref;
  if (ref.ok() && !ref->has_tag() && !ref->has_digest()) tag = ref->WithDefaultTag();
  add(*rec, tag);
  return absl::OkStatus();
}

}  // namespace

int RunSave(const Args& args) {
  const std::string usage = "farm save [OPTIONS] IMAGE [IMAGE...]";
  common::FlagSet fs(usage,
                     "Save one or more images to a tar archive (streamed to STDOUT by default)");
  std::string output, format = "docker", platform_text;
  fs.String("output", 'o', &output,
            "Write to a file (or, with --format oci, a directory), "
            "instead of STDOUT");
  fs.String("format", 0, &format,
            "Archive format: docker (docker-archive, what docker load reads) or oci (OCI image "
            "layout with the blobs as stored)");
  fs.String("platform", 0, &platform_text,
            "Platform to save from multi-platform images (docker format)");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "save", &pos, &code)) return code;
  if (!CheckArgs(pos, 1, static_cast<size_t>(-1), "save", usage)) return 2;
  if (format != "docker" && format != "oci") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("unknown --format \"", format, "\" (want docker or oci)")));
  }
  oci::Platform platform = oci::Platform::Host();
  if (!platform_text.empty()) {
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(platform_text);
    if (!p.ok()) return Fail(p.status());
    platform = *p;
  }
  if (output.empty() && IsTerminal(1)) {
    return Fail(absl::InvalidArgumentError(
        "cowardly refusing to save to a terminal. Use the -o flag or redirect"));
  }
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  std::vector<scheduler::image::ImageToSave> images;
  for (const std::string& name : pos) {
    absl::Status s = Collect(*stores->images, name, &images);
    if (!s.ok()) return Fail(s);
  }

  struct stat st;
  bool to_dir =
      !output.empty() && format == "oci" &&
      ((stat(output.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) || absl::EndsWith(output, "/"));
  if (to_dir) {
    absl::StatusOr<std::unique_ptr<scheduler::image::LayoutWriter>> w =
        scheduler::image::LayoutWriter::Directory(output);
    if (!w.ok()) return Fail(w.status());
    absl::Status s = scheduler::image::SaveOciLayout(*stores->blobs, images, **w);
    if (!s.ok()) return Fail(s);
    return 0;
  }
  int fd = 1;
  std::string tmp;
  if (!output.empty()) {
    tmp = absl::StrCat(output, ".farm-tmp.", getpid());
    fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
      return Fail(
          common::ErrnoToStatus(errno, absl::StrCat("failed to save image: ", "create ", output)));
  }
  absl::StatusOr<std::unique_ptr<scheduler::image::LayoutWriter>> w =
      scheduler::image::LayoutWriter::Tar(fd);
  absl::Status s = w.ok() ? absl::OkStatus() : w.status();
  if (s.ok()) {
    s = format == "oci"
            ? scheduler::image::SaveOciLayout(*stores->blobs, images, **w)
            : scheduler::image::SaveDockerArchive(*stores->blobs, images, platform, **w);
  }
  if (s.ok()) s = (*w)->Close();
  if (fd != 1) {
    if (s.ok() && fsync(fd) != 0) s = common::ErrnoToStatus(errno, "fsync " + tmp);
    close(fd);
    if (s.ok() && rename(tmp.c_str(), output.c_str()) != 0) {
      s = common::ErrnoToStatus(errno, "rename to " + output);
    }
    if (!s.ok()) unlink(tmp.c_str());
  }
  if (!s.ok()) return Fail(common::Annotate(s, "failed to save image"));
  return 0;
}

}  // namespace farm::cli
