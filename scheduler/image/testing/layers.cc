#include "scheduler/image/testing/layers.h"

#include <archive.h>
#include <archive_entry.h>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace farm::scheduler::image::testing {

namespace {

la_ssize_t AppendToString(struct archive*, void* client, const void* buf, size_t n) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

}  // namespace

std::string MakeTar(const std::vector<TarEntry>& entries) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(a, &out, nullptr, AppendToString, nullptr);
  for (const TarEntry& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_uid(ae, 0);
    archive_entry_set_gid(ae, 0);
    archive_entry_set_mtime(ae, 0, 0);
    switch (e.type) {
      case '5':
        archive_entry_set_filetype(ae, AE_IFDIR);
        archive_entry_set_perm(ae, e.mode == 0644 ? 0755 : e.mode);
        break;
      case '2':
        archive_entry_set_filetype(ae, AE_IFLNK);
        archive_entry_set_perm(ae, 0777);
        archive_entry_set_symlink(ae, e.link.c_str());
        break;
      default:
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_perm(ae, e.mode);
        archive_entry_set_size(ae, static_cast<la_int64_t>(e.content.size()));
    }
    archive_write_header(a, ae);
    if (e.type == '0' && !e.content.empty()) {
      archive_write_data(a, e.content.data(), e.content.size());
    }
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

absl::StatusOr<farm::v1::Layer> PutLayer(cache::BlobStore& cas, const std::string& tar,
                                         oci::Compression compression) {
  std::string packed;
  common::FunctionSink sink([&](absl::string_view x) {
    packed.append(x.data(), x.size());
    return absl::OkStatus();
  });
  ASSIGN_OR_RETURN(std::unique_ptr<oci::Compressor> c,
                   oci::Compressor::Create({compression}, &sink));
  RETURN_IF_ERROR(c->Write(tar));
  RETURN_IF_ERROR(c->Finish());
  ASSIGN_OR_RETURN(common::Digest d, cas.Put(packed));
  farm::v1::Layer l;
  l.set_digest(d.OciString());
  l.set_size(d.size_bytes);
  l.set_diff_id(common::DigestOf(tar).OciString());
  l.set_uncompressed_size(static_cast<int64_t>(tar.size()));
  l.set_media_type(oci::LayerMediaType(compression, /*docker=*/false));
  return l;
}

std::vector<TarEntry> BusyboxEntries() {
  std::vector<TarEntry> e;
  e.push_back({"bin", "", 0755, '5'});
  absl::StatusOr<std::string> busybox = common::ReadFile("/bin/busybox");
  e.push_back({"bin/busybox", busybox.ok() ? *busybox : std::string("missing busybox"), 0755});
  for (const char* applet : {"sh", "ls", "cat", "echo", "true", "env"}) {
    e.push_back({absl::StrCat("bin/", applet), "", 0777, '2', "busybox"});
  }
  e.push_back({"etc", "", 0755, '5'});
  e.push_back({"etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644});
  e.push_back({"etc/group", "root:x:0:\n", 0644});
  e.push_back({"tmp", "", 01777, '5'});
  return e;
}

absl::StatusOr<std::vector<std::string>> ListTar(const std::string& data) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  std::vector<std::string> paths;
  if (archive_read_open_memory(a, data.data(), data.size()) != ARCHIVE_OK) {
    std::string err = archive_error_string(a) ? archive_error_string(a) : "open failed";
    archive_read_free(a);
    return absl::InvalidArgumentError(err);
  }
  struct archive_entry* ae;
  int rc;
  while ((rc = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
    paths.push_back(archive_entry_pathname(ae));
  }
  std::string err = rc == ARCHIVE_EOF ? "" : archive_error_string(a);
  archive_read_free(a);
  if (rc != ARCHIVE_EOF) return absl::InvalidArgumentError(err);
  return paths;
}

}  // namespace farm::scheduler::image::testing
