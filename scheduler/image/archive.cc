#include "scheduler/image/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "nlohmann/json.hpp"
#include "oci/config.h"

namespace farm::scheduler::image {

namespace {

using nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr int64_t kMaxMetadataBytes = 32 << 20;  // manifest.json, index.json, configs
constexpr size_t kIoChunk = 1 << 20;

std::string Dump(const ordered_json& j) {
  // Go's json.Encoder: compact, trailing newline.
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

std::string HexOf(absl::string_view oci_digest) {
  absl::ConsumePrefix(&oci_digest, "sha256:");
  return std::string(oci_digest);
}

// --- writers ---

class TarLayoutWriter : public LayoutWriter {
 public:
  explicit TarLayoutWriter(struct archive* a) : a_(a) {}
  ~TarLayoutWriter() override {
    if (a_ != nullptr) archive_write_free(a_);
  }

  absl::Status AddFile(const std::string& path, int64_t size, const Producer& produce) override {
    RETURN_IF_ERROR(Header(path, AE_IFREG, 0644, size));
    int64_t written = 0;
    absl::Status s = produce([&](absl::string_view chunk) -> absl::Status {
      if (written + static_cast<int64_t>(chunk.size()) > size) {
        return absl::InternalError(
            absl::StrCat(path, ": more than the ", size, " bytes announced"));
      }
      while (!chunk.empty()) {
        la_ssize_t n = archive_write_data(a_, chunk.data(), chunk.size());
        if (n < 0) return Error(absl::StrCat("writing ", path));
        chunk.remove_prefix(static_cast<size_t>(n));
        written += n;
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    if (written != size) {
      return absl::InternalError(
          absl::StrCat(path, ": wrote ", written, " bytes, ", size, " announced"));
    }
    return absl::OkStatus();
  }

  absl::Status AddDirectory(const std::string& path) override {
    return Header(absl::StrCat(absl::StripSuffix(path, "/"), "/"), AE_IFDIR, 0755, 0);
  }

  absl::Status Close() override {
    if (a_ == nullptr) return absl::OkStatus();
    int rc = archive_write_close(a_);
    absl::Status s = rc == ARCHIVE_OK ? absl::OkStatus() : Error("finishing the tar");
    archive_write_free(a_);
    a_ = nullptr;
    return s;
  }

 private:
  absl::Status Header(const std::string& path, mode_t type, int perm, int64_t size) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_size(e, size);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_mtime(e, 0, 0);
    int rc = archive_write_header(a_, e);
    archive_entry_free(e);
    if (rc != ARCHIVE_OK) return Error(absl::StrCat("writing the header of ", path));
    return absl::OkStatus();
  }

  absl::Status Error(absl::string_view what) {
    const char* msg = archive_error_string(a_);
    int e = archive_errno(a_);
    if (e != 0) return common::ErrnoToStatus(e, absl::StrCat(what, ": ", msg ? msg : ""));
    return absl::InternalError(absl::StrCat(what, ": ", msg ? msg : "libarchive error"));
  }

  struct archive* a_;
};

class DirectoryLayoutWriter : public LayoutWriter {
 public:
  explicit DirectoryLayoutWriter(std::string root) : root_(std::move(root)) {}

  absl::Status AddFile(const std::string& path, int64_t size, const Producer& produce) override {
    std::string full = common::JoinPath(root_, path);
    RETURN_IF_ERROR(common::MakeDirs(full.substr(0, full.rfind('/'))));
    std::string tmp = absl::StrCat(full, ".tmp");
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
    int64_t written = 0;
    absl::Status s = produce([&](absl::string_view chunk) -> absl::Status {
      while (!chunk.empty()) {
        ssize_t n = write(fd, chunk.data(), chunk.size());
        if (n < 0) {
          if (errno == EINTR) continue;
          return common::ErrnoToStatus(errno, absl::StrCat("write ", tmp));
        }
        chunk.remove_prefix(static_cast<size_t>(n));
        written += n;
      }
      return absl::OkStatus();
    });
    if (close(fd) != 0 && s.ok()) s = common::ErrnoToStatus(errno, absl::StrCat("close ", tmp));
    if (s.ok() && written != size) {
      s = absl::InternalError(
          absl::StrCat(path, ": wrote ", written, " bytes, ", size, " announced"));
    }
    if (s.ok() && rename(tmp.c_str(), full.c_str()) != 0) {
      s = common::ErrnoToStatus(errno, absl::StrCat("rename ", tmp));
    }
    if (!s.ok()) unlink(tmp.c_str());
    return s;
  }

  absl::Status AddDirectory(const std::string& path) override {
    return common::MakeDirs(common::JoinPath(root_, path));
  }
  absl::Status Close() override { return absl::OkStatus(); }

 private:
  std::string root_;
};

// --- CAS helpers ---

absl::StatusOr<common::Digest> ParseDigest(absl::string_view oci, int64_t size) {
  return common::Digest::ParseOci(oci, size);
}

LayoutWriter::Producer CasProducer(cache::BlobStore& cas, const common::Digest& d) {
  return [&cas, d](const ChunkSink& sink) { return cas.Read(d, 0, 0, sink); };
}

LayoutWriter::Producer MemoryProducer(std::string data) {
  return [data = std::move(data)](const ChunkSink& sink) { return sink(data); };
}

// Streams a layer from the CAS, decompressed, checking its diff_id at the end.
absl::Status ReadUncompressed(cache::BlobStore& cas, const farm::v1::Layer& l,
                              const ChunkSink& sink) {
  ASSIGN_OR_RETURN(oci::Compression c, oci::LayerCompression(l.media_type()));
  ASSIGN_OR_RETURN(common::Digest d, ParseDigest(l.digest(), l.size()));
  common::Sha256 h;
  common::FunctionSink tee([&](absl::string_view u) {
    h.Update(u);
    return sink(u);
  });
  std::unique_ptr<oci::Decompressor> dec = oci::Decompressor::Create(c, &tee);
  RETURN_IF_ERROR(cas.Read(d, 0, 0, [&](absl::string_view chunk) { return dec->Write(chunk); }));
  RETURN_IF_ERROR(dec->Finish());
  common::Digest got = h.Finish();
  if (got.OciString() != l.diff_id()) {
    return absl::DataLossError(absl::StrCat("layer ", l.digest(), " uncompresses to ",
                                            got.OciString(), ", not its diff_id ", l.diff_id()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> UncompressedSize(cache::BlobStore& cas, const farm::v1::Layer& l) {
  if (l.uncompressed_size() >= 0) return l.uncompressed_size();
  int64_t n = 0;
  RETURN_IF_ERROR(ReadUncompressed(cas, l, [&](absl::string_view u) {
    n += static_cast<int64_t>(u.size());
    return absl::OkStatus();
  }));
  return n;
}

const StoredManifest* PickManifest(const ImageRecord& rec, const oci::Platform& platform,
                                   absl::Status* status) {
  if (!rec.is_index()) return &rec.manifests[0];
  absl::StatusOr<const StoredManifest*> m = rec.ForPlatform(platform);
  if (!m.ok()) {
    *status = m.status();
    return nullptr;
  }
  return *m;
}

// --- files ---

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, absl::string_view what) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat(what, " ", path));
  }
  if (st.st_size > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is ", st.st_size, " bytes, more than ", kMaxMetadataBytes));
  }
  return common::ReadFile(path);
}

// Streams a file to `sink` in 1 MiB chunks.
absl::Status StreamFile(const std::string& path, const ChunkSink& sink) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::string buf(kIoChunk, '\0');
  absl::Status s;
  while (true) {
    ssize_t n = read(fd, &buf[0], buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      s = common::ErrnoToStatus(errno, absl::StrCat("read ", path));
      break;
    }
    if (n == 0) break;
    s = sink(absl::string_view(buf.data(), static_cast<size_t>(n)));
    if (!s.ok()) break;
  }
  close(fd);
  return s;
}

absl::StatusOr<std::string> ReadHead(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
  char buf[8];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n < 0) return common::ErrnoToStatus(errno, absl::StrCat("read ", path));
  return std::string(buf, static_cast<size_t>(n));
}

absl::Status CopyFileToCas(cache::BlobStore& cas, const std::string& path,
                           const common::Digest& digest) {
  ASSIGN_OR_RETURN(bool present, cas.Has(digest));
  if (present) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::unique_ptr<cache::BlobWriter> w, cas.BeginWrite(digest));
  RETURN_IF_ERROR(StreamFile(path, [&](absl::string_view c) { return w->Append(c); }));
  return common::Annotate(w->Commit(), path);
}

// Hashes a layer file: digest of its bytes, diff_id of its uncompressed content.
absl::StatusOr<oci::LayerDigests> HashLayerFile(const std::string& path, oci::Compression c) {
  oci::LayerDigester ld(c);
  RETURN_IF_ERROR(StreamFile(path, [&](absl::string_view chunk) { return ld.Update(chunk); }));
  absl::StatusOr<oci::LayerDigests> out = ld.Finish();
  if (!out.ok()) return common::Annotate(out.status(), path);
  return out;
}

// One pass over a layer file whose digest is known: into the CAS (unless present) and through
// the digester on a second thread. The CAS commit checks the digest; the caller checks the
// returned diff_id. A wrong file is INVALID_ARGUMENT naming it, and nothing is stored.
absl::StatusOr<oci::LayerDigests> IngestLayerFile(cache::BlobStore& cas, const std::string& path,
                                                  const oci::Descriptor& want, oci::Compression c,
                                                  const std::string& want_diff_id) {
  ASSIGN_OR_RETURN(common::Digest d, ParseDigest(want.digest, want.size));
  ASSIGN_OR_RETURN(bool present, cas.Has(d));
  std::unique_ptr<cache::BlobWriter> writer;
  if (!present) {
    ASSIGN_OR_RETURN(writer, cas.BeginWrite(d));
  }
  oci::AsyncLayerDigester digester(c, /*hash_stored=*/present);
  int64_t n = 0;
  RETURN_IF_ERROR(StreamFile(path, [&](absl::string_view chunk) -> absl::Status {
    n += static_cast<int64_t>(chunk.size());
    if (n > want.size) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", path, " is larger than its descriptor's ", want.size, " bytes"));
    }
    RETURN_IF_ERROR(digester.Update(chunk));
    return writer ? writer->Append(chunk) : absl::OkStatus();
  }));
  absl::StatusOr<oci::LayerDigests> got = digester.Finish();
  if (!got.ok()) return common::Annotate(got.status(), path);
  if (present || c == oci::Compression::kNone) {
    if (got->digest != d) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", path, " is ", got->digest.OciString(), " (", n,
                       " bytes), expected ", want.digest, " (", want.size, " bytes)"));
    }
  }
  if (got->diff_id.OciString() != want_diff_id) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", path, " has diff_id ",
                                                   got->diff_id.OciString(),
                                                   " but the config says ", want_diff_id));
  }
  if (writer) {
    absl::Status s = writer->Commit();
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", path, " does not match its descriptor: ", s.message()));
    }
  }
  got->digest = d;
  return got;
}

// A path inside the layout: relative, no "..", no absolute. INVALID_ARGUMENT otherwise.
absl::StatusOr<std::string> SafeRelative(absl::string_view path, absl::string_view what) {
  std::string clean = common::CleanPath(path);
  if (clean.empty() || clean == "." || clean[0] == '/' || clean == ".." ||
      absl::StartsWith(clean, "../")) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", path, "\" leaves the archive (absolute or \"..\" path)"));
  }
  return clean;
}

// --- loading ---

struct LoadContext {
  cache::BlobStore& cas;
  std::string dir;
  std::string scratch;
  oci::Platform platform;
  int temp_counter = 0;
  // docker-archive layers already converted, by path.
  std::map<std::string, farm::v1::Layer> layers_by_path;
};

absl::StatusOr<std::string> PathInLayout(const LoadContext& ctx, absl::string_view rel,
                                         absl::string_view what) {
  ASSIGN_OR_RETURN(std::string clean, SafeRelative(rel, what));
  return common::JoinPath(ctx.dir, clean);
}

std::string BlobPath(const LoadContext& ctx, absl::string_view oci_digest) {
  return absl::StrCat(ctx.dir, "/blobs/sha256/", HexOf(oci_digest));
}

// A docker-archive layer file → a compressed layer in the CAS whose diff_id is verified.
absl::StatusOr<farm::v1::Layer> LoadDockerLayer(LoadContext& ctx, const std::string& path,
                                                const std::string& want_diff_id) {
  auto cached = ctx.layers_by_path.find(path);
  if (cached != ctx.layers_by_path.end()) {
    if (cached->second.diff_id() != want_diff_id) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", path, " has diff_id ",
                                                     cached->second.diff_id(),
                                                     " but the config says ", want_diff_id));
    }
    return cached->second;
  }
  ASSIGN_OR_RETURN(std::string head, ReadHead(path));
  oci::Compression c = oci::DetectCompression(head);
  ASSIGN_OR_RETURN(oci::LayerDigests d, HashLayerFile(path, c));
  if (d.diff_id.OciString() != want_diff_id) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", path, " has diff_id ",
                                                   d.diff_id.OciString(),
                                                   " but the image config says ", want_diff_id));
  }
  farm::v1::Layer l;
  l.set_diff_id(want_diff_id);
  l.set_uncompressed_size(d.diff_id.size_bytes);
  if (c != oci::Compression::kNone) {
    RETURN_IF_ERROR(CopyFileToCas(ctx.cas, path, d.digest));
    l.set_digest(d.digest.OciString());
    l.set_size(d.digest.size_bytes);
    l.set_media_type(oci::LayerMediaType(c, /*docker=*/false));
  } else {
    // Compress so the image can be pushed as is (Docker compresses at push time instead).
    std::string tmp = absl::StrCat(ctx.scratch, "/layer-", ctx.temp_counter++, ".gz");
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
    common::Sha256 h;
    common::FunctionSink to_file([&](absl::string_view out) -> absl::Status {
      h.Update(out);
      while (!out.empty()) {
        ssize_t n = write(fd, out.data(), out.size());
        if (n < 0) {
          if (errno == EINTR) continue;
          return common::ErrnoToStatus(errno, absl::StrCat("write ", tmp));
        }
        out.remove_prefix(static_cast<size_t>(n));
      }
      return absl::OkStatus();
    });
    // Level 1 (libdeflate, parallel): deterministic on every machine and whatever the number
    // of cores, several times faster than the default level for ~10% more bytes.
    ASSIGN_OR_RETURN(std::unique_ptr<oci::Compressor> gz,
                     oci::Compressor::Create({oci::Compression::kGzip, /*level=*/1}, &to_file));
    absl::Status s = StreamFile(path, [&](absl::string_view chunk) { return gz->Write(chunk); });
    if (s.ok()) s = gz->Finish();
    close(fd);
    common::Digest packed = h.Finish();
    if (s.ok()) s = CopyFileToCas(ctx.cas, tmp, packed);
    unlink(tmp.c_str());
    RETURN_IF_ERROR(s);
    l.set_digest(packed.OciString());
    l.set_size(packed.size_bytes);
    l.set_media_type(oci::kOciLayerGzip);
  }
  ctx.layers_by_path[path] = l;
  return l;
}

absl::StatusOr<std::vector<LoadedImage>> LoadDockerArchive(LoadContext& ctx) {
  std::string manifest_path = ctx.dir + "/manifest.json";
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(manifest_path, "docker-archive"));
  json items = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (items.is_discarded() || !items.is_array()) {
    return absl::InvalidArgumentError("manifest.json: not a JSON array");
  }
  std::vector<LoadedImage> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const json& item = items[i];
    std::string where = absl::StrCat("manifest.json[", i, "]");
    if (!item.is_object() || !item.contains("Config") || !item["Config"].is_string() ||
        !item.contains("Layers") || !item["Layers"].is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": needs \"Config\" and \"Layers\""));
    }
    ASSIGN_OR_RETURN(std::string config_path,
                     PathInLayout(ctx, item["Config"].get<std::string>(), where));
    ASSIGN_OR_RETURN(std::string config_bytes, ReadSmallFile(config_path, "image config"));
    absl::StatusOr<oci::ImageConfig> config = oci::ImageConfig::FromJson(config_bytes);
    if (!config.ok()) return common::Annotate(config.status(), config_path);
    const json& layers = item["Layers"];
    if (layers.size() != config->diff_ids.size()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", layers.size(),
                                                     " layers but the config lists ",
                                                     config->diff_ids.size(), " diff_ids"));
    }
    oci::Manifest m;
    m.media_type = oci::kOciManifest;
    std::vector<farm::v1::Layer> stored;
    for (size_t k = 0; k < layers.size(); ++k) {
      if (!layers[k].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".Layers[", k, "]: not a string"));
      }
      ASSIGN_OR_RETURN(std::string lp, PathInLayout(ctx, layers[k].get<std::string>(), where));
      ASSIGN_OR_RETURN(farm::v1::Layer l, LoadDockerLayer(ctx, lp, config->diff_ids[k]));
      m.layers.push_back(oci::Descriptor{l.media_type(), l.digest(), l.size()});
      stored.push_back(std::move(l));
    }
    ASSIGN_OR_RETURN(common::Digest config_digest, ctx.cas.Put(config_bytes));
    m.config =
        oci::Descriptor{oci::kOciConfig, config_digest.OciString(), config_digest.size_bytes};
    std::string mjson = m.ToJson();
    ASSIGN_OR_RETURN(common::Digest mdigest, ctx.cas.Put(mjson));
    oci::Descriptor top{oci::kOciManifest, mdigest.OciString(), mdigest.size_bytes};
    LoadedImage img;
    ASSIGN_OR_RETURN(img.record, DescribeImage(ctx.cas, top, stored));
    auto tags = item.find("RepoTags");
    if (tags != item.end() && tags->is_array()) {
      for (const json& t : *tags) {
        if (!t.is_string()) continue;
        absl::StatusOr<oci::Reference> r =
            oci::Reference::ParseWithDefaultTag(t.get<std::string>());
        if (!r.ok()) return common::Annotate(r.status(), absl::StrCat(where, ".RepoTags"));
        img.tags.push_back(*r);
      }
    }
    out.push_back(std::move(img));
  }
  return out;
}

// Puts a manifest's config and layers (verified) and the manifest into the CAS.
absl::Status LoadOciManifest(LoadContext& ctx, const oci::Descriptor& desc,
                             std::vector<farm::v1::Layer>* layers_out) {
  std::string mpath = BlobPath(ctx, desc.digest);
  ASSIGN_OR_RETURN(std::string mbytes, ReadSmallFile(mpath, "manifest"));
  ASSIGN_OR_RETURN(common::Digest md, ParseDigest(desc.digest, desc.size));
  if (common::DigestOf(mbytes) != md) {
    return absl::InvalidArgumentError(absl::StrCat(
        "manifest ", mpath, " does not match its digest ", desc.digest, " and size ", desc.size));
  }
  absl::StatusOr<oci::Manifest> m = oci::Manifest::Parse(mbytes, desc.media_type);
  if (!m.ok()) return common::Annotate(m.status(), mpath);
  std::string cpath = BlobPath(ctx, m->config.digest);
  ASSIGN_OR_RETURN(std::string cbytes, ReadSmallFile(cpath, "image config"));
  ASSIGN_OR_RETURN(common::Digest cd, ParseDigest(m->config.digest, m->config.size));
  if (common::DigestOf(cbytes) != cd) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", cpath, " does not match its digest ", m->config.digest));
  }
  absl::StatusOr<oci::ImageConfig> config = oci::ImageConfig::FromJson(cbytes);
  if (!config.ok()) return common::Annotate(config.status(), cpath);
  if (config->diff_ids.size() != m->layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat("manifest ", desc.digest, ": ", m->layers.size(),
                                                   " layers but the config has ",
                                                   config->diff_ids.size(), " diff_ids"));
  }
  for (size_t i = 0; i < m->layers.size(); ++i) {
    const oci::Descriptor& ld = m->layers[i];
    ASSIGN_OR_RETURN(oci::Compression c, oci::LayerCompression(ld.media_type));
    std::string lpath = BlobPath(ctx, ld.digest);
    ASSIGN_OR_RETURN(oci::LayerDigests got,
                     IngestLayerFile(ctx.cas, lpath, ld, c, config->diff_ids[i]));
    farm::v1::Layer l;
    l.set_digest(ld.digest);
    l.set_size(ld.size);
    l.set_media_type(ld.media_type);
    l.set_diff_id(config->diff_ids[i]);
    l.set_uncompressed_size(got.diff_id.size_bytes);
    layers_out->push_back(std::move(l));
  }
  RETURN_IF_ERROR(ctx.cas.WriteBlob(cd, cbytes));
  return ctx.cas.WriteBlob(md, mbytes);
}

absl::StatusOr<std::vector<LoadedImage>> LoadOciLayout(LoadContext& ctx) {
  std::string index_path = ctx.dir + "/index.json";
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path, "OCI layout"));
  absl::StatusOr<oci::Index> idx = oci::Index::Parse(text, oci::kOciIndex);
  if (!idx.ok()) return common::Annotate(idx.status(), index_path);
  std::vector<LoadedImage> out;
  for (const oci::Descriptor& entry : idx->manifests) {
    oci::Descriptor desc = entry;
    if (oci::IsIndexMediaType(entry.media_type)) {
      std::string ipath = BlobPath(ctx, entry.digest);
      ASSIGN_OR_RETURN(std::string ibytes, ReadSmallFile(ipath, "index"));
      ASSIGN_OR_RETURN(common::Digest id, ParseDigest(entry.digest, entry.size));
      if (common::DigestOf(ibytes) != id) {
        return absl::InvalidArgumentError(
            absl::StrCat("index ", ipath, " does not match its digest ", entry.digest));
      }
      absl::StatusOr<oci::Index> nested = oci::Index::Parse(ibytes, entry.media_type);
      if (!nested.ok()) return common::Annotate(nested.status(), ipath);
      absl::StatusOr<oci::Descriptor> chosen = oci::SelectPlatform(*nested, ctx.platform);
      if (!chosen.ok()) return common::Annotate(chosen.status(), ipath);
      desc = *chosen;
      if (!oci::IsManifestMediaType(desc.media_type)) {
        return absl::InvalidArgumentError(
            absl::StrCat(ipath, ": nested indexes deeper than one level are not supported"));
      }
    } else if (!oci::IsManifestMediaType(entry.media_type)) {
      continue;  // not an image (artifacts, signatures)
    }
    std::vector<farm::v1::Layer> layers;
    RETURN_IF_ERROR(LoadOciManifest(ctx, desc, &layers));
    oci::Descriptor top{desc.media_type, desc.digest, desc.size};
    LoadedImage img;
    ASSIGN_OR_RETURN(img.record, DescribeImage(ctx.cas, top, layers));
    std::string name;
    auto full = entry.annotations.find("io.containerd.image.name");
    auto ref_name = entry.annotations.find("org.opencontainers.image.ref.name");
    if (full != entry.annotations.end()) {
      name = full->second;
    } else if (ref_name != entry.annotations.end() && (absl::StrContains(ref_name->second, '/') ||
                                                       absl::StrContains(ref_name->second, ':'))) {
      name = ref_name->second;  // a bare ref.name ("latest") is only a tag: no repository
    }
    if (!name.empty()) {
      absl::StatusOr<oci::Reference> r = oci::Reference::ParseWithDefaultTag(name);
      if (!r.ok()) return common::Annotate(r.status(), index_path);
      if (!r->has_digest() || r->digest() == img.record.digest) img.tags.push_back(*r);
    }
    // Entries for the same image (one per tag) merge.
    bool merged = false;
    for (LoadedImage& prev : out) {
      if (prev.record.digest == img.record.digest) {
        prev.tags.insert(prev.tags.end(), img.tags.begin(), img.tags.end());
        merged = true;
      }
    }
    if (!merged) out.push_back(std::move(img));
  }
  if (out.empty()) return absl::InvalidArgumentError(index_path + ": no image in the layout");
  return out;
}

// Extracts a tar stream into `root`, refusing entries that would land outside it.
absl::Status ExtractTar(int fd, const std::string& root) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  auto fail = [&](absl::string_view what) {
    std::string msg = archive_error_string(a) ? archive_error_string(a) : "libarchive error";
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", msg));
  };
  if (archive_read_open_fd(a, fd, kIoChunk) != ARCHIVE_OK) {
    absl::Status s = fail("reading the archive");
    archive_read_free(a);
    return s;
  }
  absl::Status status;
  struct archive_entry* e;
  while (status.ok()) {
    int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      status = fail("reading the archive");
      break;
    }
    std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    absl::StatusOr<std::string> rel = SafeRelative(name, "archive entry");
    if (!rel.ok()) {
      if (common::CleanPath(name) == "." || name.empty()) continue;  // "./"
      status = rel.status();
      break;
    }
    // No component of the parent may be a symlink: entries cannot be written through links.
    std::string parent = common::JoinPath(root, *rel);
    parent = parent.substr(0, parent.rfind('/'));
    for (std::string p = parent; p.size() > root.size(); p = p.substr(0, p.rfind('/'))) {
      struct stat st;
      if (lstat(p.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
        status = absl::InvalidArgumentError(
            absl::StrCat("archive entry \"", name, "\" is beneath a symlink"));
        break;
      }
    }
    if (!status.ok()) break;
    std::string path = common::JoinPath(root, *rel);
    status = common::MakeDirs(parent);
    if (!status.ok()) break;
    const char* hardlink = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if (hardlink != nullptr) {
      absl::StatusOr<std::string> target = SafeRelative(hardlink, "hard link target");
      if (!target.ok()) {
        status = target.status();
        break;
      }
      if (link(common::JoinPath(root, *target).c_str(), path.c_str()) != 0) {
        status = common::ErrnoToStatus(errno, absl::StrCat("link ", name, " to ", hardlink));
      }
    } else if (type == AE_IFDIR) {
      status = common::MakeDirs(path);
    } else if (type == AE_IFLNK) {
      std::string target = archive_entry_symlink(e) ? archive_entry_symlink(e) : "";
      std::string dir = rel->find('/') == std::string::npos ? "" : rel->substr(0, rel->rfind('/'));
      absl::StatusOr<std::string> resolved =
          SafeRelative(dir.empty() ? target : absl::StrCat(dir, "/", target), "symlink target");
      if (target.empty() || target[0] == '/' || !resolved.ok()) {
        status = absl::InvalidArgumentError(
            absl::StrCat("archive symlink \"", name, "\" -> \"", target, "\" leaves the archive"));
        break;
      }
      if (symlink(target.c_str(), path.c_str()) != 0) {
        status = common::ErrnoToStatus(errno, absl::StrCat("symlink ", name));
      }
    } else if (type == AE_IFREG) {
      int out = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (out < 0) {
        status = common::ErrnoToStatus(errno, absl::StrCat("create ", path));
        break;
      }
      const void* buf;
      size_t size;
      la_int64_t offset;
      while (status.ok()) {
        int r = archive_read_data_block(a, &buf, &size, &offset);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) {
          status = fail(absl::StrCat("reading ", name));
          break;
        }
        const char* p = static_cast<const char*>(buf);
        while (size > 0) {
          ssize_t n = pwrite(out, p, size, offset);
          if (n < 0) {
            if (errno == EINTR) continue;
            status = common::ErrnoToStatus(errno, absl::StrCat("write ", path));
            break;
          }
          p += n;
          size -= static_cast<size_t>(n);
          offset += n;
        }
      }
      if (status.ok() && ftruncate(out, archive_entry_size(e)) != 0) {
        status = common::ErrnoToStatus(errno, absl::StrCat("truncate ", path));
      }
      close(out);
    }
    // Devices, fifos: not part of any image layout; skipped.
  }
  archive_read_free(a);
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LayoutWriter>> LayoutWriter::Tar(int fd) {
  struct archive* a = archive_write_new();
  if (a == nullptr) return absl::InternalError("archive_write_new failed");
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_per_block(a, 10240);
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open_fd(a, fd) != ARCHIVE_OK) {
    std::string msg = archive_error_string(a) ? archive_error_string(a) : "open failed";
    archive_write_free(a);
    return absl::InternalError(absl::StrCat("opening the tar output: ", msg));
  }
  return std::unique_ptr<LayoutWriter>(new TarLayoutWriter(a));
}

absl::StatusOr<std::unique_ptr<LayoutWriter>> LayoutWriter::Directory(const std::string& root) {
  RETURN_IF_ERROR(common::MakeDirs(root));
  return std::unique_ptr<LayoutWriter>(new DirectoryLayoutWriter(root));
}

absl::Status SaveDockerArchive(cache::BlobStore& cas, const std::vector<ImageToSave>& images,
                               const oci::Platform& platform, LayoutWriter& out) {
  struct Blob {
    int64_t size;
    LayoutWriter::Producer produce;
  };
  std::map<std::string, Blob> blobs;  // by hex: written in sorted order, as Docker's tar is
  ordered_json items = ordered_json::array();
  ordered_json repositories = ordered_json::object();
  ordered_json index_manifests = ordered_json::array();
  for (const ImageToSave& img : images) {
    absl::Status pick_status;
    const StoredManifest* m = PickManifest(img.record, platform, &pick_status);
    if (m == nullptr) return pick_status;
    ASSIGN_OR_RETURN(common::Digest cd, ParseDigest(m->config_digest, m->config_size));
    blobs[cd.hash] = Blob{cd.size_bytes, CasProducer(cas, cd)};
    oci::Manifest oci;
    oci.media_type = oci::kOciManifest;
    oci.config = oci::Descriptor{oci::kOciConfig, m->config_digest, m->config_size};
    ordered_json layer_paths = ordered_json::array();
    for (const farm::v1::Layer& l : m->layers) {
      ASSIGN_OR_RETURN(int64_t usize, UncompressedSize(cas, l));
      std::string hex = HexOf(l.diff_id());
      farm::v1::Layer layer = l;
      blobs[hex] = Blob{usize, [&cas, layer](const ChunkSink& sink) {
                          return ReadUncompressed(cas, layer, sink);
                        }};
      oci.layers.push_back(oci::Descriptor{oci::kOciLayer, l.diff_id(), usize});
      layer_paths.push_back(absl::StrCat("blobs/sha256/", hex));
    }
    std::string mjson = oci.ToJson();
    common::Digest md = common::DigestOf(mjson);
    blobs[md.hash] = Blob{md.size_bytes, MemoryProducer(mjson)};
    ordered_json tags = ordered_json::array();
    for (const oci::Reference& r : img.tags) {
      tags.push_back(r.FamiliarString());
      if (!m->layers.empty()) {
        repositories[r.FamiliarName()][r.tag()] = HexOf(m->layers.back().diff_id());
      }
      ordered_json d = {{"mediaType", oci::kOciManifest},
                        {"digest", md.OciString()},
                        {"size", md.size_bytes},
                        {"annotations",
                         {{"io.containerd.image.name", r.String()},
                          {"org.opencontainers.image.ref.name", r.tag()}}}};
      index_manifests.push_back(std::move(d));
    }
    if (img.tags.empty()) {
      index_manifests.push_back(ordered_json{
          {"mediaType", oci::kOciManifest}, {"digest", md.OciString()}, {"size", md.size_bytes}});
    }
    items.push_back(ordered_json{{"Config", absl::StrCat("blobs/sha256/", cd.hash)},
                                 {"RepoTags", img.tags.empty() ? ordered_json() : tags},
                                 {"Layers", std::move(layer_paths)}});
  }
  RETURN_IF_ERROR(out.AddDirectory("blobs"));
  RETURN_IF_ERROR(out.AddDirectory("blobs/sha256"));
  for (const auto& [hex, blob] : blobs) {
    RETURN_IF_ERROR(
        common::Annotate(out.AddFile(absl::StrCat("blobs/sha256/", hex), blob.size, blob.produce),
                         absl::StrCat("saving sha256:", hex)));
  }
  ordered_json index = {{"schemaVersion", 2},
                        {"mediaType", oci::kOciIndex},
                        {"manifests", std::move(index_manifests)}};
  std::string index_json = Dump(index);
  RETURN_IF_ERROR(out.AddFile("index.json", index_json.size(), MemoryProducer(index_json)));
  std::string manifest_json = Dump(items);
  RETURN_IF_ERROR(
      out.AddFile("manifest.json", manifest_json.size(), MemoryProducer(manifest_json)));
  std::string layout = Dump(ordered_json{{"imageLayoutVersion", "1.0.0"}});
  RETURN_IF_ERROR(out.AddFile("oci-layout", layout.size(), MemoryProducer(layout)));
  if (!repositories.empty()) {
    std::string repos = Dump(repositories);
    RETURN_IF_ERROR(out.AddFile("repositories", repos.size(), MemoryProducer(repos)));
  }
  return absl::OkStatus();
}

absl::Status SaveOciLayout(cache::BlobStore& cas, const std::vector<ImageToSave>& images,
                           LayoutWriter& out) {
  std::map<std::string, common::Digest> blobs;
  ordered_json manifests = ordered_json::array();
  for (const ImageToSave& img : images) {
    for (const common::Digest& d : img.record.Blobs()) blobs[d.hash] = d;
    ordered_json base = {{"mediaType", img.record.media_type},
                         {"digest", img.record.digest},
                         {"size", img.record.size}};
    if (!img.record.is_index() && !img.record.manifests.empty()) {
      absl::StatusOr<oci::Platform> p = oci::Platform::Parse(img.record.manifests[0].platform);
      if (p.ok()) {
        ordered_json pj = {{"architecture", p->architecture}, {"os", p->os}};
        if (!p->variant.empty()) pj["variant"] = p->variant;
        base["platform"] = std::move(pj);
      }
    }
    for (const oci::Reference& r : img.tags) {
      ordered_json d = base;
      d["annotations"] = {{"io.containerd.image.name", r.String()},
                          {"org.opencontainers.image.ref.name", r.tag()}};
      manifests.push_back(std::move(d));
    }
    if (img.tags.empty()) manifests.push_back(base);
  }
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing,
                   cas.FindMissing(std::vector<common::Digest>([&] {
                     std::vector<common::Digest> all;
                     for (const auto& [hex, d] : blobs) all.push_back(d);
                     return all;
                   }())));
  if (!missing.empty()) {
    return absl::NotFoundError(
        absl::StrCat("blob ", missing[0].OciString(), " of the image is not in the CAS"));
  }
  RETURN_IF_ERROR(out.AddDirectory("blobs"));
  RETURN_IF_ERROR(out.AddDirectory("blobs/sha256"));
  for (const auto& [hex, d] : blobs) {
    RETURN_IF_ERROR(common::Annotate(
        out.AddFile(absl::StrCat("blobs/sha256/", hex), d.size_bytes, CasProducer(cas, d)),
        absl::StrCat("saving sha256:", hex)));
  }
  ordered_json index = {
      {"schemaVersion", 2}, {"mediaType", oci::kOciIndex}, {"manifests", std::move(manifests)}};
  std::string index_json = Dump(index);
  RETURN_IF_ERROR(out.AddFile("index.json", index_json.size(), MemoryProducer(index_json)));
  std::string layout = Dump(ordered_json{{"imageLayoutVersion", "1.0.0"}});
  return out.AddFile("oci-layout", layout.size(), MemoryProducer(layout));
}

absl::StatusOr<std::vector<LoadedImage>> LoadLayoutDirectory(cache::BlobStore& cas,
                                                             const std::string& dir,
                                                             const std::string& scratch_dir,
                                                             const oci::Platform& platform) {
  RETURN_IF_ERROR(common::MakeDirs(scratch_dir, 0700));
  LoadContext ctx{cas, dir, scratch_dir, platform};
  if (common::PathExists(dir + "/manifest.json")) return LoadDockerArchive(ctx);
  if (common::PathExists(dir + "/index.json")) return LoadOciLayout(ctx);
  return absl::InvalidArgumentError(
      "neither manifest.json (docker-archive) nor index.json (OCI layout) found: not an image "
      "archive");
}

absl::StatusOr<std::vector<LoadedImage>> LoadArchive(cache::BlobStore& cas, int fd,
                                                     const std::string& scratch_dir,
                                                     const oci::Platform& platform) {
  std::string extracted = scratch_dir + "/archive";
  std::string work = scratch_dir + "/work";
  RETURN_IF_ERROR(common::MakeDirs(extracted, 0700));
  absl::Status s = ExtractTar(fd, extracted);
  absl::StatusOr<std::vector<LoadedImage>> out =
      s.ok() ? LoadLayoutDirectory(cas, extracted, work, platform)
             : absl::StatusOr<std::vector<LoadedImage>>(s);
  common::RemoveAll(scratch_dir).IgnoreError();
  return out;
}

}  // namespace farm::scheduler::image
