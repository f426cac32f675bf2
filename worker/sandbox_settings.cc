#include "worker/sandbox_settings.h"

#include <cerrno>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "executor/entitlements.h"
#include "worker/network/cidr.h"

namespace farm::worker {
namespace {

struct Setting {
  std::string name;
  std::string value_name;
  std::string help;
  std::function<absl::Status(absl::string_view, SandboxSettings*)> apply;
};

absl::StatusOr<bool> ParseBool(absl::string_view v) {
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  return absl::InvalidArgumentError(absl::StrCat("\"", v, "\": want true or false"));
}

const std::vector<Setting>& Settings() {
  static const std::vector<Setting>* settings = new std::vector<Setting>{
      {"allow-entitlement", "NAME",
       "Permit an entitlement to builds that ask for it (repeatable): network.host "
       "(RUN --network=host), security.insecure (RUN --security=insecure)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         RETURN_IF_ERROR(executor::CheckEntitlementName(v, "allow-entitlement"));
         s->policy.entitlements.insert(std::string(v));
         return absl::OkStatus();
       }},
      {"no-new-privileges", "BOOL",
       "Set no_new_privs for every step: setuid binaries and file capabilities grant nothing "
       "(default false, as Docker)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(s->policy.no_new_privileges, ParseBool(v));
         return absl::OkStatus();
       }},
      {"rootless-steps", "BOOL",
       "Run every RUN step (and farm run) in a user namespace of its own, root in it an "
       "unprivileged subordinate id on this host (needs subid-range or subid-user; Linux 5.19+, "
       "layers on a file system with idmapped mounts: ext4, xfs, btrfs, tmpfs 6.3+)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(s->policy.rootless, ParseBool(v));
         return absl::OkStatus();
       }},
      {"subid-range", "START:COUNT",
       "The host ids rootless steps map container ids 0..65535 to (uids and gids; COUNT >= "
       "65536, START > 0)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(s->policy.subids, ParseSubIdRange(v));
         return absl::OkStatus();
       }},
      {"subid-user", "NAME",
       "Take the rootless steps' range from NAME's lines in /etc/subuid and /etc/subgid (the "
       "first of at least 65536 ids)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(s->policy.subids, SubIdsOfUser(v));
         return absl::OkStatus();
       }},
      {"pids-limit", "N",
       absl::StrCat("Most processes of each RUN step (cgroups; default ", kDefaultPidsLimit,
                    ", best effort; 0 = none)"),
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         int64_t n = 0;
         if (!absl::SimpleAtoi(v, &n) || n < 0) {
           return absl::InvalidArgumentError(absl::StrCat("\"", v, "\": want a count >= 0"));
         }
         s->limits.pids = n;
         if (n == 0) s->policy.default_pids_limit = 0;
         return absl::OkStatus();
       }},
      {"default-network", "MODE",
       "The network of RUN steps without --network: isolated (default: a namespace of their own, "
       "routed out under deny-network/allow-network, never to this host) or host (this host's "
       "network, unisolated)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         if (v != "isolated" && v != "host") {
           return absl::InvalidArgumentError(absl::StrCat("\"", v, "\": want isolated or host"));
         }
         s->policy.isolate_network = v == "isolated";
         return absl::OkStatus();
       }},
      {"deny-network", "CIDR",
       "Addresses steps may not reach (repeatable; the first replaces the default: none "
       "embedded, private ranges on farm-workers; \"none\" clears). Loopback, link-local "
       "(169.254/16), multicast and this host's addresses are always denied",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         if (!s->deny_network_given) s->policy.network.deny.clear();
         s->deny_network_given = true;
         if (v == "none") return absl::OkStatus();
         if (v == "private") {
           for (const network::Cidr& c : network::PrivateRanges()) {
             s->policy.network.deny.push_back(c);
           }
           return absl::OkStatus();
         }
         ASSIGN_OR_RETURN(network::Cidr c, network::Cidr::Parse(v));
         s->policy.network.deny.push_back(c);
         return absl::OkStatus();
       }},
      {"allow-network", "CIDR",
       "Addresses steps may reach despite deny-network (repeatable); one inside an always-denied "
       "range (e.g. 127.0.0.1/32, for ADD <url> from a server on this host's loopback) opens "
       "exactly that",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(network::Cidr c, network::Cidr::Parse(v));
         s->policy.network.allow.push_back(c);
         return absl::OkStatus();
       }},
      {"dns", "ADDRESS",
       "A DNS resolver for steps (repeatable; default: this host's, from /etc/resolv.conf); "
       "steps may reach it on port 53 whatever deny-network says",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(network::IpAddress a, network::IpAddress::Parse(v));
         if (a.v6) return absl::InvalidArgumentError("steps have IPv4 only");
         s->policy.network.dns.push_back(a);
         return absl::OkStatus();
       }},
      {"step-subnet", "CIDR",
       absl::StrCat("The addresses given to steps, a /30 each (default ",
                    network::StepNetworkOptions().pool, ")"),
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(network::Cidr c, network::Cidr::Parse(v));
         if (c.base.v6 || c.prefix > 30 || c.prefix < 16) {
           return absl::InvalidArgumentError("want an IPv4 range from /16 to /30");
         }
         s->policy.network.pool = c.ToString();
         return absl::OkStatus();
       }},
      {"add-max-size", "SIZE", "The largest download of an ADD <url> (default 8G)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(int64_t n, common::ParseSize(v));
         if (n <= 0)
           return absl::InvalidArgumentError(absl::StrCat("\"", v, "\": must be positive"));
         s->policy.add_max_bytes = n;
         return absl::OkStatus();
       }},
      {"extract-max-size", "SIZE",
       "The most one image layer or one ADDed archive may expand to when unpacked (default 64G)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(int64_t n, common::ParseSize(v));
         if (n <= 0)
           return absl::InvalidArgumentError(absl::StrCat("\"", v, "\": must be positive"));
         s->policy.extract_max_bytes = n;
         return absl::OkStatus();
       }},
      {"add-timeout", "DURATION", "The longest download of an ADD <url>, e.g. 10m (default 30m)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         absl::Duration d;
         if (!absl::ParseDuration(std::string(v), &d) || d <= absl::ZeroDuration()) {
           return absl::InvalidArgumentError(
               absl::StrCat("\"", v, "\": want a duration such as 10m"));
         }
         s->policy.add_timeout = d;
         return absl::OkStatus();
       }},
      {"memory-limit", "SIZE", "Memory limit of each RUN step, e.g. 4G (cgroups; default: none)",
       [](absl::string_view v, SandboxSettings* s) -> absl::Status {
         ASSIGN_OR_RETURN(int64_t n, common::ParseSize(v));
         if (n <= 0)
           return absl::InvalidArgumentError(absl::StrCat("\"", v, "\": must be positive"));
         s->limits.memory_bytes = n;
         return absl::OkStatus();
       }},
  };
  return *settings;
}

}  // namespace

absl::Status ApplySandboxSetting(absl::string_view name, absl::string_view value,
                                 SandboxSettings* settings) {
  for (const Setting& s : Settings()) {
    if (name != s.name) continue;
    absl::Status st = s.apply(value, settings);
    if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", st.message()));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown sandbox setting \"", name, "\""));
}

void RegisterSandboxFlags(common::FlagSet* fs, SandboxSettings* settings) {
  for (const Setting& s : Settings()) {
    std::string name = s.name;
    fs->Custom(name, 0, s.value_name, s.help, [name, settings](absl::string_view v) {
      return ApplySandboxSetting(name, v, settings);
    });
  }
}

SandboxSettings WorkerSandboxDefaults() {
  SandboxSettings s;
  s.policy.network.deny = network::PrivateRanges();
  return s;
}

absl::StatusOr<SandboxSettings> ReadSandboxConfig(const std::string& path,
                                                  SandboxSettings defaults) {
  SandboxSettings settings = std::move(defaults);
  if (!common::PathExists(path)) return settings;
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++n;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": want NAME = VALUE"));
    }
    absl::Status s =
        ApplySandboxSetting(absl::StripAsciiWhitespace(line.substr(0, eq)),
                            absl::StripAsciiWhitespace(line.substr(eq + 1)), &settings);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": ", s.message()));
  }
  return settings;
}

std::vector<std::string> SandboxSettingNames() {
  std::vector<std::string> out;
  for (const Setting& s : Settings())
    out.push_back(absl::StrCat(s.name, " ", s.value_name, "  ", s.help));
  return out;
}

}  // namespace farm::worker
