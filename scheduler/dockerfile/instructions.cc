#include "scheduler/dockerfile/instructions.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace farm::scheduler::dockerfile {

namespace {

const char* const kInstructions[] = {"add",        "arg",     "cmd",    "copy",        "entrypoint",
                                     "env",        "expose",  "from",   "healthcheck", "label",
                                     "maintainer", "onbuild", "run",    "shell",       "stopsignal",
                                     "user",       "volume",  "workdir"};

int Levenshtein(absl::string_view a, absl::string_view b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string Suggest(absl::string_view word) {
  std::string lower = absl::AsciiStrToLower(word);
  std::string best;
  int best_d = 3;
  for (const char* k : kInstructions) {
    int d = Levenshtein(lower, k);
    if (d < best_d) {
      best_d = d;
      best = absl::AsciiStrToUpper(k);
    }
  }
  return best;
}

// BuildKit's BFlags: --name=value (string, strings) and --name[=true|false] (bool).
class Flags {
 public:
  enum class Type { kBool, kString, kStrings };
  Flags(const Node& node, const std::string& filename) : node_(node), filename_(filename) {}

  void Add(const std::string& name, Type type) { defs_[name] = type; }

  absl::Status Parse() {
    for (size_t i = 0; i < node_.flags.size(); ++i) {
      std::string arg = node_.flags[i];
      Position pos = i < node_.flag_positions.size() ? node_.flag_positions[i] : node_.start;
      if (!absl::StartsWith(arg, "--")) {
        return ErrorAt(filename_, pos, absl::StrCat("arg should start with -- : ", arg));
      }
      if (arg == "--") return absl::OkStatus();
      arg = arg.substr(2);
      std::string value;
      size_t eq = arg.find('=');
      bool has_value = eq != std::string::npos;
      if (has_value) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
      auto def = defs_.find(arg);
      if (def == defs_.end()) {
        std::string msg = absl::StrCat("unknown flag: ", arg, " (", Upper(), " accepts ",
                                       defs_.empty() ? "no flags" : Known(), ")");
        return ErrorAt(filename_, pos, msg);
      }
      if (def->second != Type::kStrings && used_.count(arg)) {
        return ErrorAt(filename_, pos, absl::StrCat("duplicate flag specified: ", arg));
      }
      switch (def->second) {
        case Type::kBool: {
          if (has_value && value.empty()) {
            return ErrorAt(filename_, pos, absl::StrCat("missing a value on flag: ", arg));
          }
          std::string lower = absl::AsciiStrToLower(value);
          if (lower.empty()) lower = "true";
          if (lower != "true" && lower != "false") {
            return ErrorAt(
                filename_, pos,
                absl::StrCat("expecting boolean value for flag ", arg, ", not: ", value));
          }
          used_[arg] = {lower};
          break;
        }
        case Type::kString:
          if (!has_value) {
            return ErrorAt(filename_, pos, absl::StrCat("missing a value on flag: ", arg));
          }
          used_[arg] = {value};
          break;
        case Type::kStrings:
          if (!has_value) {
            return ErrorAt(filename_, pos, absl::StrCat("missing a value on flag: ", arg));
          }
          used_[arg].push_back(value);
          break;
      }
    }
    return absl::OkStatus();
  }

  std::string String(const std::string& name) const {
    auto it = used_.find(name);
    return it == used_.end() ? std::string() : it->second.back();
  }
  bool Bool(const std::string& name) const { return String(name) == "true"; }
  bool Has(const std::string& name) const { return used_.count(name) > 0; }
  std::vector<std::string> Strings(const std::string& name) const {
    auto it = used_.find(name);
    return it == used_.end() ? std::vector<std::string>() : it->second;
  }

 private:
  std::string Upper() const { return absl::AsciiStrToUpper(node_.keyword); }
  std::string Known() const {
    std::vector<std::string> names;
    for (const auto& [k, v] : defs_) names.push_back("--" + k);
    return absl::StrJoin(names, ", ");
  }
  const Node& node_;
  const std::string& filename_;
  std::map<std::string, Type> defs_;
  std::map<std::string, std::vector<std::string>> used_;
};

CommandLine ShellDependent(const Node& n) {
  CommandLine c;
  c.prepend_shell = !n.json;
  if (n.json) {
    c.args = n.args;
  } else if (!n.args.empty()) {
    c.args = {absl::StrJoin(n.args, " ")};
  }
  return c;
}

class Builder {
 public:
  Builder(const Node& n, const std::string& filename) : n_(n), filename_(filename) {}

  absl::StatusOr<Instruction> Build() {
    Instruction ins;
    ins.name = absl::AsciiStrToUpper(n_.keyword);
    ins.original = n_.original;
    ins.pos = n_.start;
    ins.end_line = n_.end_line;
    const std::string& k = n_.keyword;
    absl::Status s;
    if (k == "run") {
      s = Run(&ins);
    } else if (k == "cmd") {
      s = Cmd(&ins);
    } else if (k == "entrypoint") {
      s = Entrypoint(&ins);
    } else if (k == "shell") {
      s = Shell(&ins);
    } else if (k == "label") {
      s = Kvps(&ins, "LABEL");
    } else if (k == "env") {
      s = Kvps(&ins, "ENV");
    } else if (k == "maintainer") {
      s = One(&ins, "MAINTAINER");
    } else if (k == "expose") {
      s = Expose(&ins);
    } else if (k == "add" || k == "copy") {
      s = Copy(&ins, k == "add");
    } else if (k == "volume") {
      s = Volume(&ins);
    } else if (k == "user") {
      s = One(&ins, "USER");
    } else if (k == "workdir") {
      s = One(&ins, "WORKDIR");
    } else if (k == "arg") {
      s = Arg(&ins);
    } else if (k == "onbuild") {
      s = Onbuild(&ins);
    } else if (k == "stopsignal") {
      s = One(&ins, "STOPSIGNAL");
    } else if (k == "healthcheck") {
      s = Healthcheck(&ins);
    } else {
      std::string msg = absl::StrCat("unknown instruction: ", n_.command);
      std::string hint = Suggest(n_.command);
      if (!hint.empty()) absl::StrAppend(&msg, " (did you mean ", hint, "?)");
      return Err(msg);
    }
    if (!s.ok()) return s;
    return ins;
  }

 private:
  absl::Status Err(absl::string_view msg) const { return ErrorAt(filename_, n_.start, msg); }
  absl::Status ErrArg(size_t i, absl::string_view msg) const {
    return ErrorAt(filename_, i < n_.arg_positions.size() ? n_.arg_positions[i] : n_.start, msg);
  }
  absl::Status NoFlags() {
    Flags f(n_, filename_);
    return f.Parse();
  }
  absl::Status AtLeastOne(absl::string_view name) const {
    return Err(absl::StrCat(name, " requires at least one argument"));
  }

  absl::Status Run(Instruction* ins) {
    Flags f(n_, filename_);
    f.Add("mount", Flags::Type::kStrings);
    f.Add("network", Flags::Type::kString);
    f.Add("security", Flags::Type::kString);
    absl::Status s = f.Parse();
    if (!s.ok()) return s;
    RunCmd c;
    c.command = ShellDependent(n_);
    if (c.command.args.empty() && n_.heredocs.empty()) return AtLeastOne("RUN");
    c.mounts = f.Strings("mount");
    c.network = f.String("network");
    c.security = f.String("security");
    c.heredocs = n_.heredocs;
    ins->command = std::move(c);
    return absl::OkStatus();
  }

  absl::Status Cmd(Instruction* ins) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    ins->command = CmdCmd{ShellDependent(n_)};
    return absl::OkStatus();
  }

  absl::Status Entrypoint(Instruction* ins) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    ins->command = EntrypointCmd{ShellDependent(n_)};
    return absl::OkStatus();
  }

  absl::Status Shell(Instruction* ins) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    CommandLine c = ShellDependent(n_);
    if (c.args.empty()) return AtLeastOne("SHELL");
    if (!n_.json) return Err("SHELL requires the arguments to be in JSON form");
    ins->command = ShellCmd{c.args};
    return absl::OkStatus();
  }

  absl::Status Kvps(Instruction* ins, absl::string_view name) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    if (n_.key_values.empty()) return AtLeastOne(name);
    std::vector<KeyValuePair> kvs;
    for (size_t i = 0; i < n_.key_values.size(); ++i) {
      const KeyValue& kv = n_.key_values[i];
      if (kv.key.empty()) return ErrArg(i, absl::StrCat(name, " names can not be blank"));
      kvs.push_back(KeyValuePair{kv.key, kv.value});
    }
    if (name == "ENV") {
      ins->command = EnvCmd{std::move(kvs)};
    } else {
      ins->command = LabelCmd{std::move(kvs)};
    }
    return absl::OkStatus();
  }

  absl::Status One(Instruction* ins, absl::string_view name) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    if (n_.args.size() != 1) return Err(absl::StrCat(name, " requires exactly one argument"));
    const std::string& v = n_.args[0];
    if (name == "MAINTAINER") {
      ins->command = MaintainerCmd{v};
    } else if (name == "USER") {
      ins->command = UserCmd{v};
    } else if (name == "WORKDIR") {
      ins->command = WorkdirCmd{v};
    } else {
      ins->command = StopSignalCmd{v};
    }
    return absl::OkStatus();
  }

  absl::Status Expose(Instruction* ins) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    if (n_.args.empty()) return AtLeastOne("EXPOSE");
    ins->command = ExposeCmd{n_.args};
    return absl::OkStatus();
  }

  absl::Status Volume(Instruction* ins) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    if (n_.args.empty()) return AtLeastOne("VOLUME");
    VolumeCmd c;
    for (size_t i = 0; i < n_.args.size(); ++i) {
      std::string v(absl::StripAsciiWhitespace(n_.args[i]));
      if (v.empty()) return ErrArg(i, "VOLUME specified can not be an empty string");
      c.volumes.push_back(std::move(v));
    }
    ins->command = std::move(c);
    return absl::OkStatus();
  }

  absl::Status Arg(Instruction* ins) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    if (n_.args.empty()) return AtLeastOne("ARG");
    ArgCmd c;
    for (size_t i = 0; i < n_.args.size(); ++i) {
      const std::string& a = n_.args[i];
      ArgDef d;
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        d.key = a.substr(0, eq);
        d.value = a.substr(eq + 1);
      } else {
        d.key = a;
      }
      if (d.key.empty()) return ErrArg(i, "ARG names can not be blank");
      c.args.push_back(std::move(d));
    }
    ins->command = std::move(c);
    return absl::OkStatus();
  }

  absl::Status Onbuild(Instruction* ins) {
    absl::Status s = NoFlags();
    if (!s.ok()) return s;
    if (!n_.onbuild) return AtLeastOne("ONBUILD");
    std::string trigger = absl::AsciiStrToUpper(n_.onbuild->keyword);
    if (trigger == "ONBUILD") return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    if (trigger == "MAINTAINER" || trigger == "FROM") {
      return Err(absl::StrCat(trigger, " isn't allowed as an ONBUILD trigger"));
    }
    // The trigger must itself be a valid instruction: check it now, not in a child build.
    absl::StatusOr<Instruction> inner = Builder(*n_.onbuild, filename_).Build();
    if (!inner.ok()) return inner.status();
    std::string expr = n_.onbuild->original;
    for (const Heredoc& h : n_.heredocs) absl::StrAppend(&expr, "\n", h.content, h.name);
    ins->command = OnbuildCmd{std::move(expr)};
    return absl::OkStatus();
  }

  absl::Status Healthcheck(Instruction* ins) {
    if (n_.args.empty()) return Err("HEALTHCHECK requires at least one argument");
    HealthcheckCmd c;
    std::string typ = absl::AsciiStrToUpper(n_.args[0]);
    if (typ == "NONE") {
      if (n_.args.size() != 1) return Err("HEALTHCHECK NONE takes no arguments");
      if (!n_.flags.empty()) return Err("HEALTHCHECK NONE takes no options");
      c.none = true;
      c.test.args = {"NONE"};
      ins->command = std::move(c);
      return absl::OkStatus();
    }
    Flags f(n_, filename_);
    f.Add("interval", Flags::Type::kString);
    f.Add("timeout", Flags::Type::kString);
    f.Add("start-period", Flags::Type::kString);
    f.Add("start-interval", Flags::Type::kString);
    f.Add("retries", Flags::Type::kString);
    absl::Status s = f.Parse();
    if (!s.ok()) return s;
    if (typ != "CMD") {
      return ErrArg(0, absl::StrCat("Unknown type \"", n_.args[0], "\" in HEALTHCHECK (try CMD)"));
    }
    std::vector<std::string> cmd(n_.args.begin() + 1, n_.args.end());
    if (cmd.empty()) return Err("Missing command after HEALTHCHECK CMD");
    c.test.prepend_shell = !n_.json;
    if (n_.json) {
      c.test.args = {"CMD"};
      c.test.args.insert(c.test.args.end(), cmd.begin(), cmd.end());
    } else {
      c.test.args = {"CMD-SHELL", absl::StrJoin(cmd, " ")};
    }
    struct {
      const char* name;
      int64_t* out;
    } durations[] = {{"interval", &c.interval_ns},
                     {"timeout", &c.timeout_ns},
                     {"start-period", &c.start_period_ns},
                     {"start-interval", &c.start_interval_ns}};
    for (auto& d : durations) {
      std::string v = f.String(d.name);
      if (v.empty()) continue;
      absl::StatusOr<int64_t> ns = ParseGoDuration(v);
      if (!ns.ok()) {
        return Err(absl::StrCat("--", d.name, ": ", ns.status().message()));
      }
      if (*ns != 0 && *ns < 1000000) {
        return Err(absl::StrCat("Interval \"", d.name, "\" cannot be less than 1ms"));
      }
      if (*ns < 0) return Err(absl::StrCat("--", d.name, " cannot be negative"));
      *d.out = *ns;
    }
    std::string retries = f.String("retries");
    if (!retries.empty()) {
      int64_t r;
      if (!absl::SimpleAtoi(retries, &r) || r > INT32_MAX || r < INT32_MIN) {
        return Err(absl::StrCat("--retries: invalid number \"", retries, "\""));
      }
      if (r < 0) return Err(absl::StrCat("--retries cannot be negative (", r, ")"));
      c.retries = static_cast<int32_t>(r);
    }
    ins->command = std::move(c);
    return absl::OkStatus();
  }

  absl::Status Copy(Instruction* ins, bool add) {
    Flags f(n_, filename_);
    f.Add("chown", Flags::Type::kString);
    f.Add("chmod", Flags::Type::kString);
    f.Add("link", Flags::Type::kBool);
    f.Add("exclude", Flags::Type::kStrings);
    if (add) {
      f.Add("keep-git-dir", Flags::Type::kBool);
      f.Add("checksum", Flags::Type::kString);
      f.Add("unpack", Flags::Type::kBool);
    } else {
      f.Add("from", Flags::Type::kString);
      f.Add("parents", Flags::Type::kBool);
    }
    absl::Status s = f.Parse();
    if (!s.ok()) return s;
    const char* name = add ? "ADD" : "COPY";
    if (n_.args.size() < 2) {
      return Err(absl::StrCat(name,
                              " requires at least two arguments, but only one was provided. "
                              "Destination could not be determined."));
    }
    CopyCmd c;
    c.add = add;
    c.json = n_.json;
    c.dest = n_.args.back();
    if (!n_.json) {
      absl::StatusOr<Heredoc> h = ParseHeredocWord(c.dest);
      if (h.ok() && !h->name.empty()) {
        return ErrArg(n_.args.size() - 1,
                      absl::StrCat(name, " cannot accept a heredoc as a destination"));
      }
    }
    for (size_t i = 0; i + 1 < n_.args.size(); ++i) {
      const std::string& src = n_.args[i];
      if (!n_.json) {
        absl::StatusOr<Heredoc> h = ParseHeredocWord(src);
        if (!h.ok()) return ErrArg(i, h.status().message());
        if (!h->name.empty()) {
          bool found = false;
          for (const Heredoc& doc : n_.heredocs) {
            if (doc.name == h->name) {
              Heredoc body = doc;
              if (body.chomp) body.content = ChompHeredocContent(body.content);
              c.heredocs.push_back(std::move(body));
              found = true;
              break;
            }
          }
          if (!found) return ErrArg(i, absl::StrCat("heredoc \"", h->name, "\" has no body"));
          c.sources.push_back(absl::StrCat("<<", h->name));
          continue;
        }
      }
      c.sources.push_back(src);
    }
    c.chown = f.String("chown");
    c.chmod = f.String("chmod");
    c.link = f.Bool("link");
    c.excludes = f.Strings("exclude");
    if (add) {
      c.keep_git_dir = f.Bool("keep-git-dir");
      c.checksum = f.String("checksum");
      if (f.Has("unpack")) c.unpack = f.Bool("unpack");
    } else {
      c.from = f.String("from");
      c.parents = f.Bool("parents");
    }
    ins->command = std::move(c);
    return absl::OkStatus();
  }

  const Node& n_;
  const std::string& filename_;
};

bool ValidStageName(absl::string_view name) {
  if (name.empty() || !absl::ascii_islower(name[0])) return false;
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<FromCmd> BuildFrom(const Node& n, const std::string& filename) {
  Flags f(n, filename);
  f.Add("platform", Flags::Type::kString);
  FromCmd from;
  if (n.args.size() == 3 && absl::EqualsIgnoreCase(n.args[1], "as")) {
    from.stage_name = absl::AsciiStrToLower(n.args[2]);
    if (!ValidStageName(from.stage_name)) {
      return ErrorAt(filename, n.arg_positions[2],
                     absl::StrCat("invalid name for build stage: \"", n.args[2],
                                  "\", name can't start with a number or contain symbols"));
    }
  } else if (n.args.size() != 1) {
    return ErrorAt(filename, n.start, "FROM requires either one or three arguments");
  }
  absl::Status s = f.Parse();
  if (!s.ok()) return s;
  from.image = n.args[0];
  from.platform = f.String("platform");
  return from;
}

}  // namespace

absl::StatusOr<Instruction> ParseInstruction(const Node& node, absl::string_view filename) {
  std::string f(filename);
  if (node.keyword == "from") {
    return ErrorAt(f, node.start, "FROM isn't allowed here");
  }
  return Builder(node, f).Build();
}

absl::StatusOr<Dockerfile> BuildInstructions(const SyntaxTree& tree) {
  Dockerfile df;
  df.filename = tree.filename;
  df.escape = tree.escape;
  df.warnings = tree.warnings;
  std::map<std::string, Position> names;
  for (const Node& n : tree.nodes) {
    if (n.keyword == "from") {
      absl::StatusOr<FromCmd> from = BuildFrom(n, df.filename);
      if (!from.ok()) return from.status();
      if (!from->stage_name.empty()) {
        // BuildKit only warns (its DuplicateStageName check); the planner resolves the name as
        // BuildKit does: FROM to the latest stage of that name before it, COPY --from and
        // --target to the last one.
        auto [it, fresh] = names.emplace(from->stage_name, n.start);
        if (!fresh) {
          df.warnings.push_back(
              Warning{absl::StrCat("DuplicateStageName: Duplicate stage name \"", from->stage_name,
                                   "\", stage names should be unique (first defined at line ",
                                   it->second.line, ")"),
                      n.start.line});
        }
      }
      Stage st;
      st.index = static_cast<int>(df.stages.size());
      st.from = *std::move(from);
      st.pos = n.start;
      st.original = n.original;
      df.stages.push_back(std::move(st));
      continue;
    }
    absl::StatusOr<Instruction> ins = Builder(n, df.filename).Build();
    if (!ins.ok()) return ins.status();
    if (df.stages.empty()) {
      if (auto* arg = std::get_if<ArgCmd>(&ins->command)) {
        for (ArgDef& d : arg->args) {
          df.meta_args.push_back(d);
          df.meta_arg_positions.push_back(ins->pos);
        }
        continue;
      }
      return ErrorAt(df.filename, n.start,
                     absl::StrCat(ins->name,
                                  ": no build stage in current context (only ARG may come "
                                  "before the first FROM)"));
    }
    df.stages.back().instructions.push_back(*std::move(ins));
  }
  if (df.stages.empty()) {
    Position p = tree.nodes.empty() ? Position{1, 1} : tree.nodes.front().start;
    return ErrorAt(df.filename, p, "the Dockerfile has no FROM: no stages to build");
  }
  return df;
}

absl::StatusOr<int64_t> ParseGoDuration(absl::string_view text) {
  absl::string_view s = text;
  auto bad = [&]() {
    return absl::InvalidArgumentError(absl::StrCat("time: invalid duration \"", text, "\""));
  };
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return 0;
  if (s.empty()) return bad();
  long double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
    size_t int_end = i;
    size_t frac_start = i, frac_end = i;
    if (i < s.size() && s[i] == '.') {
      ++i;
      frac_start = i;
      while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
      frac_end = i;
    }
    if (int_end == 0 && frac_end == frac_start) return bad();
    long double v = 0;
    for (size_t k = 0; k < int_end; ++k) v = v * 10 + (s[k] - '0');
    long double scale = 0.1L;
    for (size_t k = frac_start; k < frac_end; ++k, scale /= 10) v += (s[k] - '0') * scale;
    size_t u = i;
    while (u < s.size() && !absl::ascii_isdigit(s[u]) && s[u] != '.') ++u;
    absl::string_view unit = s.substr(i, u - i);
    long double mult;
    if (unit == "ns") {
      mult = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      mult = 1e3L;
    } else if (unit == "ms") {
      mult = 1e6L;
    } else if (unit == "s") {
      mult = 1e9L;
    } else if (unit == "m") {
      mult = 60e9L;
    } else if (unit == "h") {
      mult = 3600e9L;
    } else if (unit.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("time: missing unit in duration \"", text, "\""));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("time: unknown unit \"", unit, "\" in duration \"", text, "\""));
    }
    total += v * mult;
    if (total > 9.2e18L) return bad();
    s.remove_prefix(u);
  }
  int64_t ns = static_cast<int64_t>(total + 0.5L);
  return neg ? -ns : ns;
}

}  // namespace farm::scheduler::dockerfile
