// farm run: runs an image's entrypoint/command in the sandbox, attached to this terminal, as
// `docker run --rm` does. Nothing the command writes is kept. The command never gets this
// process's terminal: -t gives it a pseudo-terminal of its own, otherwise its stdio are pipes
// (stdin only with -i).
#include <signal.h>
#include <unistd.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_util.h"
#include "oci/config.h"
#include "oci/manifest.h"
#include "scheduler/image/store.h"
#include "worker/emulation.h"
#include "worker/local_step_executor.h"
#include "worker/sandbox_settings.h"

namespace farm::cli {

int RunRun(const Args& args) {
  common::FlagSet fs("farm run [OPTIONS] IMAGE [COMMAND] [ARG...]",
                     "Run a command in a new container from an image (always removed after).\n"
                     "The image's ENTRYPOINT runs with COMMAND ARG... in place of its CMD.");
  std::vector<std::string> env;
  std::string entrypoint, workdir, user, network = "default", platform;
  bool entrypoint_set = false;
  bool rm = true, interactive = false, tty = false, privileged = false;
  fs.Repeated("env", 'e', &env, "Set environment variables (KEY=VALUE, or KEY to copy it)", "list");
  fs.Custom("entrypoint", 0, "string", "Overwrite the default ENTRYPOINT of the image",
            [&](absl::string_view v) {
              entrypoint = std::string(v);
              entrypoint_set = true;
              return absl::OkStatus();
            });
  fs.String("workdir", 'w', &workdir, "Working directory inside the container");
  fs.String("user", 'u', &user, "Username or UID (format: <name|uid>[:<group|gid>])");
  fs.String("network", 0, &network, "Network mode: default, none or host");
  fs.String("platform", 0, &platform,
            "Run this platform's image (os/arch[/variant]; default: this host's; another "
            "architecture runs under QEMU emulation registered with binfmt_misc)");
  fs.Bool("rm", 0, &rm, "Remove the container when it exits (always: farm keeps nothing)");
  fs.Bool("interactive", 'i', &interactive, "Keep STDIN open (relayed; otherwise /dev/null)");
  fs.Bool("tty", 't', &tty,
          "Allocate a pseudo-TTY for the command (its own, in a new session; this terminal "
          "is put in raw mode and relayed)");
  fs.Bool("privileged", 0, &privileged, "Give all capabilities to the command");
  fs.StopAtFirstPositional();
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "run", &positional, &exit_code)) return exit_code;
  if (positional.empty()) {
    std::cerr << "\"farm run\" requires at least 1 argument.\nSee 'farm run --help'.\n\n"
              << "Usage:  farm run [OPTIONS] IMAGE [COMMAND] [ARG...]\n";
    return 2;
  }
  if (network != "default" && network != "none" && network != "host") {
    std::cerr << "farm run: --network must be default, none or host\n";
    return 2;
  }
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (!stores.ok()) return Fail(stores.status());
  absl::StatusOr<scheduler::image::ImageRecord> rec =
      scheduler::image::LookupImage(*stores->images, positional[0]);
  if (!rec.ok()) {
    return Fail(
        absl::Status(rec.status().code(), absl::StrCat("Unable to find image '", positional[0],
                                                       "' locally: ", rec.status().message())));
  }
  oci::Platform want = oci::Platform::Host();
  if (!platform.empty()) {
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(platform);
    if (!p.ok()) return Fail(p.status());
    want = *p;
    absl::Status can = worker::CheckCanRun(want.String());
    if (!can.ok()) return Fail(common::Annotate(can, absl::StrCat("--platform ", platform)));
  }
  absl::StatusOr<const scheduler::image::StoredManifest*> m = rec->ForPlatform(want);
  if (!m.ok()) return Fail(m.status());
  absl::StatusOr<common::Digest> cd =
      common::Digest::ParseOci((*m)->config_digest, (*m)->config_size);
  if (!cd.ok()) return Fail(cd.status());
  absl::StatusOr<std::string> config_bytes = stores->blobs->ReadBlob(*cd);
  if (!config_bytes.ok()) return Fail(config_bytes.status());
  absl::StatusOr<oci::ImageConfig> config = oci::ImageConfig::FromJson(*config_bytes);
  if (!config.ok()) return Fail(config.status());
  const oci::ContainerConfig& c = config->config;

  // argv: ENTRYPOINT + (the given command, or CMD). --entrypoint also drops CMD.
  std::vector<std::string> argv;
  std::vector<std::string> command(positional.begin() + 1, positional.end());
  if (entrypoint_set) {
    if (!entrypoint.empty()) argv.push_back(entrypoint);
  } else if (c.entrypoint) {
    argv = *c.entrypoint;
  }
  if (!command.empty()) {
    argv.insert(argv.end(), command.begin(), command.end());
  } else if (!entrypoint_set && c.cmd) {
    argv.insert(argv.end(), c.cmd->begin(), c.cmd->end());
  }
  if (argv.empty()) {
    return Fail(
        absl::InvalidArgumentError("no command specified (the image has no ENTRYPOINT "
                                   "or CMD and none was given)"));
  }

  oci::ContainerConfig run_config = c;
  for (const std::string& e : env) {
    size_t eq = e.find('=');
    if (eq == std::string::npos) {
      const char* v = getenv(e.c_str());
      if (v != nullptr) run_config.SetEnv(e, v);
    } else {
      run_config.SetEnv(e.substr(0, eq), e.substr(eq + 1));
    }
  }
  worker::LocalStepExecutor::RunOptions ro;
  ro.layers = (*m)->layers;
  for (const std::string& e : run_config.env) ro.env.add_env(e);
  ro.env.set_user(user.empty() ? c.user : user);
  ro.env.set_workdir(!workdir.empty() ? workdir : c.working_dir.empty() ? "/" : c.working_dir);
  ro.env.set_platform(want.String());
  ro.env.set_hostname("farm");
  ro.args = argv;
  ro.network = network;
  ro.insecure = privileged;
  ro.interactive = interactive;
  ro.tty = tty;

  absl::StatusOr<worker::SandboxSettings> settings =
      worker::ReadSandboxConfig(common::JoinPath(stores->home, "sandbox.conf"));
  if (!settings.ok()) return Fail(settings.status());
  worker::LocalStepExecutor::Options wo;
  wo.state_dir = common::JoinPath(stores->home, "worker");
  wo.cas = stores->blobs;
  wo.policy = settings->policy;
  wo.limits = settings->limits;
  absl::StatusOr<std::unique_ptr<worker::LocalStepExecutor>> exec =
      worker::LocalStepExecutor::Create(std::move(wo));
  if (!exec.ok()) return Fail(exec.status());
  // farm waits for the command; the sandbox runner passes the terminal's ^C and ^\ on to it
  // (with -t they reach it as keys through its own terminal).
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  absl::StatusOr<int> status = (*exec)->RunAttached(ro);
  if (!status.ok()) return Fail(status.status());
  return *status;
}

}  // namespace farm::cli
