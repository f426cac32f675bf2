// Test helpers: deterministic layer tars built with libarchive, compressed and put into a CAS,
// and a busybox root filesystem as a base image's layer. Test-only (the worker makes real
// layers).
//
//   std::string tar = scheduler::image::testing::MakeTar({{"etc/hello", "hi\n"}});
//   ASSIGN_OR_RETURN(farm::v1::Layer l, scheduler::image::testing::PutLayer(*cas, tar,
//   Compression::kGzip));
#ifndef FARM_SCHEDULER_IMAGE_TESTING_LAYERS_H_
#define FARM_SCHEDULER_IMAGE_TESTING_LAYERS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/blob_store.h"
#include "farm/v1/step.pb.h"
#include "oci/compression.h"

namespace farm::scheduler::image::testing {

struct TarEntry {
  std::string path;     // relative, e.g. "bin/sh"
  std::string content;  // file content
  int mode = 0644;
  char type = '0';   // '0' file, '5' directory, '2' symlink
  std::string link;  // symlink target
};

// An uncompressed tar with the entries in the order given: owner 0:0, mtime 0.
std::string MakeTar(const std::vector<TarEntry>& entries);

// Compresses `tar`, writes it into `cas`, returns its descriptor (OCI media type).
absl::StatusOr<farm::v1::Layer> PutLayer(cache::BlobStore& cas, const std::string& tar,
                                         oci::Compression compression);

// /bin/busybox (the host's static busybox), /bin/sh and a few applet symlinks, /etc/passwd.
std::vector<TarEntry> BusyboxEntries();

// Lists the paths in a tar (uncompressed or compressed), for checking layer content.
absl::StatusOr<std::vector<std::string>> ListTar(const std::string& data);

}  // namespace farm::scheduler::image::testing

#endif  // FARM_SCHEDULER_IMAGE_TESTING_LAYERS_H_
