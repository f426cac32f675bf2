#include "worker/sandbox/seccomp_profile.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker::sandbox {
namespace internal {
extern const char kDefaultSeccompProfile[];  // default_profile_data.cc (generated)
}  // namespace internal

namespace {

constexpr const char* kCapNames[] = {"CAP_CHOWN",
                                     "CAP_DAC_OVERRIDE",
                                     "CAP_DAC_READ_SEARCH",
                                     "CAP_FOWNER",
                                     "CAP_FSETID",
                                     "CAP_KILL",
                                     "CAP_SETGID",
                                     "CAP_SETUID",
                                     "CAP_SETPCAP",
                                     "CAP_LINUX_IMMUTABLE",
                                     "CAP_NET_BIND_SERVICE",
                                     "CAP_NET_BROADCAST",
                                     "CAP_NET_ADMIN",
                                     "CAP_NET_RAW",
                                     "CAP_IPC_LOCK",
                                     "CAP_IPC_OWNER",
                                     "CAP_SYS_MODULE",
                                     "CAP_SYS_RAWIO",
                                     "CAP_SYS_CHROOT",
                                     "CAP_SYS_PTRACE",
                                     "CAP_SYS_PACCT",
                                     "CAP_SYS_ADMIN",
                                     "CAP_SYS_BOOT",
                                     "CAP_SYS_NICE",
                                     "CAP_SYS_RESOURCE",
                                     "CAP_SYS_TIME",
                                     "CAP_SYS_TTY_CONFIG",
                                     "CAP_MKNOD",
                                     "CAP_LEASE",
                                     "CAP_AUDIT_WRITE",
                                     "CAP_AUDIT_CONTROL",
                                     "CAP_SETFCAP",
                                     "CAP_MAC_OVERRIDE",
                                     "CAP_MAC_ADMIN",
                                     "CAP_SYSLOG",
                                     "CAP_WAKE_ALARM",
                                     "CAP_BLOCK_SUSPEND",
                                     "CAP_AUDIT_READ",
                                     "CAP_PERFMON",
                                     "CAP_BPF",
                                     "CAP_CHECKPOINT_RESTORE"};

struct ErrnoName {
  const char* name;
  int value;
};
constexpr ErrnoName kErrnos[] = {{"EPERM", EPERM},     {"ENOENT", ENOENT},
                                 {"EACCES", EACCES},   {"EINVAL", EINVAL},
                                 {"ENOSYS", ENOSYS},   {"EOPNOTSUPP", EOPNOTSUPP},
                                 {"ENOTSUP", ENOTSUP}, {"EAFNOSUPPORT", EAFNOSUPPORT}};

class Parser {
 public:
  explicit Parser(absl::string_view name) : name_(name) {}

  absl::StatusOr<SeccompProfile> Run(absl::string_view text) {
    int line_no = 0;
    for (absl::string_view raw : absl::StrSplit(text, '\n')) {
      ++line_no;
      line_ = line_no;
      absl::string_view line = raw.substr(0, raw.find('#'));
      line = absl::StripAsciiWhitespace(line);
      if (line.empty()) continue;
      std::vector<std::string> words =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      absl::Status s = Statement(words);
      if (!s.ok())
        return absl::InvalidArgumentError(absl::StrCat(name_, ":", line_no, ": ", s.message()));
    }
    if (profile_.arches.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": no arch line"));
    }
    return std::move(profile_);
  }

 private:
  absl::Status Statement(const std::vector<std::string>& w) {
    if (w[0] == "default" || w[0] == "newer") {
      SeccompAction a;
      size_t i = 1;
      RETURN_IF_ERROR(ParseAction(w, &i, &a));
      if (i != w.size())
        return absl::InvalidArgumentError(absl::StrCat("unexpected \"", w[i], "\""));
      if (w[0] == "default") {
        profile_.default_action = a;
      } else {
        profile_.has_newer = true;
        profile_.newer_action = a;
      }
      return absl::OkStatus();
    }
    if (w[0] == "arch") {
      if (w.size() < 2) return absl::InvalidArgumentError("arch: no architecture");
      for (size_t i = 1; i < w.size(); ++i) {
        if (seccomp_arch_resolve_name(w[i].c_str()) == 0) {
          return absl::InvalidArgumentError(absl::StrCat("unknown architecture \"", w[i], "\""));
        }
      }
      profile_.arches[w[1]] = std::vector<std::string>(w.begin() + 2, w.end());
      return absl::OkStatus();
    }
    if (w[0].front() == '[') return Section(w);
    return Rule(w);
  }

  absl::Status ParseAction(const std::vector<std::string>& w, size_t* i, SeccompAction* a) {
    if (*i >= w.size()) return absl::InvalidArgumentError("missing action");
    const std::string& k = w[(*i)++];
    if (k == "allow") {
      *a = {SeccompAction::kAllow, 0};
      return absl::OkStatus();
    }
    if (k == "kill") {
      *a = {SeccompAction::kKill, 0};
      return absl::OkStatus();
    }
    if (k != "errno") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown action \"", k, "\" (want allow, errno NAME or kill)"));
    }
    if (*i >= w.size()) return absl::InvalidArgumentError("errno: missing value");
    const std::string& v = w[(*i)++];
    int n = 0;
    if (absl::SimpleAtoi(v, &n) && n > 0 && n < 4096) {
      *a = {SeccompAction::kErrno, n};
      return absl::OkStatus();
    }
    for (const ErrnoName& e : kErrnos) {
      if (v == e.name) {
        *a = {SeccompAction::kErrno, e.value};
        return absl::OkStatus();
      }
    }
    return absl::InvalidArgumentError(absl::StrCat("unknown errno \"", v, "\""));
  }

  absl::Status Section(std::vector<std::string> w) {
    // "[when a b" ... "c]": strip the brackets.
    w.front().erase(0, 1);
    if (w.back().empty() || w.back().back() != ']') {
      return absl::InvalidArgumentError("section without ]");
    }
    w.back().pop_back();
    w.erase(std::remove(w.begin(), w.end(), std::string()), w.end());
    when_.clear();
    if (w.size() == 1 && w[0] == "always") return absl::OkStatus();
    if (w.empty() || w[0] != "when") {
      return absl::InvalidArgumentError("want [always] or [when CONDITION...]");
    }
    size_t i = 1;
    if (i == w.size()) return absl::InvalidArgumentError("[when] without a condition");
    while (i < w.size()) {
      SeccompWhen c;
      std::string k = w[i++];
      if (absl::StartsWith(k, "!")) {
        c.negated = true;
        k = k.substr(1);
      }
      if (k == "cap") {
        if (i >= w.size()) return absl::InvalidArgumentError("cap: missing name");
        c.kind = SeccompWhen::kCap;
        c.cap = CapabilityByName(w[i]);
        if (c.cap < 0)
          return absl::InvalidArgumentError(absl::StrCat("unknown capability \"", w[i], "\""));
        ++i;
      } else if (k == "arch") {
        c.kind = SeccompWhen::kArch;
        while (i < w.size() && w[i] != "cap" && w[i] != "!cap" && w[i] != "arch" &&
               w[i] != "!arch" && !absl::StartsWith(w[i], "kernel")) {
          if (seccomp_arch_resolve_name(w[i].c_str()) == 0) {
            return absl::InvalidArgumentError(absl::StrCat("unknown architecture \"", w[i], "\""));
          }
          c.arches.push_back(w[i++]);
        }
        if (c.arches.empty()) return absl::InvalidArgumentError("arch: no architecture");
      } else if (absl::StartsWith(k, "kernel>=")) {
        c.kind = SeccompWhen::kKernelAtLeast;
        std::vector<std::string> v = absl::StrSplit(k.substr(8), '.');
        if (v.size() != 2 || !absl::SimpleAtoi(v[0], &c.major) ||
            !absl::SimpleAtoi(v[1], &c.minor)) {
          return absl::InvalidArgumentError(absl::StrCat("bad kernel version in \"", k, "\""));
        }
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown condition \"", k, "\" (want cap, arch or kernel>=X.Y)"));
      }
      when_.push_back(std::move(c));
    }
    return absl::OkStatus();
  }

  absl::Status Rule(const std::vector<std::string>& w) {
    SeccompRule r;
    r.line = line_;
    r.when = when_;
    size_t i = 0;
    while (i < w.size() && w[i] != "if" && w[i] != "->") {
      const std::string& n = w[i++];
      if (!std::all_of(n.begin(), n.end(),
                       [](char c) { return absl::ascii_isalnum(c) || c == '_'; })) {
        return absl::InvalidArgumentError(absl::StrCat("bad system call name \"", n, "\""));
      }
      r.names.push_back(n);
    }
    if (r.names.empty()) return absl::InvalidArgumentError("a rule without a system call");
    if (i < w.size() && w[i] == "if") {
      ++i;
      while (true) {
        SeccompArg a;
        RETURN_IF_ERROR(ParseArg(w, &i, &a));
        r.args.push_back(a);
        if (i < w.size() && w[i] == "and") {
          ++i;
          continue;
        }
        break;
      }
    }
    if (i < w.size() && w[i] == "->") {
      ++i;
      RETURN_IF_ERROR(ParseAction(w, &i, &r.action));
    }
    if (i != w.size()) return absl::InvalidArgumentError(absl::StrCat("unexpected \"", w[i], "\""));
    if (!r.args.empty() && r.names.size() != 1) {
      return absl::InvalidArgumentError("a rule with conditions names one system call");
    }
    profile_.rules.push_back(std::move(r));
    return absl::OkStatus();
  }

  static bool Number(absl::string_view s, uint64_t* v) {
    if (absl::ConsumePrefix(&s, "0x")) return absl::SimpleHexAtoi(s, v);
    return absl::SimpleAtoi(s, v);
  }

  absl::Status ParseArg(const std::vector<std::string>& w, size_t* i, SeccompArg* a) {
    auto need = [&](const char* what) -> absl::Status {
      if (*i >= w.size())
        return absl::InvalidArgumentError(absl::StrCat("condition: missing ", what));
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(need("argN"));
    absl::string_view arg = w[(*i)++];
    if (!absl::ConsumePrefix(&arg, "arg") || !absl::SimpleAtoi(arg, &a->index) || a->index < 0 ||
        a->index > 5) {
      return absl::InvalidArgumentError(absl::StrCat("want arg0..arg5, not \"", w[*i - 1], "\""));
    }
    RETURN_IF_ERROR(need("operator"));
    std::string op = w[(*i)++];
    if (op == "&") {
      RETURN_IF_ERROR(need("mask"));
      if (!Number(w[*i], &a->mask))
        return absl::InvalidArgumentError(absl::StrCat("bad mask \"", w[*i], "\""));
      ++*i;
      RETURN_IF_ERROR(need("=="));
      if (w[(*i)++] != "==") return absl::InvalidArgumentError("want argN & MASK == VALUE");
      a->op = SeccompArg::kMaskedEq;
    } else if (op == "==") {
      a->op = SeccompArg::kEq;
    } else if (op == "!=") {
      a->op = SeccompArg::kNe;
    } else if (op == "<") {
      a->op = SeccompArg::kLt;
    } else if (op == "<=") {
      a->op = SeccompArg::kLe;
    } else if (op == ">") {
      a->op = SeccompArg::kGt;
    } else if (op == ">=") {
      a->op = SeccompArg::kGe;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown operator \"", op, "\""));
    }
    RETURN_IF_ERROR(need("value"));
    if (!Number(w[*i], &a->value))
      return absl::InvalidArgumentError(absl::StrCat("bad value \"", w[*i], "\""));
    ++*i;
    return absl::OkStatus();
  }

  std::string name_;
  int line_ = 0;
  std::vector<SeccompWhen> when_;
  SeccompProfile profile_;
};

uint32_t ToScmp(const SeccompAction& a) {
  switch (a.kind) {
    case SeccompAction::kAllow:
      return SCMP_ACT_ALLOW;
    case SeccompAction::kKill:
      return SCMP_ACT_KILL_PROCESS;
    case SeccompAction::kErrno:
      break;
  }
  return SCMP_ACT_ERRNO(static_cast<uint32_t>(a.errno_value));
}

uint32_t ToRet(const SeccompAction& a) {
  switch (a.kind) {
    case SeccompAction::kAllow:
      return SECCOMP_RET_ALLOW;
    case SeccompAction::kKill:
      return SECCOMP_RET_KILL_PROCESS;
    case SeccompAction::kErrno:
      break;
  }
  return SECCOMP_RET_ERRNO | (static_cast<uint32_t>(a.errno_value) & SECCOMP_RET_DATA);
}

scmp_compare ToScmp(SeccompArg::Op op) {
  switch (op) {
    case SeccompArg::kEq:
      return SCMP_CMP_EQ;
    case SeccompArg::kNe:
      return SCMP_CMP_NE;
    case SeccompArg::kLt:
      return SCMP_CMP_LT;
    case SeccompArg::kLe:
      return SCMP_CMP_LE;
    case SeccompArg::kGt:
      return SCMP_CMP_GT;
    case SeccompArg::kGe:
      return SCMP_CMP_GE;
    case SeccompArg::kMaskedEq:
      return SCMP_CMP_MASKED_EQ;
  }
  return SCMP_CMP_EQ;
}

struct Kernel {
  int major = 0, minor = 0;
};

Kernel RunningKernel() {
  struct utsname u;
  Kernel k;
  if (uname(&u) != 0) return k;
  std::vector<absl::string_view> v = absl::StrSplit(u.release, absl::MaxSplits('.', 2));
  if (v.size() >= 2) {
    absl::SimpleAtoi(v[0], &k.major);
    absl::SimpleAtoi(v[1].substr(0, v[1].find_first_not_of("0123456789")), &k.minor);
  }
  return k;
}

// A small assembler for the prefix: jumps to labels resolved after layout.
struct Insn {
  uint16_t code;
  uint32_t k;
  int jt = -1, jf = -1;  // label ids (-1: next instruction)
  int label = -1;        // this instruction starts label `label`
};

class Prefix {
 public:
  int NewLabel() { return labels_++; }
  void Bind(int label) { pending_.push_back(label); }
  void Emit(uint16_t code, uint32_t k, int jt = -1, int jf = -1) {
    for (int l : pending_) at_[l] = static_cast<int>(code_.size());
    pending_.clear();
    code_.push_back({code, k, jt, jf, -1});
  }
  // Labels bound at the end point at what follows the prefix (libseccomp's program).
  absl::StatusOr<std::vector<sock_filter>> Finish() {
    for (int l : pending_) at_[l] = static_cast<int>(code_.size());
    std::vector<sock_filter> out;
    for (size_t i = 0; i < code_.size(); ++i) {
      const Insn& in = code_[i];
      sock_filter f{in.code, 0, 0, in.k};
      for (auto [label, field] : {std::pair<int, uint8_t*>{in.jt, &f.jt}, {in.jf, &f.jf}}) {
        if (label < 0) continue;
        int offset = at_.at(label) - static_cast<int>(i) - 1;
        if (offset < 0 || offset > 255) return absl::InternalError("seccomp prefix: jump too far");
        *field = static_cast<uint8_t>(offset);
      }
      out.push_back(f);
    }
    return out;
  }

 private:
  int labels_ = 0;
  std::vector<int> pending_;
  std::map<int, int> at_;
  std::vector<Insn> code_;
};

constexpr uint32_t kX32Bit = 0x40000000;

}  // namespace

int CapabilityByName(absl::string_view name) {
  for (size_t i = 0; i < sizeof(kCapNames) / sizeof(kCapNames[0]); ++i) {
    if (name == kCapNames[i]) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<SeccompProfile> SeccompProfile::Parse(absl::string_view text,
                                                     absl::string_view name) {
  return Parser(name).Run(text);
}

absl::StatusOr<const SeccompProfile*> DefaultSeccompProfile() {
  static std::once_flag once;
  static absl::StatusOr<SeccompProfile>* parsed = nullptr;
  std::call_once(once, [] {
    parsed = new absl::StatusOr<SeccompProfile>(
        SeccompProfile::Parse(internal::kDefaultSeccompProfile, "default.seccomp"));
  });
  if (!parsed->ok()) return parsed->status();
  return &**parsed;
}

absl::StatusOr<std::vector<sock_filter>> CompileSeccomp(const SeccompProfile& profile,
                                                        const SeccompTarget& target) {
  uint32_t native = seccomp_arch_native();
  std::string native_name;
  const std::vector<std::string>* others = nullptr;
  for (const auto& [name, sub] : profile.arches) {
    if (seccomp_arch_resolve_name(name.c_str()) == native) {
      native_name = name;
      others = &sub;
    }
  }
  if (others == nullptr) {
    return absl::InvalidArgumentError(
        "the seccomp profile has no arch line for this machine's architecture");
  }
  Kernel kernel{target.kernel_major, target.kernel_minor};
  if (kernel.major == 0) kernel = RunningKernel();
  auto applies = [&](const SeccompRule& r) {
    for (const SeccompWhen& c : r.when) {
      bool holds = false;
      switch (c.kind) {
        case SeccompWhen::kCap:
          holds = std::find(target.caps.begin(), target.caps.end(), c.cap) != target.caps.end();
          break;
        case SeccompWhen::kArch:
          holds = std::find(c.arches.begin(), c.arches.end(), native_name) != c.arches.end();
          break;
        case SeccompWhen::kKernelAtLeast:
          holds = kernel.major > c.major || (kernel.major == c.major && kernel.minor >= c.minor);
          break;
      }
      if (holds == c.negated) return false;
    }
    return true;
  };

  scmp_filter_ctx ctx = seccomp_init(ToScmp(profile.default_action));
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  struct Release {
    scmp_filter_ctx ctx;
    ~Release() { seccomp_release(ctx); }
  } release{ctx};
  auto check = [](int rc, absl::string_view what) -> absl::Status {
    if (rc == 0) return absl::OkStatus();
    return common::ErrnoToStatus(-rc, absl::StrCat("libseccomp: ", what));
  };
  RETURN_IF_ERROR(check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
                        "bad-architecture action"));
  RETURN_IF_ERROR(check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "no_new_privs off"));
  // A binary tree of syscall numbers instead of a linear scan (~300 calls are allowed).
  seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  std::vector<uint32_t> arch_tokens = {native};
  for (const std::string& a : *others) {
    uint32_t token = seccomp_arch_resolve_name(a.c_str());
    RETURN_IF_ERROR(check(seccomp_arch_add(ctx, token), absl::StrCat("adding arch ", a)));
    arch_tokens.push_back(token);
  }

  for (const SeccompRule& r : profile.rules) {
    if (!applies(r)) continue;
    std::vector<scmp_arg_cmp> cmps;
    for (const SeccompArg& a : r.args) {
      scmp_arg_cmp c{static_cast<unsigned int>(a.index), ToScmp(a.op), 0, 0};
      if (a.op == SeccompArg::kMaskedEq) {
        c.datum_a = a.mask;
        c.datum_b = a.value;
      } else {
        c.datum_a = a.value;
      }
      cmps.push_back(c);
    }
    for (const std::string& n : r.names) {
      int nr = seccomp_syscall_resolve_name(n.c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp: see the format notes
      int rc = seccomp_rule_add_array(ctx, ToScmp(r.action), nr, static_cast<unsigned>(cmps.size()),
                                      cmps.empty() ? nullptr : cmps.data());
      // EEXIST: the same call allowed by two sections (ptrace by kernel version and by
      // capability): one rule is enough.
      if (rc != 0 && rc != -EEXIST) {
        return common::ErrnoToStatus(
            -rc, absl::StrCat("seccomp profile line ", r.line, ": adding a rule for ", n));
      }
    }
  }

  // libseccomp's program, exported through a memfd.
  int fd = memfd_create("farm-seccomp", MFD_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, "memfd_create (seccomp)");
  int rc = seccomp_export_bpf(ctx, fd);
  off_t size = lseek(fd, 0, SEEK_END);
  std::vector<sock_filter> body(size > 0 ? static_cast<size_t>(size) / sizeof(sock_filter) : 0);
  bool read_ok = size > 0 && pread(fd, body.data(), static_cast<size_t>(size), 0) == size;
  close(fd);
  if (rc != 0) return check(rc, "exporting the filter");
  if (!read_ok) return absl::InternalError("reading the exported seccomp filter");

  if (!profile.has_newer || profile.newer_action == profile.default_action) return body;

  // The "newer" prefix: per architecture, calls above the highest number the profile names.
  struct Group {
    uint32_t audit_arch;
    int64_t max = -1;      // plain numbers
    int64_t x32_max = -1;  // x32 numbers (with kX32Bit), x86_64's audit arch only
  };
  std::vector<Group> groups;
  std::set<std::string> names;
  for (const SeccompRule& r : profile.rules) names.insert(r.names.begin(), r.names.end());
  for (uint32_t token : arch_tokens) {
    bool x32 = token == SCMP_ARCH_X32;
    uint32_t audit = x32 ? AUDIT_ARCH_X86_64 : token;
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](const Group& g) { return g.audit_arch == audit; });
    if (g == groups.end()) g = groups.insert(groups.end(), Group{audit});
    for (const std::string& n : names) {
      int nr = seccomp_syscall_resolve_name_arch(token, n.c_str());
      if (nr < 0) continue;
      int64_t& m = x32 ? g->x32_max : g->max;
      m = std::max<int64_t>(m, nr);
    }
  }
  Prefix p;
  int rest = p.NewLabel(), newer = p.NewLabel();
  std::vector<int> blocks;
  p.Emit(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  for (const Group& g : groups) {
    blocks.push_back(p.NewLabel());
    p.Emit(BPF_JMP | BPF_JEQ | BPF_K, g.audit_arch, blocks.back(), -1);
  }
  // Another architecture: libseccomp's program decides (it kills). An unconditional jump's
  // offset is its k (32 bits), patched once the prefix is laid out.
  p.Emit(BPF_JMP | BPF_JA, 0);
  for (size_t i = 0; i < groups.size(); ++i) {
    const Group& g = groups[i];
    p.Bind(blocks[i]);
    p.Emit(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    if (g.x32_max >= 0) {
      int x32 = p.NewLabel();
      p.Emit(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, x32, -1);
      p.Emit(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(std::max<int64_t>(g.max, 0)), newer,
             rest);
      p.Bind(x32);
      p.Emit(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(g.x32_max), newer, rest);
    } else {
      p.Emit(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(std::max<int64_t>(g.max, 0)), newer,
             rest);
    }
  }
  p.Bind(newer);
  p.Emit(BPF_RET | BPF_K, ToRet(profile.newer_action));
  p.Bind(rest);
  absl::StatusOr<std::vector<sock_filter>> prefix = p.Finish();
  if (!prefix.ok()) return prefix.status();
  // The unconditional ja after the arch checks: jump over every block and the return.
  size_t ja = 1 + groups.size();
  (*prefix)[ja].k = static_cast<uint32_t>(prefix->size() - ja - 1);
  prefix->insert(prefix->end(), body.begin(), body.end());
  if (prefix->size() > BPF_MAXINSNS) {
    return absl::InternalError(
        absl::StrCat("seccomp filter too long (", prefix->size(), " instructions)"));
  }
  return *std::move(prefix);
}

absl::Status InstallSeccomp(const std::vector<sock_filter>& program) {
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = const_cast<sock_filter*>(program.data());
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return common::ErrnoToStatus(errno, "installing the seccomp filter");
  }
  return absl::OkStatus();
}

}  // namespace farm::worker::sandbox
