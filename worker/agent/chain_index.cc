#include "worker/agent/chain_index.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_util.h"
#include "oci/chain_id.h"

namespace farm::worker::agent {
namespace {

// File format, one chain per line: "<chain> <parent chain or -> <diff_id> <last_used>".
constexpr char kHeader[] = "farm-worker chains v1";

bool IsDigest(absl::string_view s) { return absl::StartsWith(s, "sha256:") && s.size() == 71; }

}  // namespace

absl::StatusOr<std::unique_ptr<ChainIndex>> ChainIndex::Load(std::string path, int max_entries) {
  std::unique_ptr<ChainIndex> index(new ChainIndex(std::move(path), std::max(1, max_entries)));
  if (!common::PathExists(index->path_)) return index;
  absl::StatusOr<std::string> text = common::ReadFile(index->path_);
  if (!text.ok()) return common::Annotate(text.status(), "reading the chain index");
  absl::MutexLock lock(&index->mu_);
  bool first = true;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    if (first) {
      first = false;
      if (line == kHeader) continue;
    }
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    int64_t used = 0;
    if (f.size() != 4 || !IsDigest(f[0]) || !(f[1] == "-" || IsDigest(f[1])) || !IsDigest(f[2]) ||
        !absl::SimpleAtoi(f[3], &used)) {
      ++index->skipped_;
      continue;
    }
    Entry e;
    e.parent = f[1] == "-" ? "" : std::string(f[1]);
    e.diff_id = std::string(f[2]);
    e.last_used = used;
    index->entries_[std::string(f[0])] = std::move(e);
    index->clock_ = std::max(index->clock_, used);
  }
  // Depths, for eviction order (children before their parents on ties).
  for (auto& [chain, e] : index->entries_) {
    int depth = 1;
    for (std::string p = e.parent; !p.empty() && depth <= 4096; ++depth) {
      auto it = index->entries_.find(p);
      if (it == index->entries_.end()) break;
      p = it->second.parent;
    }
    e.depth = depth;
  }
  index->EvictLocked();
  return index;
}

void ChainIndex::Record(const std::vector<common::Digest>& diff_ids) {
  absl::MutexLock lock(&mu_);
  int64_t now = ++clock_;
  std::string chain;
  int depth = 0;
  for (const common::Digest& d : diff_ids) {
    std::string diff = d.OciString();
    std::string parent = chain;
    chain = oci::NextChainId(parent, diff);
    Entry& e = entries_[chain];
    e.parent = parent;
    e.diff_id = diff;
    e.depth = ++depth;
    e.last_used = now;
  }
  dirty_ = true;
  EvictLocked();
}

void ChainIndex::EvictLocked() {
  if (static_cast<int>(entries_.size()) <= max_) return;
  std::vector<std::pair<std::pair<int64_t, int>, std::string>> order;
  order.reserve(entries_.size());
  for (const auto& [chain, e] : entries_) order.push_back({{e.last_used, -e.depth}, chain});
  std::sort(order.begin(), order.end());
  size_t excess = entries_.size() - static_cast<size_t>(max_);
  for (size_t i = 0; i < excess; ++i) entries_.erase(order[i].second);
  dirty_ = true;
}

absl::flat_hash_set<std::string> ChainIndex::PresentLocked(
    const absl::flat_hash_set<std::string>& present) {
  // A chain is held when its top layer is and its parent chain is (memoized walk).
  absl::flat_hash_map<std::string, bool> held;
  std::vector<std::string> path;
  for (const auto& [chain, unused] : entries_) {
    std::string c = chain;
    path.clear();
    bool result = true;
    while (!c.empty()) {
      auto memo = held.find(c);
      if (memo != held.end()) {
        result = memo->second;
        break;
      }
      auto it = entries_.find(c);
      if (it == entries_.end() || !present.contains(it->second.diff_id)) {
        result = false;
        if (it != entries_.end()) path.push_back(c);
        break;
      }
      path.push_back(c);
      c = it->second.parent;
    }
    // Everything on the walk shares the answer: a held chain's ancestors are held, and a
    // missing link makes every descendant on the walk missing.
    for (const std::string& p : path) held[p] = result;
  }
  absl::flat_hash_set<std::string> out;
  for (const auto& [chain, is_held] : held) {
    if (is_held) out.insert(chain);
  }
  return out;
}

std::vector<std::string> ChainIndex::HeldLocked(const absl::flat_hash_set<std::string>& present) {
  absl::flat_hash_set<std::string> held = PresentLocked(present);
  std::vector<std::pair<std::pair<int64_t, int>, std::string>> order;
  order.reserve(held.size());
  for (const std::string& c : held) {
    const Entry& e = entries_.at(c);
    order.push_back({{-e.last_used, -e.depth}, c});  // deepest first among equals
  }
  std::sort(order.begin(), order.end());
  if (limit_ > 0 && static_cast<int>(order.size()) > limit_) order.resize(limit_);
  std::vector<std::string> out;
  out.reserve(order.size());
  for (auto& entry : order) out.push_back(std::move(entry.second));
  return out;
}

std::vector<std::string> ChainIndex::Reset(const absl::flat_hash_set<std::string>& present,
                                           int limit) {
  absl::MutexLock lock(&mu_);
  limit_ = limit;
  std::vector<std::string> held = HeldLocked(present);
  reported_ = absl::flat_hash_set<std::string>(held.begin(), held.end());
  return held;
}

ChainIndex::Delta ChainIndex::Diff(const absl::flat_hash_set<std::string>& present) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> list = HeldLocked(present);
  absl::flat_hash_set<std::string> held(list.begin(), list.end());
  Delta d;
  for (const std::string& c : list) {
    if (!reported_.contains(c)) d.added.push_back(c);
  }
  for (const std::string& c : reported_) {
    if (!held.contains(c)) d.removed.push_back(c);
  }
  std::sort(d.removed.begin(), d.removed.end());
  reported_ = std::move(held);
  return d;
}

absl::Status ChainIndex::Save() {
  std::string text;
  {
    absl::MutexLock lock(&mu_);
    if (!dirty_) return absl::OkStatus();
    text = absl::StrCat(kHeader, "\n");
    for (const auto& [chain, e] : entries_) {
      absl::StrAppend(&text, chain, " ", e.parent.empty() ? "-" : e.parent, " ", e.diff_id, " ",
                      e.last_used, "\n");
    }
    dirty_ = false;
  }
  absl::Status s = common::WriteFileAtomic(path_, text, 0600, /*sync=*/false);
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    dirty_ = true;
  }
  return common::Annotate(s, "saving the chain index");
}

int ChainIndex::size() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(entries_.size());
}

}  // namespace farm::worker::agent
