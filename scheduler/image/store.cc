#include "scheduler/image/store.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "nlohmann/json.hpp"
#include "oci/config.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace farm::scheduler::image {

namespace {

using nlohmann::json;

constexpr char kImgPrefix[] = "img/";
constexpr char kRefPrefix[] = "ref/";
constexpr char kRevPrefix[] = "rev/";
constexpr int64_t kMaxManifestBytes = 4 << 20;  // distribution's limit
constexpr int64_t kMaxConfigBytes = 32 << 20;

json LayerJson(const farm::v1::Layer& l) {
  return json{{"digest", l.digest()},
              {"size", l.size()},
              {"diffId", l.diff_id()},
              {"mediaType", l.media_type()},
              {"uncompressedSize", l.uncompressed_size()}};
}

bool IsHexPrefix(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

std::string ShortId(absl::string_view id) {
  absl::ConsumePrefix(&id, "sha256:");
  return std::string(id.substr(0, 12));
}

template <typename T>
absl::Status Get(const json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::OkStatus();
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return absl::DataLossError(absl::StrCat("image record: ", key));
    *out = it->template get<std::string>();
  } else {
    if (!it->is_number_integer()) return absl::DataLossError(absl::StrCat("image record: ", key));
    *out = it->template get<T>();
  }
  return absl::OkStatus();
}

absl::Status GetList(const json& j, const char* key, std::vector<std::string>* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::OkStatus();
  if (!it->is_array()) return absl::DataLossError(absl::StrCat("image record: ", key));
  for (const json& e : *it) {
    if (!e.is_string()) return absl::DataLossError(absl::StrCat("image record: ", key));
    out->push_back(e.get<std::string>());
  }
  return absl::OkStatus();
}

void MergeUnique(std::vector<std::string>* into, const std::vector<std::string>& from) {
  for (const std::string& s : from) {
    if (std::find(into->begin(), into->end(), s) == into->end()) into->push_back(s);
  }
}

}  // namespace

// --- ImageRecord ---

std::string ImageRecord::Id() const {
  if (!is_index() && manifests.size() == 1) return manifests[0].config_digest;
  return digest;
}

int64_t ImageRecord::ContentSize() const {
  int64_t total = 0;
  std::set<std::string> seen;
  for (const StoredManifest& m : manifests) {
    for (const farm::v1::Layer& l : m.layers) {
      if (!seen.insert(l.digest()).second) continue;
      total += l.uncompressed_size() >= 0 ? l.uncompressed_size() : l.size();
    }
  }
  return total;
}

std::vector<common::Digest> ImageRecord::Blobs() const {
  std::vector<common::Digest> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& d, int64_t size) {
    if (!seen.insert(d).second) return;
    absl::StatusOr<common::Digest> parsed = common::Digest::ParseOci(d, size);
    if (parsed.ok()) out.push_back(*parsed);
  };
  add(digest, size);
  for (const StoredManifest& m : manifests) {
    add(m.digest, m.size);
    add(m.config_digest, m.config_size);
    for (const farm::v1::Layer& l : m.layers) add(l.digest(), l.size());
  }
  return out;
}

absl::StatusOr<const StoredManifest*> ImageRecord::ForPlatform(const oci::Platform& want) const {
  oci::Platform w = want.Normalized();
  const StoredManifest* compatible = nullptr;
  std::vector<std::string> have;
  for (const StoredManifest& m : manifests) {
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(m.platform);
    have.push_back(m.platform);
    if (!p.ok() || p->os != w.os || p->architecture != w.architecture) continue;
    if (p->variant == w.variant) return &m;
    if (w.variant.empty() && compatible == nullptr) compatible = &m;
  }
  if (compatible != nullptr) return compatible;
  return absl::NotFoundError(absl::StrCat("image ", ShortId(Id()),
                                          " was found but does not match the specified "
                                          "platform: wanted ",
                                          w.String(), ", actual: ", absl::StrJoin(have, ", ")));
}

std::string ImageRecord::ToJson() const {
  json j = json::object();
  j["digest"] = digest;
  j["mediaType"] = media_type;
  j["size"] = size;
  json ms = json::array();
  for (const StoredManifest& m : manifests) {
    json mj{{"digest", m.digest},
            {"mediaType", m.media_type},
            {"size", m.size},
            {"config",
             {{"digest", m.config_digest},
              {"mediaType", m.config_media_type},
              {"size", m.config_size}}},
            {"platform", m.platform}};
    json ls = json::array();
    for (const farm::v1::Layer& l : m.layers) ls.push_back(LayerJson(l));
    mj["layers"] = std::move(ls);
    ms.push_back(std::move(mj));
  }
  j["manifests"] = std::move(ms);
  j["created"] = created;
  j["added"] = added_unix;
  j["lastTag"] = last_tag_unix;
  j["indexDigests"] = index_digests;
  j["sources"] = sources;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<ImageRecord> ImageRecord::FromJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("image record: not a JSON object");
  }
  ImageRecord r;
  RETURN_IF_ERROR(Get(j, "digest", &r.digest));
  RETURN_IF_ERROR(Get(j, "mediaType", &r.media_type));
  RETURN_IF_ERROR(Get(j, "size", &r.size));
  RETURN_IF_ERROR(Get(j, "created", &r.created));
  RETURN_IF_ERROR(Get(j, "added", &r.added_unix));
  RETURN_IF_ERROR(Get(j, "lastTag", &r.last_tag_unix));
  RETURN_IF_ERROR(GetList(j, "indexDigests", &r.index_digests));
  RETURN_IF_ERROR(GetList(j, "sources", &r.sources));
  auto ms = j.find("manifests");
  if (ms != j.end()) {
    if (!ms->is_array()) return absl::DataLossError("image record: manifests");
    for (const json& mj : *ms) {
      if (!mj.is_object()) return absl::DataLossError("image record: manifests[]");
      StoredManifest m;
      RETURN_IF_ERROR(Get(mj, "digest", &m.digest));
      RETURN_IF_ERROR(Get(mj, "mediaType", &m.media_type));
      RETURN_IF_ERROR(Get(mj, "size", &m.size));
      RETURN_IF_ERROR(Get(mj, "platform", &m.platform));
      auto c = mj.find("config");
      if (c != mj.end() && c->is_object()) {
        RETURN_IF_ERROR(Get(*c, "digest", &m.config_digest));
        RETURN_IF_ERROR(Get(*c, "mediaType", &m.config_media_type));
        RETURN_IF_ERROR(Get(*c, "size", &m.config_size));
      }
      auto ls = mj.find("layers");
      if (ls != mj.end() && ls->is_array()) {
        for (const json& lj : *ls) {
          if (!lj.is_object()) return absl::DataLossError("image record: layers[]");
          std::string digest, diff_id, media_type;
          int64_t size = 0, usize = -1;
          RETURN_IF_ERROR(Get(lj, "digest", &digest));
          RETURN_IF_ERROR(Get(lj, "diffId", &diff_id));
          RETURN_IF_ERROR(Get(lj, "mediaType", &media_type));
          RETURN_IF_ERROR(Get(lj, "size", &size));
          RETURN_IF_ERROR(Get(lj, "uncompressedSize", &usize));
          farm::v1::Layer l;
          l.set_digest(digest);
          l.set_diff_id(diff_id);
          l.set_media_type(media_type);
          l.set_size(size);
          l.set_uncompressed_size(usize);
          m.layers.push_back(std::move(l));
        }
      }
      r.manifests.push_back(std::move(m));
    }
  }
  return r;
}

// --- RocksDbImageStore ---

struct RocksDbImageStore::Impl {
  std::string dir;
  std::unique_ptr<rocksdb::DB> db;
  absl::Mutex mu;  // serializes read-modify-write updates

  absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
    return common::FromRocks(s, absl::StrCat("image store ", dir, ": ", what));
  }

  absl::StatusOr<std::optional<std::string>> Read(const std::string& key) {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    RETURN_IF_ERROR(FromRocks(s, key));
    return std::optional<std::string>(std::move(value));
  }

  absl::Status Write(rocksdb::WriteBatch* batch) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return FromRocks(db->Write(wo, batch), "write");
  }

  // Visits every key with `prefix`.
  absl::Status Scan(const std::string& prefix,
                    const std::function<void(absl::string_view key, absl::string_view value)>& f) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      f(absl::string_view(it->key().data(), it->key().size()),
        absl::string_view(it->value().data(), it->value().size()));
    }
    return FromRocks(it->status(), absl::StrCat("scan ", prefix));
  }

  absl::StatusOr<std::optional<ImageRecord>> GetRecord(absl::string_view digest) {
    ASSIGN_OR_RETURN(std::optional<std::string> v, Read(absl::StrCat(kImgPrefix, digest)));
    if (!v) return std::optional<ImageRecord>();
    absl::StatusOr<ImageRecord> r = ImageRecord::FromJson(*v);
    if (!r.ok()) return common::Annotate(r.status(), absl::StrCat("image ", digest));
    return std::optional<ImageRecord>(std::move(*r));
  }
};

RocksDbImageStore::RocksDbImageStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RocksDbImageStore::~RocksDbImageStore() = default;

absl::StatusOr<std::unique_ptr<RocksDbImageStore>> RocksDbImageStore::Create(
    const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.keep_log_file_num = 2;
  options.max_manifest_file_size = 4 << 20;
  // A small database: open its few table files in this thread (RocksDB's default starts 16
  // threads), lazily past 64.
  options.max_file_opening_threads = 1;
  options.max_open_files = 256;
  options.skip_stats_update_on_db_open = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  if (!s.ok()) {
    if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
      return absl::FailedPreconditionError(
          absl::StrCat("image store ", dir, " is in use by another process: ", s.ToString()));
    }
    return absl::InternalError(absl::StrCat("opening image store ", dir, ": ", s.ToString()));
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->db.reset(db);
  return std::unique_ptr<RocksDbImageStore>(new RocksDbImageStore(std::move(impl)));
}

absl::Status RocksDbImageStore::Put(const ImageRecord& record) {
  if (record.digest.empty()) return absl::InvalidArgumentError("image record without digest");
  absl::MutexLock lock(&impl_->mu);
  ImageRecord merged = record;
  ASSIGN_OR_RETURN(std::optional<ImageRecord> old, impl_->GetRecord(record.digest));
  if (old) {
    merged.added_unix = old->added_unix;
    merged.last_tag_unix = std::max(old->last_tag_unix, record.last_tag_unix);
    std::vector<std::string> idx = old->index_digests, src = old->sources;
    MergeUnique(&idx, record.index_digests);
    MergeUnique(&src, record.sources);
    merged.index_digests = std::move(idx);
    merged.sources = std::move(src);
    // Keep known uncompressed sizes when the new record lacks them.
    for (StoredManifest& m : merged.manifests) {
      for (const StoredManifest& om : old->manifests) {
        if (om.digest != m.digest || om.layers.size() != m.layers.size()) continue;
        for (size_t i = 0; i < m.layers.size(); ++i) {
          if (m.layers[i].uncompressed_size() < 0) {
            m.layers[i].set_uncompressed_size(om.layers[i].uncompressed_size());
          }
        }
      }
    }
  } else if (merged.added_unix == 0) {
    merged.added_unix = absl::ToUnixSeconds(absl::Now());
  }
  rocksdb::WriteBatch batch;
  batch.Put(absl::StrCat(kImgPrefix, record.digest), merged.ToJson());
  return impl_->Write(&batch);
}

absl::StatusOr<ImageRecord> RocksDbImageStore::Get(absl::string_view digest) {
  ASSIGN_OR_RETURN(std::optional<ImageRecord> r, impl_->GetRecord(digest));
  if (!r) return absl::NotFoundError(absl::StrCat("No such image: ", digest));
  return std::move(*r);
}

absl::StatusOr<std::vector<ImageRecord>> RocksDbImageStore::List() {
  std::vector<ImageRecord> out;
  absl::Status bad;
  RETURN_IF_ERROR(impl_->Scan(kImgPrefix, [&](absl::string_view key, absl::string_view value) {
    absl::StatusOr<ImageRecord> r = ImageRecord::FromJson(value);
    if (r.ok()) {
      out.push_back(std::move(*r));
    } else if (bad.ok()) {
      bad = common::Annotate(r.status(), key);
    }
  }));
  RETURN_IF_ERROR(bad);
  return out;
}

absl::Status RocksDbImageStore::Delete(absl::string_view digest) {
  absl::MutexLock lock(&impl_->mu);
  rocksdb::WriteBatch batch;
  std::string rev = absl::StrCat(kRevPrefix, digest, "/");
  RETURN_IF_ERROR(impl_->Scan(rev, [&](absl::string_view key, absl::string_view) {
    batch.Delete(std::string(key));
    batch.Delete(absl::StrCat(kRefPrefix, key.substr(rev.size())));
  }));
  batch.Delete(absl::StrCat(kImgPrefix, digest));
  return impl_->Write(&batch);
}

absl::StatusOr<std::string> RocksDbImageStore::SetReference(const oci::Reference& ref,
                                                            absl::string_view digest) {
  if (!ref.has_tag() && !ref.has_digest()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference ", ref.String(), " has neither tag nor digest"));
  }
  absl::MutexLock lock(&impl_->mu);
  ASSIGN_OR_RETURN(std::optional<ImageRecord> rec, impl_->GetRecord(digest));
  if (!rec) return absl::NotFoundError(absl::StrCat("No such image: ", digest));
  if (ref.has_digest() && ref.digest() != rec->digest &&
      std::find(rec->index_digests.begin(), rec->index_digests.end(), ref.digest()) ==
          rec->index_digests.end()) {
    return absl::InvalidArgumentError(absl::StrCat("digest reference ", ref.FamiliarString(),
                                                   " cannot name image ", rec->digest));
  }
  std::string key = absl::StrCat(kRefPrefix, ref.String());
  ASSIGN_OR_RETURN(std::optional<std::string> old, impl_->Read(key));
  rocksdb::WriteBatch batch;
  if (old && *old != digest) batch.Delete(absl::StrCat(kRevPrefix, *old, "/", ref.String()));
  batch.Put(key, std::string(digest));
  batch.Put(absl::StrCat(kRevPrefix, digest, "/", ref.String()), "");
  if (ref.has_tag() && (!old || *old != digest)) {
    rec->last_tag_unix = absl::ToUnixSeconds(absl::Now());
    batch.Put(absl::StrCat(kImgPrefix, digest), rec->ToJson());
  }
  RETURN_IF_ERROR(impl_->Write(&batch));
  return old ? *old : std::string();
}

absl::Status RocksDbImageStore::RemoveReference(const oci::Reference& ref) {
  absl::MutexLock lock(&impl_->mu);
  std::string key = absl::StrCat(kRefPrefix, ref.String());
  ASSIGN_OR_RETURN(std::optional<std::string> old, impl_->Read(key));
  if (!old) return absl::NotFoundError(absl::StrCat("No such image: ", ref.FamiliarString()));
  rocksdb::WriteBatch batch;
  batch.Delete(key);
  batch.Delete(absl::StrCat(kRevPrefix, *old, "/", ref.String()));
  return impl_->Write(&batch);
}

absl::StatusOr<std::string> RocksDbImageStore::ResolveReference(const oci::Reference& ref) {
  ASSIGN_OR_RETURN(std::optional<std::string> v,
                   impl_->Read(absl::StrCat(kRefPrefix, ref.String())));
  if (!v) return absl::NotFoundError(absl::StrCat("No such image: ", ref.FamiliarString()));
  return *v;
}

absl::StatusOr<std::vector<oci::Reference>> RocksDbImageStore::ReferencesTo(
    absl::string_view digest) {
  std::vector<oci::Reference> out;
  std::string rev = absl::StrCat(kRevPrefix, digest, "/");
  absl::Status bad;
  RETURN_IF_ERROR(impl_->Scan(rev, [&](absl::string_view key, absl::string_view) {
    absl::StatusOr<oci::Reference> r = oci::Reference::Parse(key.substr(rev.size()));
    if (r.ok()) {
      out.push_back(std::move(*r));
    } else if (bad.ok()) {
      bad = absl::DataLossError(absl::StrCat("image store: bad reference key ", key));
    }
  }));
  RETURN_IF_ERROR(bad);
  std::sort(out.begin(), out.end());
  return out;
}

// --- Docker semantics ---

namespace {

enum class MatchKind { kId, kReference };

struct Found {
  ImageRecord record;
  MatchKind kind;
};

absl::StatusOr<Found> Find(ImageStore& store, absl::string_view text) {
  absl::string_view hex = text;
  absl::ConsumePrefix(&hex, "sha256:");
  if (oci::IsIdentifier(hex)) {
    std::string full = absl::StrCat("sha256:", hex);
    ASSIGN_OR_RETURN(std::vector<ImageRecord> all, store.List());
    const ImageRecord* best = nullptr;
    for (const ImageRecord& r : all) {
      if (r.Id() != full && r.digest != full) continue;
      if (best == nullptr || r.added_unix > best->added_unix) best = &r;
    }
    if (best == nullptr) return absl::NotFoundError(absl::StrCat("No such image: ", text));
    return Found{*best, MatchKind::kId};
  }
  absl::StatusOr<oci::Reference> ref = oci::Reference::Parse(text);
  if (ref.ok()) {
    oci::Reference r = ref->WithDefaultTag();
    absl::StatusOr<std::string> digest = store.ResolveReference(r);
    if (digest.ok()) {
      ASSIGN_OR_RETURN(ImageRecord rec, store.Get(*digest));
      return Found{std::move(rec), MatchKind::kReference};
    }
    if (digest.status().code() != absl::StatusCode::kNotFound) return digest.status();
    if (r.has_digest()) {
      // Content-addressed: the image may be here under another name.
      ASSIGN_OR_RETURN(std::vector<ImageRecord> all, store.List());
      for (const ImageRecord& rec : all) {
        if (rec.digest == r.digest() ||
            std::find(rec.index_digests.begin(), rec.index_digests.end(), r.digest()) !=
                rec.index_digests.end()) {
          return Found{rec, MatchKind::kId};
        }
      }
    }
  }
  if (IsHexPrefix(hex)) {
    ASSIGN_OR_RETURN(std::vector<ImageRecord> all, store.List());
    std::vector<const ImageRecord*> hits;
    std::set<std::string> ids;
    for (const ImageRecord& rec : all) {
      if (absl::StartsWith(absl::string_view(rec.Id()).substr(7), hex)) {
        hits.push_back(&rec);
        ids.insert(rec.Id());
      }
    }
    if (ids.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("multiple IDs found with provided prefix: ", hex));
    }
    if (!hits.empty()) return Found{*hits.front(), MatchKind::kId};
  }
  if (!ref.ok()) return ref.status();
  return absl::NotFoundError(
      absl::StrCat("No such image: ", ref->WithDefaultTag().FamiliarString()));
}

// Docker's isSingleReference: at most one tag, and every digest reference in its repository.
bool IsSingleReference(const std::vector<oci::Reference>& refs) {
  if (refs.size() <= 1) return refs.size() == 1;
  const oci::Reference* single = nullptr;
  std::set<std::string> canonical;
  for (const oci::Reference& r : refs) {
    if (r.has_digest()) {
      canonical.insert(r.Name());
    } else if (single == nullptr) {
      single = &r;
    } else {
      return false;
    }
  }
  if (single == nullptr) single = &refs[0];
  return canonical.size() == 1 && canonical.count(single->Name()) == 1;
}

}  // namespace

absl::StatusOr<ImageRecord> LookupImage(ImageStore& store, absl::string_view ref_or_id) {
  ASSIGN_OR_RETURN(Found f, Find(store, ref_or_id));
  return std::move(f.record);
}

absl::StatusOr<RemoveResult> RemoveImage(ImageStore& store, absl::string_view text, bool force) {
  ASSIGN_OR_RETURN(Found f, Find(store, text));
  const ImageRecord& rec = f.record;
  RemoveResult result;
  ASSIGN_OR_RETURN(std::vector<oci::Reference> refs, store.ReferencesTo(rec.digest));
  auto untag = [&](const oci::Reference& r) -> absl::Status {
    RETURN_IF_ERROR(store.RemoveReference(r));
    result.untagged.push_back(r.FamiliarString());
    return absl::OkStatus();
  };
  if (f.kind == MatchKind::kReference) {
    oci::Reference named = oci::Reference::Parse(text).value().WithDefaultTag();
    RETURN_IF_ERROR(untag(named));
    ASSIGN_OR_RETURN(refs, store.ReferencesTo(rec.digest));
    if (!named.has_digest()) {
      bool repo_has_tag = false;
      for (const oci::Reference& r : refs) {
        if (!r.has_digest() && r.Name() == named.Name()) repo_has_tag = true;
      }
      if (!repo_has_tag) {
        std::vector<oci::Reference> remaining;
        for (const oci::Reference& r : refs) {
          if (r.has_digest() && r.Name() == named.Name()) {
            RETURN_IF_ERROR(untag(r));
          } else {
            remaining.push_back(r);
          }
        }
        refs = std::move(remaining);
      }
    }
    if (!refs.empty()) return result;
  } else {
    if (IsSingleReference(refs)) {
      for (const oci::Reference& r : refs) RETURN_IF_ERROR(untag(r));
      refs.clear();
    }
    if (!refs.empty()) {
      if (!force) {
        return absl::FailedPreconditionError(
            absl::StrCat("conflict: unable to delete ", ShortId(rec.Id()),
                         " (must be forced) - image is referenced in multiple repositories"));
      }
      for (const oci::Reference& r : refs) RETURN_IF_ERROR(untag(r));
    }
  }
  RETURN_IF_ERROR(store.Delete(rec.digest));
  result.deleted.push_back(rec.Id());
  ASSIGN_OR_RETURN(std::vector<ImageRecord> all, store.List());
  std::set<common::Digest> still_held;
  for (const ImageRecord& other : all) {
    for (const common::Digest& d : other.Blobs()) still_held.insert(d);
  }
  for (const common::Digest& d : rec.Blobs()) {
    if (still_held.count(d) == 0) result.unreferenced_blobs.push_back(d);
  }
  return result;
}

absl::Status TagImage(ImageStore& store, absl::string_view source, absl::string_view target) {
  ASSIGN_OR_RETURN(ImageRecord rec, LookupImage(store, source));
  absl::StatusOr<oci::Reference> ref = oci::Reference::Parse(target);
  if (!ref.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Error parsing reference: \"", target,
                     "\" is not a valid repository/tag: ", ref.status().message()));
  }
  if (ref->has_digest()) {
    return absl::InvalidArgumentError("refusing to create a tag with a digest reference");
  }
  return store.SetReference(ref->WithDefaultTag(), rec.digest).status();
}

// --- DescribeImage ---

namespace {

absl::StatusOr<std::string> ReadSmallBlob(cache::BlobStore& cas, const std::string& oci_digest,
                                          int64_t size, int64_t max, absl::string_view what) {
  if (size > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", oci_digest, " is ", size, " bytes, more than ", max, " allowed"));
  }
  ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(oci_digest, size));
  absl::StatusOr<std::string> data = cas.ReadBlob(d, max);
  if (!data.ok()) return common::Annotate(data.status(), absl::StrCat(what, " ", oci_digest));
  return data;
}

absl::StatusOr<StoredManifest> DescribeManifest(cache::BlobStore& cas, const oci::Descriptor& desc,
                                                const std::vector<farm::v1::Layer>& known,
                                                std::string* created) {
  ASSIGN_OR_RETURN(std::string bytes,
                   ReadSmallBlob(cas, desc.digest, desc.size, kMaxManifestBytes, "manifest"));
  absl::StatusOr<oci::Manifest> m = oci::Manifest::Parse(bytes, desc.media_type);
  if (!m.ok()) return common::Annotate(m.status(), desc.digest);
  if (m->config.media_type != oci::kOciConfig && m->config.media_type != oci::kDockerConfig) {
    return absl::InvalidArgumentError(absl::StrCat("manifest ", desc.digest,
                                                   " is not a container image (config media type ",
                                                   m->config.media_type, ")"));
  }
  ASSIGN_OR_RETURN(std::string config_bytes, ReadSmallBlob(cas, m->config.digest, m->config.size,
                                                           kMaxConfigBytes, "image config"));
  absl::StatusOr<oci::ImageConfig> config = oci::ImageConfig::FromJson(config_bytes);
  if (!config.ok()) return common::Annotate(config.status(), m->config.digest);
  if (config->diff_ids.size() != m->layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "manifest ", desc.digest, " lists ", m->layers.size(), " layers but its config ",
        m->config.digest, " has ", config->diff_ids.size(), " diff_ids"));
  }
  StoredManifest out;
  out.digest = desc.digest;
  out.media_type = m->media_type;
  out.size = desc.size;
  out.config_digest = m->config.digest;
  out.config_media_type = m->config.media_type;
  out.config_size = m->config.size;
  out.platform = oci::PlatformOf(*config);
  std::vector<common::Digest> layer_digests;
  for (size_t i = 0; i < m->layers.size(); ++i) {
    const oci::Descriptor& ld = m->layers[i];
    absl::StatusOr<oci::Compression> c = oci::LayerCompression(ld.media_type);
    if (!c.ok()) {
      return common::Annotate(c.status(), absl::StrCat("manifest ", desc.digest, " layer ", i));
    }
    farm::v1::Layer l;
    l.set_digest(ld.digest);
    l.set_size(ld.size);
    l.set_media_type(ld.media_type);
    l.set_diff_id(config->diff_ids[i]);
    l.set_uncompressed_size(-1);
    for (const farm::v1::Layer& k : known) {
      if (k.digest() == ld.digest && k.uncompressed_size() > 0) {
        l.set_uncompressed_size(k.uncompressed_size());
      }
    }
    out.layers.push_back(std::move(l));
    ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(ld.digest, ld.size));
    layer_digests.push_back(std::move(d));
  }
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas.FindMissing(layer_digests));
  if (!missing.empty()) {
    return absl::NotFoundError(absl::StrCat("layer ", missing[0].OciString(), " of manifest ",
                                            desc.digest, " is not in the CAS"));
  }
  if (created != nullptr && created->empty()) *created = config->created;
  return out;
}

}  // namespace

absl::StatusOr<ImageRecord> DescribeImage(cache::BlobStore& cas, const oci::Descriptor& top,
                                          const std::vector<farm::v1::Layer>& known_layers) {
  ImageRecord rec;
  rec.digest = top.digest;
  rec.size = top.size;
  std::string media_type = top.media_type;
  if (media_type.empty() ||
      (!oci::IsIndexMediaType(media_type) && !oci::IsManifestMediaType(media_type))) {
    ASSIGN_OR_RETURN(std::string bytes,
                     ReadSmallBlob(cas, top.digest, top.size, kMaxManifestBytes, "manifest"));
    ASSIGN_OR_RETURN(media_type, oci::SniffManifestMediaType(bytes, top.media_type));
  }
  rec.media_type = media_type;
  if (oci::IsManifestMediaType(media_type)) {
    oci::Descriptor d = top;
    d.media_type = media_type;
    ASSIGN_OR_RETURN(StoredManifest m, DescribeManifest(cas, d, known_layers, &rec.created));
    rec.manifests.push_back(std::move(m));
    return rec;
  }
  if (!oci::IsIndexMediaType(media_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(top.digest, ": media type ", media_type, " is not an image"));
  }
  ASSIGN_OR_RETURN(std::string bytes,
                   ReadSmallBlob(cas, top.digest, top.size, kMaxManifestBytes, "index"));
  absl::StatusOr<oci::Index> idx = oci::Index::Parse(bytes, media_type);
  if (!idx.ok()) return common::Annotate(idx.status(), top.digest);
  for (const oci::Descriptor& child : idx->manifests) {
    if (!oci::IsManifestMediaType(child.media_type)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "index ", top.digest, ": nested entry ", child.digest, " (", child.media_type,
          ") is not an image manifest; nested indexes are not supported"));
    }
    auto ref_type = child.annotations.find("vnd.docker.reference.type");
    bool attestation =
        ref_type != child.annotations.end() && ref_type->second == "attestation-manifest";
    ASSIGN_OR_RETURN(common::Digest cd, common::Digest::ParseOci(child.digest, child.size));
    ASSIGN_OR_RETURN(bool present, cas.Has(cd));
    if (attestation && !present) continue;
    if (!present) {
      return absl::NotFoundError(
          absl::StrCat("manifest ", child.digest, " of index ", top.digest, " is not in the CAS"));
    }
    if (attestation) continue;  // not an image; its blobs are not part of the record
    absl::StatusOr<StoredManifest> m = DescribeManifest(cas, child, known_layers, &rec.created);
    if (!m.ok()) return m.status();
    if (child.platform) m->platform = child.platform->String();
    rec.manifests.push_back(std::move(*m));
  }
  if (rec.manifests.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("index ", top.digest, " has no image"));
  }
  return rec;
}

}  // namespace farm::scheduler::image
