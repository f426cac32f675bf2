// ImageConfig: the OCI image configuration (application/vnd.oci.image.config.v1+json), with the
// Docker extensions BuildKit keeps in it (Healthcheck, OnBuild, Shell, ArgsEscaped).
//
// The planner changes it instruction by instruction (ENV, CMD, USER, ...); image assembly adds
// diff_ids and history and writes it into the CAS. Fields this model does not know are kept
// verbatim (`extra`), so a base image's config survives a round trip.
//
//   ASSIGN_OR_RETURN(oci::ImageConfig c, oci::ImageConfig::FromJson(bytes));
//   c.config.env.push_back("PATH=/usr/bin");
//   std::string out = c.ToJson();   // canonical: sorted keys, no whitespace
#ifndef FARM_OCI_CONFIG_H_
#define FARM_OCI_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::oci {

struct HealthConfig {
  // ["NONE"], ["CMD", args...], ["CMD-SHELL", command]
  std::vector<std::string> test;
  int64_t interval_ns = 0;
  int64_t timeout_ns = 0;
  int64_t start_period_ns = 0;
  int64_t start_interval_ns = 0;
  int32_t retries = 0;

  friend bool operator==(const HealthConfig& a, const HealthConfig& b) {
    return a.test == b.test && a.interval_ns == b.interval_ns && a.timeout_ns == b.timeout_ns &&
           a.start_period_ns == b.start_period_ns && a.start_interval_ns == b.start_interval_ns &&
           a.retries == b.retries;
  }
};

// The "config" object: what a container started from the image runs with.
struct ContainerConfig {
  std::string user;
  std::set<std::string> exposed_ports;  // "80/tcp", "53/udp"
  std::vector<std::string> env;         // "KEY=VALUE", in order, keys unique
  // Absent and empty differ: `CMD []` is an empty list, no CMD at all is nullopt.
  std::optional<std::vector<std::string>> entrypoint;
  std::optional<std::vector<std::string>> cmd;
  std::set<std::string> volumes;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  bool args_escaped = false;
  std::optional<HealthConfig> healthcheck;
  std::vector<std::string> on_build;  // ONBUILD triggers, as written after "ONBUILD "
  std::optional<std::vector<std::string>> shell;
  // Unknown members of "config", name → raw JSON text.
  std::map<std::string, std::string> extra;

  // Value of `key` in env, or nullopt.
  std::optional<std::string> GetEnv(absl::string_view key) const;
  // Sets `key` (replacing in place, or appending).
  void SetEnv(absl::string_view key, absl::string_view value);
};

struct HistoryEntry {
  std::string created;  // RFC 3339, "" = absent
  std::string created_by;
  std::string author;
  std::string comment;
  bool empty_layer = false;
};

struct ImageConfig {
  std::string created;  // RFC 3339 UTC, e.g. "1970-01-01T00:00:00Z"; "" = absent
  std::string author;
  std::string architecture = "amd64";
  std::string os = "linux";
  std::string variant;
  std::string os_version;
  ContainerConfig config;
  std::vector<std::string> diff_ids;  // rootfs.diff_ids, "sha256:…", bottom to top
  std::vector<HistoryEntry> history;
  // Unknown top-level members, name → raw JSON text.
  std::map<std::string, std::string> extra;

  // Parses an OCI or Docker image config. INVALID_ARGUMENT (with the JSON error's position)
  // on malformed input or wrong member types.
  static absl::StatusOr<ImageConfig> FromJson(absl::string_view json);
  // Canonical JSON: object keys sorted, no insignificant whitespace, empty optional members
  // omitted. The same config always gives the same bytes (the image ID is their digest).
  std::string ToJson() const;
};

// ENTRYPOINT as Docker applies it: sets the entrypoint and resets CMD unless CMD was set by an
// earlier instruction of the same stage (`cmd_set_in_stage`); an inherited CMD never survives
// a new ENTRYPOINT (BuildKit's dispatchEntrypoint, Docker's classic builder alike).
void SetEntrypoint(ContainerConfig* config, std::vector<std::string> entrypoint,
                   bool cmd_set_in_stage);

// "linux/amd64" style platform of a config.
std::string PlatformOf(const ImageConfig& config);

// RFC 3339 UTC text for Unix seconds (the form Docker writes): 0 → "1970-01-01T00:00:00Z".
std::string FormatCreated(int64_t unix_seconds);

}  // namespace farm::oci

#endif  // FARM_OCI_CONFIG_H_
