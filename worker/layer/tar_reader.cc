#include "worker/layer/tar_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace farm::worker::layer {
namespace {

constexpr size_t kBlock = 512;
constexpr int64_t kMaxExtended = 8 << 20;  // PAX / long-name bodies larger than this are refused
// All the extended headers (PAX, GNU long names) before one entry together: a chain of them
// cannot pile up records in memory. And xattrs per entry (the kernel allows ~64 KiB of them).
constexpr int64_t kMaxExtendedPerEntry = 16 << 20;
constexpr size_t kMaxXattrsPerEntry = 1024;

absl::string_view Field(const char* block, size_t offset, size_t width) {
  absl::string_view f(block + offset, width);
  size_t nul = f.find('\0');
  return nul == absl::string_view::npos ? f : f.substr(0, nul);
}

// Octal (space/NUL padded) or GNU base-256.
bool ParseNumeric(const char* block, size_t offset, size_t width, int64_t* out) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(block + offset);
  if (p[0] & 0x80) {
    if (p[0] == 0xff) return false;  // negative base-256: not meaningful here
    uint64_t v = p[0] & 0x7f;
    for (size_t i = 1; i < width; ++i) {
      if (v > (UINT64_MAX >> 8)) return false;
      v = (v << 8) | p[i];
    }
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    *out = static_cast<int64_t>(v);
    return true;
  }
  size_t i = 0;
  while (i < width && (p[i] == ' ' || p[i] == '\0')) ++i;
  int64_t v = 0;
  bool any = false;
  for (; i < width && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v > (INT64_MAX >> 3)) return false;
    v = v * 8 + (p[i] - '0');
    any = true;
  }
  for (; i < width; ++i) {
    if (p[i] != ' ' && p[i] != '\0') return false;
  }
  *out = any ? v : 0;
  return true;
}

bool ChecksumOk(const char* block) {
  int64_t stored = 0;
  if (!ParseNumeric(block, 148, 8, &stored)) return false;
  int64_t unsigned_sum = 0, signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    unsigned char c = (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(block[i]);
    unsigned_sum += c;
    signed_sum += static_cast<signed char>(c);
  }
  return stored == unsigned_sum || stored == signed_sum;
}

bool AllZero(const std::string& block) {
  return std::all_of(block.begin(), block.end(), [](char c) { return c == 0; });
}

bool HeaderOnly(char type) {
  return type == '1' || type == '2' || type == '3' || type == '4' || type == '5' || type == '6';
}

}  // namespace

absl::Status TarReader::Fail(absl::string_view what) const {
  return absl::InvalidArgumentError(absl::StrCat("tar: ", what, " (at byte ", offset_, ")"));
}

absl::Status TarReader::Write(absl::string_view data) {
  while (!data.empty()) {
    switch (state_) {
      case State::kEnd:
        offset_ += static_cast<int64_t>(data.size());
        return absl::OkStatus();
      case State::kHeader: {
        size_t n = std::min(data.size(), kBlock - block_.size());
        block_.append(data.data(), n);
        data.remove_prefix(n);
        offset_ += static_cast<int64_t>(n);
        if (block_.size() == kBlock) {
          absl::Status s = OnHeaderBlock();
          block_.clear();
          RETURN_IF_ERROR(s);
        }
        break;
      }
      case State::kData: {
        size_t n = static_cast<size_t>(std::min<int64_t>(data.size(), remaining_));
        RETURN_IF_ERROR(handler_->OnData(data.substr(0, n)));
        data.remove_prefix(n);
        offset_ += static_cast<int64_t>(n);
        remaining_ -= static_cast<int64_t>(n);
        if (remaining_ == 0) {
          RETURN_IF_ERROR(handler_->OnEntryEnd());
          state_ = padding_ > 0 ? State::kPadding : State::kHeader;
        }
        break;
      }
      case State::kExtended: {
        size_t n = static_cast<size_t>(std::min<int64_t>(data.size(), remaining_));
        extended_.append(data.data(), n);
        data.remove_prefix(n);
        offset_ += static_cast<int64_t>(n);
        remaining_ -= static_cast<int64_t>(n);
        if (remaining_ == 0) {
          state_ = padding_ > 0 ? State::kPadding : State::kHeader;
          std::string body = std::move(extended_);
          extended_.clear();
          if (extended_type_ == 'x' || extended_type_ == 'g') {
            RETURN_IF_ERROR(ParsePax(body, extended_type_ == 'g'));
          } else {
            // GNU long name/link: NUL-terminated.
            size_t nul = body.find('\0');
            if (nul != std::string::npos) body.resize(nul);
            if (extended_type_ == 'L') {
              path_ = std::move(body);
              has_path_ = true;
            } else {
              linkpath_ = std::move(body);
              has_linkpath_ = true;
            }
          }
        }
        break;
      }
      case State::kSkip:
      case State::kPadding: {
        int64_t& left = state_ == State::kSkip ? remaining_ : padding_;
        size_t n = static_cast<size_t>(std::min<int64_t>(data.size(), left));
        data.remove_prefix(n);
        offset_ += static_cast<int64_t>(n);
        left -= static_cast<int64_t>(n);
        if (left == 0) {
          if (state_ == State::kSkip && padding_ > 0) {
            state_ = State::kPadding;
          } else {
            state_ = State::kHeader;
          }
        }
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status TarReader::OnHeaderBlock() {
  const char* b = block_.data();
  if (AllZero(block_)) {
    if (saw_zero_block_) {
      state_ = State::kEnd;
      return absl::OkStatus();
    }
    saw_zero_block_ = true;
    return absl::OkStatus();
  }
  if (saw_zero_block_) return Fail("data after a zero block");
  if (!ChecksumOk(b)) return Fail("bad header checksum (not a tar stream, or corrupt)");

  absl::string_view magic(b + 257, 6);
  bool posix = magic == absl::string_view("ustar\0", 6);
  char type = b[156];
  int64_t size = 0;
  if (!ParseNumeric(b, 124, 12, &size)) return Fail("bad size field");

  auto begin_body = [&](int64_t body_size) {
    remaining_ = body_size;
    padding_ = (kBlock - body_size % kBlock) % kBlock;
  };

  if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
    if (size > kMaxExtended) return Fail(absl::StrCat("extended header of ", size, " bytes"));
    pending_extended_ += size;
    if (pending_extended_ > kMaxExtendedPerEntry) {
      return Fail(absl::StrCat("extended headers of more than ", kMaxExtendedPerEntry,
                               " bytes before one entry"));
    }
    extended_type_ = type;
    extended_.clear();
    begin_body(size);
    state_ = size > 0 ? State::kExtended : State::kHeader;
    return absl::OkStatus();
  }

  TarHeader h;
  std::string name(Field(b, 0, 100));
  if (posix) {
    absl::string_view prefix = Field(b, 345, 155);
    if (!prefix.empty()) name = absl::StrCat(prefix, "/", name);
  }
  if (has_path_) name = path_;
  h.linkname = has_linkpath_ ? linkpath_ : std::string(Field(b, 157, 100));
  int64_t mode = 0;
  if (!ParseNumeric(b, 100, 8, &mode)) return Fail(absl::StrCat("bad mode field of ", name));
  h.mode = static_cast<uint32_t>(mode & 07777);
  if (!ParseNumeric(b, 108, 8, &h.uid)) return Fail(absl::StrCat("bad uid field of ", name));
  if (!ParseNumeric(b, 116, 8, &h.gid)) return Fail(absl::StrCat("bad gid field of ", name));
  if (!ParseNumeric(b, 136, 12, &h.mtime)) return Fail(absl::StrCat("bad mtime field of ", name));
  if (has_uid_) h.uid = uid_;
  if (has_gid_) h.gid = gid_;
  if (has_mtime_) h.mtime = mtime_;
  if (has_size_) size = size_;
  if (type == '3' || type == '4') {
    int64_t major = 0, minor = 0;
    if (!ParseNumeric(b, 329, 8, &major) || !ParseNumeric(b, 337, 8, &minor)) {
      return Fail(absl::StrCat("bad device numbers of ", name));
    }
    h.dev_major = static_cast<uint32_t>(major);
    h.dev_minor = static_cast<uint32_t>(minor);
  }
  h.xattrs = std::move(xattrs_);
  has_path_ = has_linkpath_ = has_size_ = has_uid_ = has_gid_ = has_mtime_ = false;
  path_.clear();
  linkpath_.clear();
  xattrs_.clear();
  pending_extended_ = 0;

  switch (type) {
    case '0':
    case '\0':
    case '7':
      h.type = TarHeader::kRegular;
      // Old archives mark directories with a trailing slash only.
      if (!name.empty() && name.back() == '/') h.type = TarHeader::kDirectory;
      break;
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
      h.type = static_cast<TarHeader::Type>(type);
      break;
    case 'S':
      return Fail(absl::StrCat("sparse file ", name, " is not supported in layers"));
    default:
      return Fail(absl::StrCat("unsupported entry type '", std::string(1, type), "' for ", name));
  }
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  h.name = std::move(name);
  if (HeaderOnly(type) || h.type == TarHeader::kDirectory) size = 0;
  if (size < 0) return Fail(absl::StrCat("negative size for ", h.name));
  h.size = size;
  ++entries_;
  RETURN_IF_ERROR(handler_->OnEntry(h));
  begin_body(size);
  if (size == 0) {
    RETURN_IF_ERROR(handler_->OnEntryEnd());
    state_ = State::kHeader;
  } else {
    state_ = State::kData;
  }
  return absl::OkStatus();
}

absl::Status TarReader::ParsePax(const std::string& body, bool global) {
  absl::string_view rest = body;
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    int64_t len = 0;
    if (sp == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, sp), &len) ||
        len <= static_cast<int64_t>(sp) + 1 || len > static_cast<int64_t>(rest.size()) ||
        rest[len - 1] != '\n') {
      return Fail("malformed PAX record");
    }
    absl::string_view record = rest.substr(sp + 1, len - sp - 2);
    rest.remove_prefix(len);
    size_t eq = record.find('=');
    if (eq == absl::string_view::npos) return Fail("malformed PAX record (no '=')");
    absl::string_view key = record.substr(0, eq), value = record.substr(eq + 1);
    if (global) continue;  // global headers do not describe entries of a layer
    auto number = [&](int64_t* out, bool* has) -> absl::Status {
      absl::string_view v = value;
      size_t dot = v.find('.');
      if (dot != absl::string_view::npos) v = v.substr(0, dot);  // sub-second part ignored
      if (!absl::SimpleAtoi(v, out)) return Fail(absl::StrCat("bad PAX ", key, "=", value));
      *has = true;
      return absl::OkStatus();
    };
    if (key == "path") {
      path_ = std::string(value);
      has_path_ = true;
    } else if (key == "linkpath") {
      linkpath_ = std::string(value);
      has_linkpath_ = true;
    } else if (key == "size") {
      RETURN_IF_ERROR(number(&size_, &has_size_));
      if (size_ < 0) return Fail("negative PAX size");
    } else if (key == "uid") {
      RETURN_IF_ERROR(number(&uid_, &has_uid_));
    } else if (key == "gid") {
      RETURN_IF_ERROR(number(&gid_, &has_gid_));
    } else if (key == "mtime") {
      RETURN_IF_ERROR(number(&mtime_, &has_mtime_));
    } else if (absl::StartsWith(key, "SCHILY.xattr.")) {
      if (xattrs_.size() >= kMaxXattrsPerEntry) {
        return Fail(absl::StrCat("more than ", kMaxXattrsPerEntry, " xattrs on one entry"));
      }
      xattrs_.emplace_back(std::string(key.substr(13)), std::string(value));
    } else if (absl::StartsWith(key, "GNU.sparse.")) {
      return Fail("sparse files are not supported in layers");
    }
  }
  return absl::OkStatus();
}

absl::Status TarReader::Finish() {
  if (state_ == State::kEnd) return absl::OkStatus();
  if (state_ == State::kHeader && block_.empty() && !has_path_ && !has_linkpath_ &&
      xattrs_.empty()) {
    return absl::OkStatus();
  }
  if (state_ == State::kPadding) return absl::OkStatus();  // last entry complete, padding cut
  return Fail("unexpected end of archive");
}

}  // namespace farm::worker::layer
