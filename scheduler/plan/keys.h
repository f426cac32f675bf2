// Cache-key material: how the planner turns what a step depends on into the text lines of its
// key preimage, and the key of a preimage. The rule (which lines, in which order, for which
// instruction) is written once, in planner.h; this file only makes each line canonical, so
// that the same inputs give the same bytes on every machine and no irrelevant detail (mtimes,
// host paths, re-indented continuation lines) leaks into a key.
//
//   std::vector<std::pair<std::string, std::string>> pre = {
//       {"version", kKeyVersion}, {"parent", parent_chain}, {"op", op},
//       {"shell", JsonStringArray({"/bin/sh", "-c"})},
//       {"layer", LayerOptionsLine(layer_options)}};
//   std::string key = KeyOf(pre);  // 64 hex digits
#ifndef FARM_SCHEDULER_PLAN_KEYS_H_
#define FARM_SCHEDULER_PLAN_KEYS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "farm/v1/step.pb.h"
#include "worker/copy/source_tree.h"

namespace farm::scheduler::plan {

// The first line of every preimage; bumping it invalidates every key ever computed.
inline constexpr char kKeyVersion[] = "farm-key-v1";

// sha256 of the preimage lines "name: value\n", in order, as 64 lowercase hex digits.
std::string KeyOf(const std::vector<std::pair<std::string, std::string>>& preimage);

// Collapses runs of unquoted blanks in a shell command into one space and trims it, so that
// re-indenting a continued RUN line does not change its key (the shell sees the same words).
// Blanks inside '…' or "…" and backslash-escaped blanks are kept.
std::string NormalizeShellWhitespace(absl::string_view command);

// A list of strings as a compact JSON array (["a","b"]): the canonical form of argv, SHELL
// and COPY sources in "op"/"shell" lines. Invalid UTF-8 is replaced, never an error.
std::string JsonStringArray(const std::vector<std::string>& values);

// A file mode as four octal digits ("0755"), as modes appear in key lines.
std::string OctalMode(uint32_t mode);

// The "layer" line: every LayerOptions field that changes a layer's bytes, e.g.
// "compression=GZIP level=0 source_date_epoch=unset normalize_permissions=false".
std::string LayerOptionsLine(const farm::v1::LayerOptions& options);

// Chain keys of a stage's starting filesystem (see "chain(FROM …)" in planner.h).
std::string ScratchChain(absl::string_view platform);
std::string ImageChain(absl::string_view platform, const std::vector<std::string>& diff_ids);
// An image that was not (or could not be) resolved: a placeholder keyed by its name.
std::string UnresolvedImageChain(absl::string_view reference, absl::string_view platform);
// COPY --link: its key leaves the parent out, its chain puts it back.
std::string LinkChain(absl::string_view parent_chain, absl::string_view key);

// One entry a COPY/ADD source selects from the build context, as the "inputs" line hashes it:
// "rel\tfile\t<mode>\t<sha256>/<size>[\tlinked <group>]", "rel\tdir\t<mode>",
// "rel\tsymlink\t<target>", "rel\tother". With `exact_modes` (the default: context files keep
// their permission bits) the mode is written in full (OctalMode); without it
// (--normalize-permissions) a file contributes its executable bit ("x" or "-") and a directory
// nothing. A hard-linked file names its group. Owners and mtimes never appear.
// A regular file must carry its digest (the context is hashed before planning); one without
// is written as "unhashed".
std::string ContextEntryLine(absl::string_view rel, const worker::copy::FileInfo& info,
                             bool exact_modes);

}  // namespace farm::scheduler::plan

#endif  // FARM_SCHEDULER_PLAN_KEYS_H_
