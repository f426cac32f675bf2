#include "common/metrics/naming.h"

#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace farm::common::metrics {

namespace {

bool IsSnakeCase(absl::string_view s) {
  if (s.empty()) return false;
  if (!(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z'))) return false;
  for (char c : s) {
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

absl::Status Invalid(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("metric name \"", name, "\": ", why));
}

// Base units by the words that would replace them.
struct NonBaseUnit {
  absl::string_view word;
  absl::string_view base;
};
constexpr NonBaseUnit kNonBaseUnits[] = {
    {"minutes", "seconds"}, {"hours", "seconds"},   {"days", "seconds"},       {"weeks", "seconds"},
    {"bits", "bytes"},      {"kelvins", "celsius"}, {"inches", "meters"},      {"miles", "meters"},
    {"calories", "joules"}, {"pounds", "grams"},    {"fahrenheit", "celsius"},
};
constexpr absl::string_view kBaseUnits[] = {"seconds", "bytes", "meters",  "metres", "grams",
                                            "joules",  "volts", "amperes", "celsius"};
constexpr absl::string_view kUnitPrefixes[] = {
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi",
    "mega", "mebi", "mibi",  "giga",  "gibi",  "tera", "tebi", "peta",  "pebi"};
constexpr absl::string_view kAbbreviations[] = {"s",  "ms", "us", "ns", "sec", "b", "kb",
                                                "mb", "gb", "tb", "pb", "m",   "h", "d"};
constexpr absl::string_view kTypeWords[] = {"counter", "gauge", "histogram", "summary"};

}  // namespace

absl::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

absl::Status ValidateMetricName(absl::string_view name, MetricType type) {
  if (!IsSnakeCase(name)) {
    return Invalid(name, "want lower-case snake_case ([a-z_][a-z0-9_]*; no colons)");
  }
  if (absl::StartsWith(name, "__")) return Invalid(name, "names starting with __ are reserved");
  std::vector<absl::string_view> words = absl::StrSplit(name, '_', absl::SkipEmpty());
  if (words.empty()) return Invalid(name, "no words");
  for (absl::string_view w : words) {
    for (const NonBaseUnit& u : kNonBaseUnits) {
      if (w == u.word) return Invalid(name, absl::StrCat("use the base unit ", u.base));
    }
    for (absl::string_view prefix : kUnitPrefixes) {
      if (!absl::StartsWith(w, prefix)) continue;
      for (absl::string_view base : kBaseUnits) {
        if (w.substr(prefix.size()) == base) {
          return Invalid(name, absl::StrCat("use the base unit ", base, ", not ", w));
        }
      }
    }
    for (absl::string_view a : kAbbreviations) {
      if (w == a) return Invalid(name, absl::StrCat("spell units out (\"", w, "\")"));
    }
    for (absl::string_view t : kTypeWords) {
      if (w == t) return Invalid(name, "the metric type does not belong in its name");
    }
  }
  const bool total = absl::EndsWith(name, "_total");
  if (type == MetricType::kCounter && (!total || name == "_total")) {
    return Invalid(name, "a counter's name ends in _total");
  }
  if (type != MetricType::kCounter && total) {
    return Invalid(name, "only counters end in _total");
  }
  for (absl::string_view suffix : {"_bucket", "_count", "_sum"}) {
    if (absl::EndsWith(name, suffix)) {
      return Invalid(name, absl::StrCat(suffix, " is reserved for histogram series"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateLabelName(absl::string_view name) {
  if (!IsSnakeCase(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("label name \"", name, "\": want lower-case snake_case ([a-z_][a-z0-9_]*)"));
  }
  if (absl::StartsWith(name, "__")) {
    return absl::InvalidArgumentError(
        absl::StrCat("label name \"", name, "\": names starting with __ are reserved"));
  }
  if (name == "le" || name == "quantile") {
    return absl::InvalidArgumentError(
        absl::StrCat("label name \"", name, "\" is reserved for histograms and summaries"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabelValue(absl::string_view value) {
  if (value.size() > kMaxLabelValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("label value of ", value.size(),
                                                   " bytes (at most ", kMaxLabelValueBytes, ")"));
  }
  if (!IsValidUtf8(value)) return absl::InvalidArgumentError("label value is not valid UTF-8");
  return absl::OkStatus();
}

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // a continuation byte, an overlong 2-byte lead (C0, C1), or F5..FF
    }
    if (i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      const uint8_t cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += len;
  }
  return true;
}

}  // namespace farm::common::metrics
