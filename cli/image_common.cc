#include "cli/image_common.h"

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace farm::cli {

bool ParseFlags(common::FlagSet& fs, const std::vector<std::string>& args, const char* name,
                std::vector<std::string>* positional, int* exit_code) {
  absl::StatusOr<std::vector<std::string>> pos = fs.Parse(args);
  if (!pos.ok()) {
    std::cerr << "farm " << name << ": " << pos.status().message() << "\nSee 'farm " << name
              << " --help'.\n";
    *exit_code = 2;
    return false;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    *exit_code = 0;
    return false;
  }
  *positional = std::move(*pos);
  return true;
}

bool CheckArgs(const std::vector<std::string>& positional, size_t min, size_t max, const char* name,
               const std::string& usage) {
  if (positional.size() >= min && positional.size() <= max) return true;
  std::string want;
  if (min == max) {
    want = absl::StrCat("exactly ", min, " argument", min == 1 ? "" : "s");
  } else if (max == static_cast<size_t>(-1)) {
    want = absl::StrCat("at least ", min, " argument", min == 1 ? "" : "s");
  } else {
    want = absl::StrCat("at most ", max, " argument", max == 1 ? "" : "s");
  }
  std::cerr << "\"farm " << name << "\" requires " << want << ".\nSee 'farm " << name
            << " --help'.\n\nUsage:  " << usage << "\n";
  return false;
}

int Fail(const absl::Status& status) {
  std::cerr << "Error: " << status.message() << "\n";
  return 1;
}

scheduler::registry::RegistryOptions RegistryOptionsFrom(const std::vector<std::string>& insecure) {
  scheduler::registry::RegistryOptions o;
  o.insecure_registries = insecure;
  const char* env = getenv("FARM_INSECURE_REGISTRIES");
  if (env != nullptr) {
    for (absl::string_view r : absl::StrSplit(env, ',', absl::SkipWhitespace())) {
      o.insecure_registries.push_back(std::string(r));
    }
  }
  return o;
}

}  // namespace farm::cli
