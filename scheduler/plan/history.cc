#include "scheduler/plan/history.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace farm::scheduler::plan {

// Go's strconv.Quote for the ASCII/UTF-8 text Dockerfiles hold.
std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

// fmt.Sprintf("%q", []string{...}) → ["a" "b"]
std::string GoQuoteSlice(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const std::string& s : v) q.push_back(GoQuote(s));
  return absl::StrCat("[", absl::StrJoin(q, " "), "]");
}

// fmt.Sprintf("%v", []string{...}) → [a b]
std::string GoSlice(const std::vector<std::string>& v) {
  return absl::StrCat("[", absl::StrJoin(v, " "), "]");
}

// time.Duration.String().
std::string GoDuration(int64_t ns) {
  if (ns == 0) return "0s";
  bool neg = ns < 0;
  uint64_t u = neg ? static_cast<uint64_t>(-ns) : static_cast<uint64_t>(ns);
  auto frac = [](uint64_t v, uint64_t unit, const char* suffix) {
    std::string s = std::to_string(v / unit);
    uint64_t rem = v % unit;
    if (rem) {
      std::string f = std::to_string(rem);
      int width = 0;
      for (uint64_t x = unit; x > 1; x /= 10) ++width;
      f = std::string(width - f.size(), '0') + f;
      while (!f.empty() && f.back() == '0') f.pop_back();
      s += "." + f;
    }
    return s + suffix;
  };
  std::string out;
  if (u < 1000) {
    out = std::to_string(u) + "ns";
  } else if (u < 1000000) {
    out = frac(u, 1000, "\xC2\xB5s");
  } else if (u < 1000000000) {
    out = frac(u, 1000000, "ms");
  } else {
    uint64_t secs = u / 1000000000;
    uint64_t sub = u % 1000000000;
    uint64_t h = secs / 3600, m = (secs / 60) % 60, s = secs % 60;
    if (h) absl::StrAppend(&out, h, "h");
    if (h || m) absl::StrAppend(&out, m, "m");
    out += frac(s * 1000000000 + sub, 1000000000, "s");
  }
  return neg ? "-" + out : out;
}

std::string RunCreatedBy(const std::vector<std::string>& build_args,
                         const std::vector<std::string>& argv) {
  std::vector<std::string> hist;
  if (!build_args.empty()) {
    hist.push_back(absl::StrCat("|", build_args.size()));
    hist.insert(hist.end(), build_args.begin(), build_args.end());
  }
  hist.insert(hist.end(), argv.begin(), argv.end());
  return absl::StrCat("RUN ", absl::StrJoin(hist, " "), " # buildkit");
}

std::string CopyCreatedBy(absl::string_view name, const std::vector<std::string>& sources,
                          absl::string_view dest) {
  std::vector<std::string> hist = {std::string(name)};
  hist.insert(hist.end(), sources.begin(), sources.end());
  hist.push_back(std::string(dest));
  return absl::StrCat(absl::StrJoin(hist, " "), " # buildkit");
}

std::string CmdCreatedBy(const std::vector<std::string>& argv) {
  return absl::StrCat("CMD ", GoQuoteSlice(argv));
}

std::string EntrypointCreatedBy(const std::vector<std::string>& argv) {
  return absl::StrCat("ENTRYPOINT ", GoQuoteSlice(argv));
}

std::string ShellCreatedBy(const std::vector<std::string>& shell) {
  return absl::StrCat("SHELL ", GoSlice(shell));
}

std::string VolumeCreatedBy(const std::vector<std::string>& volumes) {
  return absl::StrCat("VOLUME ", GoSlice(volumes));
}

std::string ExposeCreatedBy(const std::set<std::string>& ports) {
  std::vector<std::string> m;
  for (const std::string& p : ports) m.push_back(p + ":{}");
  return absl::StrCat("EXPOSE map[", absl::StrJoin(m, " "), "]");
}

std::string GoQuoteRune(int64_t r) {
  switch (r) {
    case '\a':
      return "'\\a'";
    case '\b':
      return "'\\b'";
    case '\f':
      return "'\\f'";
    case '\n':
      return "'\\n'";
    case '\r':
      return "'\\r'";
    case '\t':
      return "'\\t'";
    case '\v':
      return "'\\v'";
    case '\'':
      return "'\\''";
    case '\\':
      return "'\\\\'";
  }
  char buf[16];
  if (r >= 0x20 && r < 0x7f) {
    snprintf(buf, sizeof(buf), "'%c'", static_cast<char>(r));
  } else if (r >= 0 && r < 0x100) {
    snprintf(buf, sizeof(buf), "'\\x%02x'", static_cast<unsigned>(r));
  } else {
    snprintf(buf, sizeof(buf), "'\\u%04x'", static_cast<unsigned>(r & 0xffff));
  }
  return buf;
}

std::string HealthcheckCreatedBy(const oci::HealthConfig& h) {
  // Docker's HealthConfig as Docker's BuildKit (v0.8, Docker 20.10) formats it: the start
  // interval, a field newer BuildKit added, only when it is set.
  std::string durations =
      absl::StrCat("\"", GoDuration(h.interval_ns), "\" \"", GoDuration(h.timeout_ns), "\" \"",
                   GoDuration(h.start_period_ns), "\"");
  if (h.start_interval_ns != 0) {
    absl::StrAppend(&durations, " \"", GoDuration(h.start_interval_ns), "\"");
  }
  return absl::StrCat("HEALTHCHECK &{", GoQuoteSlice(h.test), " ", durations, " ",
                      GoQuoteRune(h.retries), "}");
}

}  // namespace farm::scheduler::plan
