#include "common/flags.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace farm::common {

FlagSet::FlagSet(std::string usage, std::string description)
    : usage_(std::move(usage)), description_(std::move(description)) {}

void FlagSet::Add(Flag flag) { flags_.push_back(std::move(flag)); }

void FlagSet::String(absl::string_view name, char short_name, std::string* out,
                     absl::string_view help, absl::string_view value_name) {
  Flag f{std::string(name), short_name, Kind::kString, std::string(value_name), std::string(help)};
  f.set = [out](absl::string_view v) {
    *out = std::string(v);
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Bool(absl::string_view name, char short_name, bool* out, absl::string_view help) {
  Flag f{std::string(name), short_name, Kind::kBool, "", std::string(help)};
  f.bool_out = out;
  std::string n(name);
  f.set = [out, n](absl::string_view v) {
    if (v == "true" || v == "1") {
      *out = true;
    } else if (v == "false" || v == "0") {
      *out = false;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value \"", v, "\" for flag --", n, ": want true or false"));
    }
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Int(absl::string_view name, char short_name, int64_t* out, absl::string_view help) {
  Flag f{std::string(name), short_name, Kind::kInt, "int", std::string(help)};
  std::string n(name);
  f.set = [out, n](absl::string_view v) {
    if (!absl::SimpleAtoi(v, out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value \"", v, "\" for flag --", n, ": want an integer"));
    }
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Repeated(absl::string_view name, char short_name, std::vector<std::string>* out,
                       absl::string_view help, absl::string_view value_name) {
  Flag f{std::string(name), short_name, Kind::kRepeated, std::string(value_name),
         std::string(help)};
  f.set = [out](absl::string_view v) {
    out->emplace_back(v);
    return absl::OkStatus();
  };
  Add(std::move(f));
}

void FlagSet::Size(absl::string_view name, char short_name, int64_t* out, absl::string_view help) {
  std::string n(name);
  Custom(name, short_name, "bytes", help, [out, n](absl::string_view v) -> absl::Status {
    absl::StatusOr<int64_t> s = ParseSize(v);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", n, ": ", s.status().message()));
    }
    *out = *s;
    return absl::OkStatus();
  });
}

void FlagSet::Custom(absl::string_view name, char short_name, absl::string_view value_name,
                     absl::string_view help, std::function<absl::Status(absl::string_view)> set) {
  Flag f{std::string(name), short_name, Kind::kCustom, std::string(value_name), std::string(help)};
  f.set = std::move(set);
  Add(std::move(f));
}

FlagSet::Flag* FlagSet::Find(absl::string_view name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

FlagSet::Flag* FlagSet::FindShort(char c) {
  for (Flag& f : flags_) {
    if (f.short_name == c) return &f;
  }
  return nullptr;
}

bool FlagSet::WasSet(absl::string_view name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.was_set;
  }
  return false;
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> positionals;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positionals.insert(positionals.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positionals.push_back(arg);
      if (stop_at_first_positional_) {
        positionals.insert(positionals.end(), args.begin() + i + 1, args.end());
        break;
      }
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return positionals;
    }
    if (absl::StartsWith(arg, "--")) {
      absl::string_view body = absl::string_view(arg).substr(2);
      size_t eq = body.find('=');
      absl::string_view name = body.substr(0, eq);
      Flag* f = Find(name);
      if (f == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("unknown flag: --", name));
      }
      f->was_set = true;
      if (eq != absl::string_view::npos) {
        RETURN_IF_ERROR(f->set(body.substr(eq + 1)));
      } else if (f->kind == Kind::kBool) {
        RETURN_IF_ERROR(f->set("true"));
      } else {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(absl::StrCat("flag needs an argument: --", name));
        }
        RETURN_IF_ERROR(f->set(args[++i]));
      }
      continue;
    }
    // Short flags: -q, -qv (grouped booleans), -t value, -tvalue, -t=value.
    for (size_t j = 1; j < arg.size(); ++j) {
      char c = arg[j];
      if (c == 'h') {
        help_requested_ = true;
        return positionals;
      }
      Flag* f = FindShort(c);
      if (f == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown shorthand flag: '", std::string(1, c), "' in ", arg));
      }
      f->was_set = true;
      if (f->kind == Kind::kBool) {
        if (j + 1 < arg.size() && arg[j + 1] == '=') {
          RETURN_IF_ERROR(f->set(absl::string_view(arg).substr(j + 2)));
          break;
        }
        RETURN_IF_ERROR(f->set("true"));
        continue;
      }
      absl::string_view rest = absl::string_view(arg).substr(j + 1);
      if (!rest.empty()) {
        absl::ConsumePrefix(&rest, "=");
        RETURN_IF_ERROR(f->set(rest));
      } else {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "flag needs an argument: '", std::string(1, c), "' in -", std::string(1, c)));
        }
        RETURN_IF_ERROR(f->set(args[++i]));
      }
      break;
    }
  }
  return positionals;
}

std::string FlagSet::Help() const {
  std::string out = absl::StrCat("Usage:  ", usage_, "\n\n", description_, "\n");
  if (flags_.empty()) return out;
  std::vector<std::pair<std::string, std::string>> rows;
  size_t width = 0;
  for (const Flag& f : flags_) {
    std::string left =
        f.short_name ? absl::StrCat("-", std::string(1, f.short_name), ", ") : std::string("    ");
    absl::StrAppend(&left, "--", f.name);
    if (f.kind != Kind::kBool) absl::StrAppend(&left, " ", f.value_name);
    width = std::max(width, left.size());
    rows.emplace_back(std::move(left), f.help);
  }
  absl::StrAppend(&out, "\nOptions:\n");
  for (const auto& [left, help] : rows) {
    absl::StrAppend(&out, "  ", left, std::string(width - left.size() + 3, ' '), help, "\n");
  }
  return out;
}

absl::StatusOr<int64_t> ParseSize(absl::string_view text) {
  std::string t = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  size_t i = 0;
  while (i < t.size() && absl::ascii_isdigit(t[i])) ++i;
  int64_t n;
  if (i == 0 || !absl::SimpleAtoi(t.substr(0, i), &n)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid size \"", text,
                                                   "\": want a number with an optional unit "
                                                   "(K, M, G, T; e.g. 10G)"));
  }
  std::string unit = t.substr(i);
  int shift = 0;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    shift = 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    shift = 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    shift = 30;
  } else if (unit == "T" || unit == "TB" || unit == "TIB") {
    shift = 40;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid size unit \"", unit, "\" in \"", text, "\": want K, M, G or T"));
  }
  if (shift > 0 && n > (INT64_MAX >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("size \"", text, "\" is too large"));
  }
  return n << shift;
}

std::string HumanSize(int64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000.0 && u < 5) {
    v /= 1000.0;
    ++u;
  }
  if (u == 0) return absl::StrCat(bytes, "B");
  // docker prints 4 significant digits: "1.234GB", "12.34MB", "123.4kB".
  return absl::StrFormat("%.4g%s", v, kUnits[u]);
}

std::string HumanBinarySize(int64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  if (u == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.4g %s", v, kUnits[u]);
}

}  // namespace farm::common
