// The pieces of the Prometheus text exposition format 0.0.4 that need care: number formatting
// and escaping. Registry::TextExposition() (metrics.h) assembles whole scrapes from them; they
// are public so that tests and other writers (a status page) format values the same way.
//
//   std::string line = absl::StrCat(name, "{path=\"", EscapeLabelValue(path), "\"} ",
//                                   FormatValue(value), "\n");
//
// Format reference: https://prometheus.io/docs/instrumenting/exposition_formats/ (0.0.4).
#ifndef FARM_COMMON_METRICS_TEXT_FORMAT_H_
#define FARM_COMMON_METRICS_TEXT_FORMAT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace farm::common::metrics {

// The Content-Type of a text exposition (what /metrics answers with).
inline constexpr absl::string_view kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// A sample value or an `le` bound: the shortest decimal that reads back as the same double
// ("0.1", "42", "1e+21"), or "NaN", "+Inf", "-Inf".
std::string FormatValue(double value);

// A label value inside double quotes: backslash, double quote and newline are escaped
// (\\, \", \n); everything else, including other UTF-8, is written as is.
std::string EscapeLabelValue(absl::string_view value);

// HELP text: backslash and newline are escaped (\\, \n); double quotes are not.
std::string EscapeHelp(absl::string_view help);

}  // namespace farm::common::metrics

#endif  // FARM_COMMON_METRICS_TEXT_FORMAT_H_
