#include "scheduler/image/export_layers.h"

#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "common/byte_sink.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/manifest.h"
#include "oci/media_types.h"

namespace farm::scheduler::image {

namespace reapi = build::bazel::remote::execution::v2;

namespace {

constexpr char kMemoPath[] = "farm-exported-layer";

bool IsUncompressed(absl::string_view media_type) {
  absl::StatusOr<oci::Compression> c = oci::LayerCompression(media_type);
  return c.ok() && *c == oci::Compression::kNone;
}

absl::StatusOr<common::Digest> MemoLookup(const LayerExportOptions& o, const std::string& diff_id,
                                          cache::BlobStore& cas) {
  if (o.memo == nullptr) return absl::NotFoundError("no memo");
  ASSIGN_OR_RETURN(std::string bytes,
                   o.memo->Get({o.memo_scope}, LayerExportKey(diff_id, o.compression)));
  reapi::ActionResult r;
  if (!r.ParseFromString(bytes) || r.output_files_size() != 1 ||
      r.output_files(0).path() != kMemoPath) {
    return absl::NotFoundError("not a layer export entry");
  }
  ASSIGN_OR_RETURN(common::Digest d,
                   common::Digest::Create(r.output_files(0).digest().hash(),
                                          r.output_files(0).digest().size_bytes()));
  ASSIGN_OR_RETURN(bool has, cas.Has(d));
  if (!has) return absl::NotFoundError("evicted");
  return d;
}

void MemoStore(const LayerExportOptions& o, const std::string& diff_id,
               const common::Digest& blob) {
  if (o.memo == nullptr) return;
  reapi::ActionResult r;
  reapi::OutputFile* f = r.add_output_files();
  f->set_path(kMemoPath);
  f->mutable_digest()->set_hash(blob.hash);
  f->mutable_digest()->set_size_bytes(blob.size_bytes);
  // Best effort: a failed memo only means the next export compresses again.
  o.memo->Update(o.memo_scope, LayerExportKey(diff_id, o.compression), r.SerializeAsString())
      .IgnoreError();
}

// The compressed form of one uncompressed layer blob, in the CAS.
absl::StatusOr<common::Digest> CompressLayer(cache::BlobStore& cas, const common::Digest& tar,
                                             const LayerExportOptions& o) {
  std::string diff_id = tar.OciString();  // an uncompressed layer's blob is its tar
  absl::StatusOr<common::Digest> known = MemoLookup(o, diff_id, cas);
  if (known.ok()) return known;
  ASSIGN_OR_RETURN(int fd, common::CreateUnlinkedTempFile(o.spool_dir, "export-spool"));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  common::FdSink file(fd, "export spool file");
  common::HashingSink compressed(&file);
  ASSIGN_OR_RETURN(std::unique_ptr<oci::Compressor> compressor,
                   oci::Compressor::Create(o.compression, &compressed));
  RETURN_IF_ERROR(common::Annotate(
      cas.Read(tar, 0, 0, [&](absl::string_view chunk) { return compressor->Write(chunk); }),
      absl::StrCat("reading layer ", diff_id)));
  RETURN_IF_ERROR(compressor->Finish());
  common::Digest blob = compressed.Finish();
  RETURN_IF_ERROR(cas.WriteBlobFromFd(blob, fd));
  MemoStore(o, diff_id, blob);
  return blob;
}

// Rewrites one manifest; returns its new descriptor (platform kept) and its layers.
absl::StatusOr<oci::Descriptor> ConvertManifest(cache::BlobStore& cas, const StoredManifest& sm,
                                                const LayerExportOptions& o,
                                                std::vector<farm::v1::Layer>* layers) {
  ASSIGN_OR_RETURN(common::Digest md, common::Digest::ParseOci(sm.digest, sm.size));
  ASSIGN_OR_RETURN(std::string json, cas.ReadBlob(md));
  ASSIGN_OR_RETURN(oci::Manifest m, oci::Manifest::Parse(json, sm.media_type));
  bool docker = m.media_type == oci::kDockerManifest;
  if (docker && o.compression.compression == oci::Compression::kZstd) {
    return absl::InvalidArgumentError(
        "zstd layers cannot go in a Docker-format manifest (use the OCI format or gzip)");
  }
  for (size_t i = 0; i < m.layers.size(); ++i) {
    oci::Descriptor& d = m.layers[i];
    farm::v1::Layer l = i < sm.layers.size() ? sm.layers[i] : farm::v1::Layer();
    if (IsUncompressed(d.media_type)) {
      ASSIGN_OR_RETURN(common::Digest tar, common::Digest::ParseOci(d.digest, d.size));
      ASSIGN_OR_RETURN(common::Digest blob, CompressLayer(cas, tar, o));
      d.media_type = oci::LayerMediaType(o.compression.compression, docker);
      d.digest = blob.OciString();
      d.size = blob.size_bytes;
      l.set_uncompressed_size(tar.size_bytes);
      l.set_diff_id(tar.OciString());
    }
    l.set_digest(d.digest);
    l.set_size(d.size);
    l.set_media_type(d.media_type);
    layers->push_back(l);
  }
  std::string out = m.ToJson();
  ASSIGN_OR_RETURN(common::Digest nd, cas.Put(out));
  oci::Descriptor desc;
  desc.media_type = m.media_type;
  desc.digest = nd.OciString();
  desc.size = nd.size_bytes;
  return desc;
}

}  // namespace

common::Digest LayerExportKey(const std::string& diff_id, const oci::CompressionOptions& c) {
  return common::DigestOf(absl::StrCat("farm layer export v1\n", diff_id, "\n",
                                       oci::CompressionName(c.compression), "\n", c.level));
}

bool HasUncompressedLayers(const ImageRecord& record) {
  for (const StoredManifest& m : record.manifests) {
    for (const farm::v1::Layer& l : m.layers) {
      if (IsUncompressed(l.media_type())) return true;
    }
  }
  return false;
}

absl::StatusOr<ImageRecord> CompressLayersForExport(cache::BlobStore& cas,
                                                    const ImageRecord& record,
                                                    const LayerExportOptions& options) {
  if (!HasUncompressedLayers(record)) return record;
  if (options.compression.compression == oci::Compression::kNone) return record;
  std::vector<farm::v1::Layer> known;
  oci::Descriptor top;
  if (record.is_index()) {
    ASSIGN_OR_RETURN(common::Digest id, common::Digest::ParseOci(record.digest, record.size));
    ASSIGN_OR_RETURN(std::string json, cas.ReadBlob(id));
    ASSIGN_OR_RETURN(oci::Index index, oci::Index::Parse(json, record.media_type));
    for (oci::Descriptor& entry : index.manifests) {
      const StoredManifest* sm = nullptr;
      for (const StoredManifest& m : record.manifests) {
        if (m.digest == entry.digest) sm = &m;
      }
      if (sm == nullptr) continue;  // not an image manifest Farm keeps (an attestation)
      ASSIGN_OR_RETURN(oci::Descriptor nd, ConvertManifest(cas, *sm, options, &known));
      entry.digest = nd.digest;
      entry.size = nd.size;
    }
    std::string out = index.ToJson();
    ASSIGN_OR_RETURN(common::Digest nd, cas.Put(out));
    top = oci::Descriptor{record.media_type, nd.OciString(), nd.size_bytes};
  } else {
    if (record.manifests.size() != 1) {
      return absl::InternalError(
          absl::StrCat("image ", record.digest, " has no single manifest record"));
    }
    ASSIGN_OR_RETURN(top, ConvertManifest(cas, record.manifests[0], options, &known));
  }
  ASSIGN_OR_RETURN(ImageRecord out, DescribeImage(cas, top, known));
  out.sources = record.sources;
  out.created = record.created;
  return out;
}

}  // namespace farm::scheduler::image
