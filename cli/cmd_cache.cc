// farm cache stats|gc: show and enforce the cache's budget, on a farm-cache server
// (--cache HOST:PORT) or on the embedded store at $FARM_HOME/cache.
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "auth/flags.h"
#include "cache/admin.h"
#include "cache/client/grpc_cache_admin.h"
#include "cache/rocksdb_blob_store.h"
#include "cli/commands.h"
#include "cli/remote.h"
#include "common/farm_home.h"
#include "common/flags.h"
#include "common/fs.h"
#include "nlohmann/json.hpp"

namespace farm::cli {
namespace {

constexpr char kUsage[] =
    "Usage:  farm cache COMMAND [OPTIONS]\n\n"
    "Show and enforce the cache's size budget: a farm-cache server's with --cache HOST:PORT,\n"
    "otherwise the embedded cache in $FARM_HOME/cache.\n\n"
    "Commands:\n"
    "  stats       Show blobs, bytes, the budget, pins and action-cache entries per scope\n"
    "  gc          Evict least-recently-used entries until the cache fits its budget\n\n"
    "Run 'farm cache COMMAND --help' for more information on a command.\n";

// The cache the command works on, and what keeps it open.
struct Target {
  std::unique_ptr<common::HomeLock> lock;
  std::shared_ptr<cache::CacheAdmin> admin;
  bool remote = false;
};

absl::StatusOr<Target> Open(const std::string& address, const auth::ClientAuthOptions& security) {
  Target t;
  if (!address.empty()) {
    cache::client::GrpcCacheAdmin::Options ao;
    ao.security = security;
    if (absl::Status s = auth::ApplyClientEnvironment(&ao.security); !s.ok()) return s;
    auto admin = cache::client::GrpcCacheAdmin::Create(address, ao);
    if (!admin.ok()) return admin.status();
    t.admin = *std::move(admin);
    t.remote = true;
    return t;
  }
  absl::StatusOr<std::string> home = common::FarmHome();
  if (!home.ok()) return home.status();
  auto lock = common::HomeLock::Acquire(*home, absl::InfiniteDuration(),
                                        [](const std::string& m) { std::cerr << m << "\n"; });
  if (!lock.ok()) return lock.status();
  t.lock = *std::move(lock);
  cache::RocksDbStoreOptions options;
  options.dir = common::JoinPath(*home, "cache");
  auto store = cache::RocksDbBlobStore::Create(options);
  if (!store.ok()) return store.status();
  t.admin = *std::move(store);
  return t;
}

std::string Percent(int64_t part, int64_t whole) {
  if (whole <= 0) return "-";
  return absl::StrFormat("%.0f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

nlohmann::json ToJson(const cache::CacheStats& s, bool remote) {
  nlohmann::json j = {
      {"location", s.location},
      {"max_size", s.max_size},
      {"disk_bytes", s.disk_bytes},
      {"blob_count", s.blob_count},
      {"blob_bytes", s.blob_bytes},
      {"pinned_blobs", s.pinned_blobs},
      {"pinned_bytes", s.pinned_bytes},
      {"leases", s.leases},
      {"reserved_bytes", s.reserved_bytes},
      {"evicted_blobs", s.evicted_blobs},
      {"evicted_bytes", s.evicted_bytes},
      {"ac_entries", s.ac_entries},
  };
  j["scopes"] = nlohmann::json::array();
  for (const cache::ScopeStats& sc : s.scopes) {
    j["scopes"].push_back({{"scope", sc.scope}, {"entries", sc.entries}, {"bytes", sc.bytes}});
  }
  if (remote) {
    j["server"] = {{"ac_hits", s.server.ac_hits},
                   {"ac_misses", s.server.ac_misses},
                   {"ac_updates", s.server.ac_updates},
                   {"find_missing_digests", s.server.find_missing_digests},
                   {"find_missing_missing", s.server.find_missing_missing},
                   {"bytes_read", s.server.bytes_read},
                   {"bytes_written", s.server.bytes_written}};
  }
  return j;
}

void PrintStats(const cache::CacheStats& s, bool remote, std::ostream& out) {
  using common::HumanSize;
  auto row = [&out](absl::string_view label, const std::string& value) {
    out << absl::StrFormat("%-14s%s\n", absl::StrCat(label, ":"), value);
  };
  row("Cache", s.location);
  row("Max size", HumanSize(s.max_size));
  row("Disk use", absl::StrCat(HumanSize(s.disk_bytes), " (", Percent(s.disk_bytes, s.max_size),
                               " of max size)"));
  row("Blobs", absl::StrCat(s.blob_count, " (", HumanSize(s.blob_bytes), ")"));
  row("Pinned", absl::StrCat(s.pinned_blobs, " blobs (", HumanSize(s.pinned_bytes), ") by ",
                             s.leases, s.leases == 1 ? " lease" : " leases", " and open reads"));
  if (s.reserved_bytes > 0) row("Writing", HumanSize(s.reserved_bytes));
  row("Evicted", absl::StrCat(s.evicted_blobs, " blobs (", HumanSize(s.evicted_bytes), ")"));
  row("Action cache", absl::StrCat(s.ac_entries, s.ac_entries == 1 ? " entry" : " entries"));
  if (!s.scopes.empty()) {
    size_t width = 5;
    for (const cache::ScopeStats& sc : s.scopes) width = std::max(width, sc.scope.size() + 2);
    out << absl::StrFormat("  %-*s%-10s%s\n", width, "SCOPE", "ENTRIES", "SIZE");
    for (const cache::ScopeStats& sc : s.scopes) {
      out << absl::StrFormat("  %-*s%-10d%s\n", width, sc.scope.empty() ? "\"\"" : sc.scope,
                             sc.entries, HumanSize(sc.bytes));
    }
  }
  if (remote) {
    const cache::ServerCounters& c = s.server;
    row("Server", absl::StrCat(c.ac_hits, " action-cache hits, ", c.ac_misses, " misses, ",
                               c.ac_updates, " updates; ", HumanSize(c.bytes_read), " read, ",
                               HumanSize(c.bytes_written), " written"));
  }
}

int Stats(const Args& args) {
  std::string address;
  bool json = false;
  common::FlagSet fs("farm cache stats [OPTIONS]",
                     "Show the cache's blobs, bytes, budget, pins and action-cache entries");
  auth::ClientAuthOptions security;
  SecurityFlags(fs, &security);  // an admin token: --token-file or $FARM_TOKEN
  fs.String("cache", 0, &address, "A farm-cache server (default: the embedded $FARM_HOME/cache)",
            "HOST:PORT");
  fs.Bool("json", 0, &json, "Print JSON");
  auto pos = fs.Parse(args);
  if (!pos.ok()) {
    std::cerr << "farm cache stats: " << pos.status().message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (!pos->empty()) {
    std::cerr << "farm cache stats: unexpected argument \"" << (*pos)[0] << "\"\n";
    return 2;
  }
  absl::StatusOr<Target> t = Open(address, security);
  if (!t.ok()) {
    std::cerr << "farm cache stats: " << t.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<cache::CacheStats> s = t->admin->Stats();
  if (!s.ok()) {
    std::cerr << "farm cache stats: " << s.status().message() << "\n";
    return 1;
  }
  if (json) {
    std::cout << ToJson(*s, t->remote).dump(2) << "\n";
  } else {
    PrintStats(*s, t->remote, std::cout);
  }
  return 0;
}

int Gc(const Args& args) {
  std::string address;
  int64_t max_size = 0;
  bool json = false;
  common::FlagSet fs("farm cache gc [OPTIONS]",
                     "Evict least-recently-used, unpinned entries until the cache fits its\n"
                     "budget (and compact away what was deleted)");
  auth::ClientAuthOptions security;
  SecurityFlags(fs, &security);  // an admin token: --token-file or $FARM_TOKEN
  fs.String("cache", 0, &address, "A farm-cache server (default: the embedded $FARM_HOME/cache)",
            "HOST:PORT");
  fs.Size("max-size", 0, &max_size, "Set a new budget first (kept from now on), e.g. 20G");
  fs.Bool("json", 0, &json, "Print JSON");
  auto pos = fs.Parse(args);
  if (!pos.ok()) {
    std::cerr << "farm cache gc: " << pos.status().message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (!pos->empty()) {
    std::cerr << "farm cache gc: unexpected argument \"" << (*pos)[0] << "\"\n";
    return 2;
  }
  if (fs.WasSet("max-size") && max_size <= 0) {
    std::cerr << "farm cache gc: --max-size must be positive\n";
    return 2;
  }
  absl::StatusOr<Target> t = Open(address, security);
  if (!t.ok()) {
    std::cerr << "farm cache gc: " << t.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<cache::GcResult> r = t->admin->Gc(cache::GcOptions{max_size});
  if (!r.ok()) {
    std::cerr << "farm cache gc: " << r.status().message() << "\n";
    return 1;
  }
  if (json) {
    nlohmann::json j = {{"evicted_blobs", r->evicted_blobs},
                        {"evicted_bytes", r->evicted_bytes},
                        {"evicted_ac_entries", r->evicted_ac_entries},
                        {"after", ToJson(r->after, t->remote)}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "Evicted " << r->evicted_blobs << " blobs (" << common::HumanSize(r->evicted_bytes)
            << ") and " << r->evicted_ac_entries << " action-cache entries.\n\n";
  PrintStats(r->after, t->remote, std::cout);
  return 0;
}

}  // namespace

int RunCache(const Args& args) {
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string& sub = args[0];
  Args rest(args.begin() + 1, args.end());
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (sub == "stats") return Stats(rest);
  if (sub == "gc") return Gc(rest);
  std::cerr << "farm cache: unknown command \"" << sub
            << "\" (want stats or gc; see farm cache --help)\n";
  return 2;
}

}  // namespace farm::cli
