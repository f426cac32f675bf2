// farm load: images from a docker-archive or OCI layout (tar or directory), like `docker load`.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <vector>

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

// Copies standard input into an unlinked temporary file ($TMPDIR, else /tmp) and returns it,
// positioned at its start.
absl::StatusOr<int> SpoolStdin() {
  const char* dir = getenv("TMPDIR");
  std::string path = absl::StrCat(dir != nullptr && *dir ? dir : "/tmp", "/farm-load.XXXXXX");
  int fd = mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("creating ", path));
  unlink(path.c_str());
  std::vector<char> buf(1 << 20);
  while (true) {
    ssize_t n = read(0, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return common::ErrnoToStatus(e, "reading standard input");
    }
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = write(fd, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        int e = errno;
        close(fd);
        return common::ErrnoToStatus(e, absl::StrCat("writing ", path));
      }
      done += w;
    }
  }
  if (lseek(fd, 0, SEEK_SET) != 0) {
    int e = errno;
    close(fd);
    return common::ErrnoToStatus(e, "rewinding the spooled input");
  }
  return fd;
}

}  // namespace

int RunLoad(const Args& args) {
  const std::string usage = "farm load [OPTIONS]";
  common::FlagSet fs(usage,
                     "Load images from a tar archive (docker-archive or OCI layout, "
                     "compressed or not) or an OCI layout directory, or STDIN");
  std::string input, platform_text;
  bool quiet = false;
  fs.String("input", 'i', &input,
            "Read from a tar archive file or layout directory, instead "
            "of STDIN");
  fs.Bool("quiet", 'q', &quiet, "Suppress the load output");
  fs.String("platform", 0, &platform_text, "Platform to load from multi-platform archives");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "load", &pos, &code)) return code;
  if (!CheckArgs(pos, 0, 0, "load", usage)) return 2;
  oci::Platform platform = oci::Platform::Host();
  if (!platform_text.empty()) {
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(platform_text);
    if (!p.ok()) return Fail(p.status());
    platform = *p;
  }
  if (input.empty() && IsTerminal(0)) {
    return Fail(absl::InvalidArgumentError("requested load from stdin, but stdin is empty"));
  }
  // A pipe is read to the end before the home is locked: in `farm save X | farm load` the
  // saving process holds the lock until it has written everything.
  int spool = -1;
  struct stat in_st;
  if (input.empty() && fstat(0, &in_st) == 0 && !S_ISREG(in_st.st_mode)) {
    absl::StatusOr<int> fd = SpoolStdin();
    if (!fd.ok()) return Fail(fd.status());
    spool = *fd;
  }
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  std::string scratch = stores->tmp_dir + "/load";
  absl::StatusOr<std::vector<scheduler::image::LoadedImage>> loaded;
  struct stat st;
  if (!input.empty() && stat(input.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    loaded = scheduler::image::LoadLayoutDirectory(*stores->blobs, input, scratch, platform);
  } else {
    int fd = spool >= 0 ? spool : 0;
    if (!input.empty()) {
      fd = open(input.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return Fail(common::ErrnoToStatus(errno, absl::StrCat("open ", input)));
    }
    loaded = scheduler::image::LoadArchive(*stores->blobs, fd, scratch, platform);
    if (fd != 0) close(fd);
  }
  common::RemoveAll(stores->tmp_dir).IgnoreError();
  if (!loaded.ok()) return Fail(loaded.status());
  for (const scheduler::image::LoadedImage& img : *loaded) {
    absl::Status s = stores->images->Put(img.record);
    if (!s.ok()) return Fail(s);
    for (const oci::Reference& tag : img.tags) {
      absl::StatusOr<std::string> old = stores->images->SetReference(tag, img.record.digest);
      if (!old.ok()) return Fail(old.status());
      if (!old->empty() && *old != img.record.digest) {
        absl::StatusOr<scheduler::image::ImageRecord> prev = stores->images->Get(*old);
        std::cout << "The image " << tag.FamiliarString()
                  << " already exists, renaming the old one with ID "
                  << (prev.ok() ? prev->Id() : *old) << " to empty string\n";
      }
      if (!quiet) std::cout << "Loaded image: " << tag.FamiliarString() << "\n";
    }
    if (img.tags.empty() && !quiet) std::cout << "Loaded image ID: " << img.record.Id() << "\n";
  }
  return 0;
}

}  // namespace farm::cli
