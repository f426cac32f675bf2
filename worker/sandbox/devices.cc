#include "worker/sandbox/devices.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_util.h"

namespace farm::worker::sandbox {
namespace {

bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i;
  std::memset(&i, 0, sizeof(i));
  i.code = code;
  i.dst_reg = dst;
  i.src_reg = src;
  i.off = off;
  i.imm = imm;
  return i;
}

uint32_t AccessBits(const std::string& access) {
  uint32_t bits = 0;
  for (char c : access) {
    if (c == 'm') bits |= BPF_DEVCG_ACC_MKNOD;
    if (c == 'r') bits |= BPF_DEVCG_ACC_READ;
    if (c == 'w') bits |= BPF_DEVCG_ACC_WRITE;
  }
  return bits;
}

// The program: r2 = device type, r3 = access, r4 = major, r5 = minor; one block per rule
// that returns 1 (allow) when it matches; 0 (EPERM) after the last.
std::vector<bpf_insn> Program(const std::vector<DeviceRule>& rules) {
  std::vector<bpf_insn> p = {
      Insn(BPF_LDX | BPF_W | BPF_MEM, 2, 1, offsetof(bpf_cgroup_dev_ctx, access_type), 0),
      Insn(BPF_ALU | BPF_AND | BPF_K, 2, 0, 0, 0xffff),
      Insn(BPF_LDX | BPF_W | BPF_MEM, 3, 1, offsetof(bpf_cgroup_dev_ctx, access_type), 0),
      Insn(BPF_ALU | BPF_RSH | BPF_K, 3, 0, 0, 16),
      Insn(BPF_LDX | BPF_W | BPF_MEM, 4, 1, offsetof(bpf_cgroup_dev_ctx, major), 0),
      Insn(BPF_LDX | BPF_W | BPF_MEM, 5, 1, offsetof(bpf_cgroup_dev_ctx, minor), 0),
  };
  for (const DeviceRule& r : rules) {
    std::vector<bpf_insn> block;
    // Jumps to the next block are patched once the block's length is known (off = -1 marks).
    if (r.type != 'a') {
      int32_t type = r.type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
      block.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 2, 0, -1, type));
    }
    block.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 3, 0, 0));
    block.push_back(
        Insn(BPF_ALU64 | BPF_AND | BPF_K, 6, 0, 0, static_cast<int32_t>(~AccessBits(r.access))));
    block.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 6, 0, -1, 0));
    if (r.major >= 0) {
      block.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 4, 0, -1, static_cast<int32_t>(r.major)));
    }
    if (r.minor >= 0) {
      block.push_back(Insn(BPF_JMP | BPF_JNE | BPF_K, 5, 0, -1, static_cast<int32_t>(r.minor)));
    }
    block.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1));
    block.push_back(Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    for (size_t i = 0; i < block.size(); ++i) {
      if (BPF_CLASS(block[i].code) == BPF_JMP && BPF_OP(block[i].code) == BPF_JNE) {
        block[i].off = static_cast<int16_t>(block.size() - i - 1);
      }
    }
    p.insert(p.end(), block.begin(), block.end());
  }
  p.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
  p.push_back(Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
  return p;
}

}  // namespace

std::string DeviceRule::V1String() const {
  auto num = [](int64_t n) { return n < 0 ? std::string("*") : absl::StrCat(n); };
  return absl::StrCat(std::string(1, type), " ", num(major), ":", num(minor), " ", access);
}

const std::vector<DeviceRule>& StandardDeviceRules() {
  static const std::vector<DeviceRule>* rules = new std::vector<DeviceRule>{
      {'c', -1, -1, "m"},    {'b', -1, -1, "m"},                      // mknod of anything
      {'c', 1, 3, "rwm"},    {'c', 1, 5, "rwm"}, {'c', 1, 7, "rwm"},  // null zero full
      {'c', 1, 8, "rwm"},    {'c', 1, 9, "rwm"},                      // random urandom
      {'c', 5, 0, "rwm"},    {'c', 5, 1, "rwm"}, {'c', 5, 2, "rwm"},  // tty console ptmx
      {'c', 136, -1, "rwm"},                                          // /dev/pts/N
  };
  return *rules;
}

absl::Status AttachDeviceFilter(const std::string& cgroup_dir,
                                const std::vector<DeviceRule>& rules) {
  std::vector<bpf_insn> prog = Program(rules);
  char license[] = "Apache-2.0";
  std::vector<char> log;
  auto load = [&](bool with_log) {
    union bpf_attr a;
    std::memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = reinterpret_cast<uint64_t>(prog.data());
    a.insn_cnt = static_cast<uint32_t>(prog.size());
    a.license = reinterpret_cast<uint64_t>(license);
    if (with_log) {
      log.assign(1 << 16, '\0');
      a.log_buf = reinterpret_cast<uint64_t>(log.data());
      a.log_size = static_cast<uint32_t>(log.size());
      a.log_level = 1;
    }
    return static_cast<int>(syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a)));
  };
  int prog_fd = load(false);
  if (prog_fd < 0) {
    int e = errno;
    // Again with the verifier's log, for the error message only.
    int again = load(true);
    if (again >= 0) close(again);
    std::string why = log.empty() ? "" : std::string(log.data());
    if (why.size() > 2000) why = why.substr(why.size() - 2000);
    return common::ErrnoToStatus(
        e, absl::StrCat("loading the device filter (eBPF)", why.empty() ? "" : ": ", why));
  }
  int cg_fd = open(cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg_fd < 0) {
    int e = errno;
    close(prog_fd);
    return common::ErrnoToStatus(e, "open " + cgroup_dir);
  }
  union bpf_attr attach;
  std::memset(&attach, 0, sizeof(attach));
  attach.target_fd = static_cast<uint32_t>(cg_fd);
  attach.attach_bpf_fd = static_cast<uint32_t>(prog_fd);
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  int rc = static_cast<int>(syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof(attach)));
  int e = errno;
  close(cg_fd);
  close(prog_fd);  // the attachment keeps the program alive
  if (rc != 0) {
    return common::ErrnoToStatus(e, "attaching the device filter to " + cgroup_dir);
  }
  return absl::OkStatus();
}

}  // namespace farm::worker::sandbox
