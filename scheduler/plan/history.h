// The image history: each step's `created_by` string, written exactly as BuildKit's
// dockerfile2llb writes it (Go's fmt verbs included), so that `docker history` shows a farm
// image the way it shows one `docker build` made. Layer-producing steps end in " # buildkit".
// Instructions whose entry is just the name and its expanded words joined by spaces (ENV k=v,
// ARG k=v, LABEL k=v, USER, WORKDIR, STOPSIGNAL, ONBUILD, MAINTAINER) are written by the
// planner directly; the forms below are the ones with rules of their own.
//
//   RunCreatedBy({"VERSION=1"}, {"/bin/sh", "-c", "make"})
//       == "RUN |1 VERSION=1 /bin/sh -c make # buildkit"
//   CmdCreatedBy({"/bin/sh", "-c", "serve"}) == R"(CMD ["/bin/sh" "-c" "serve"])"
#ifndef FARM_SCHEDULER_PLAN_HISTORY_H_
#define FARM_SCHEDULER_PLAN_HISTORY_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "oci/config.h"

namespace farm::scheduler::plan {

// RUN: BuildKit's runCommandString. `build_args` are the stage's ARGs that have a value, as
// "NAME=value" in declaration order; when there are any they come first, counted ("|2 A=1
// B=2"). `argv` is the command as run (shell form: the shell and the command line).
std::string RunCreatedBy(const std::vector<std::string>& build_args,
                         const std::vector<std::string>& argv);

// COPY/ADD ("COPY" or "ADD"): the sources as written after expansion (heredocs as "<<NAME"),
// then the destination as written (not made absolute).
std::string CopyCreatedBy(absl::string_view name, const std::vector<std::string>& sources,
                          absl::string_view dest);

// CMD/ENTRYPOINT: fmt's %q of the final argv (the shell prepended for the shell form).
std::string CmdCreatedBy(const std::vector<std::string>& argv);
std::string EntrypointCreatedBy(const std::vector<std::string>& argv);

// SHELL and VOLUME: fmt's %v of the list ([a b]).
std::string ShellCreatedBy(const std::vector<std::string>& shell);
std::string VolumeCreatedBy(const std::vector<std::string>& volumes);

// EXPOSE: fmt's %v of the port set as a Go map, "EXPOSE map[80/tcp:{} 53/udp:{}]" (in the
// set's order, which is Go's sorted map order).
std::string ExposeCreatedBy(const std::set<std::string>& ports);

// HEALTHCHECK: fmt's %q of a *HealthConfig as Docker 20.10's BuildKit writes it: the test as
// %q of []string, the three durations quoted (the start interval a fourth, only when set), the
// int retries as a quoted rune ('\x03', 'A'), e.g.
// HEALTHCHECK &{["CMD-SHELL" "curl -f localhost"] "30s" "0s" "0s" '\x03'}.
// HEALTHCHECK NONE is the test ["NONE"] with every other field zero.
std::string HealthcheckCreatedBy(const oci::HealthConfig& health);

// Go's formatting, as the strings above need it:
std::string GoQuote(absl::string_view s);                     // strconv.Quote
std::string GoQuoteSlice(const std::vector<std::string>& v);  // %q of []string: ["a" "b"]
std::string GoSlice(const std::vector<std::string>& v);       // %v of []string: [a b]
std::string GoDuration(int64_t ns);                           // time.Duration.String()
std::string GoQuoteRune(int64_t r);  // %q of an int: the rune literal ('\x03', 'A', '\'')

}  // namespace farm::scheduler::plan

#endif  // FARM_SCHEDULER_PLAN_HISTORY_H_
