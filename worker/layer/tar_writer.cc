#include "worker/layer/tar_writer.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace farm::worker::layer {
namespace {

constexpr size_t kBlock = 512;
constexpr size_t kNameSize = 100;
constexpr size_t kPrefixSize = 155;

bool IsAscii(absl::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80 || c == 0) return false;
  }
  return true;
}

// Keeps ASCII characters only, as Go's toASCII does for the USTAR fallback fields.
std::string ToAscii(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x80 && c != 0) out.push_back(static_cast<char>(c));
  }
  return out;
}

// Fits `value` as zero-padded octal with a trailing NUL in `width` bytes?
bool FitsOctal(int64_t value, size_t width) {
  if (value < 0) return false;
  int64_t max = 1;
  for (size_t i = 0; i + 1 < width; ++i) max *= 8;
  return value < max;
}

void PutOctal(char* field, size_t width, int64_t value) {
  // width-1 digits, then NUL.
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  field[width - 1] = '\0';
}

void PutString(char* field, size_t width, absl::string_view s) {
  std::memcpy(field, s.data(), std::min(width, s.size()));
}

// Splits a long ASCII name into USTAR prefix and name (Go's splitUSTARPath).
bool SplitUstarPath(absl::string_view name, std::string* prefix, std::string* suffix) {
  size_t length = name.size();
  if (length <= kNameSize || !IsAscii(name)) return false;
  if (length > kPrefixSize + 1) {
    length = kPrefixSize + 1;
  } else if (name[length - 1] == '/') {
    --length;
  }
  size_t i = name.substr(0, length).rfind('/');
  if (i == absl::string_view::npos || i == 0) return false;
  size_t nlen = name.size() - i - 1;
  size_t plen = i;
  if (nlen > kNameSize || nlen == 0 || plen > kPrefixSize) return false;
  *prefix = std::string(name.substr(0, plen));
  *suffix = std::string(name.substr(i + 1));
  return true;
}

// One PAX record: "<len> <key>=<value>\n" where <len> counts the whole record.
std::string PaxRecord(absl::string_view key, absl::string_view value) {
  size_t size = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size += std::to_string(size).size();
  std::string record = absl::StrCat(size, " ", key, "=", value, "\n");
  if (record.size() != size) record = absl::StrCat(record.size(), " ", key, "=", value, "\n");
  return record;
}

void FinishChecksum(char* block) {
  std::memset(block + 148, ' ', 8);
  uint32_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += static_cast<unsigned char>(block[i]);
  // Six octal digits, NUL, space (what GNU tar and Go write).
  for (int i = 5; i >= 0; --i) {
    block[148 + i] = static_cast<char>('0' + (sum & 7));
    sum >>= 3;
  }
  block[154] = '\0';
  block[155] = ' ';
}

void FillUstar(char* block, absl::string_view name, absl::string_view prefix, uint32_t mode,
               int64_t uid, int64_t gid, int64_t size, int64_t mtime, char type,
               absl::string_view linkname, uint32_t dev_major, uint32_t dev_minor) {
  std::memset(block, 0, kBlock);
  PutString(block, kNameSize, name);
  PutOctal(block + 100, 8, mode);
  PutOctal(block + 108, 8, uid);
  PutOctal(block + 116, 8, gid);
  PutOctal(block + 124, 12, size);
  PutOctal(block + 136, 12, mtime);
  block[156] = type;
  PutString(block + 157, 100, linkname);
  std::memcpy(block + 257,
              "ustar\0"
              "00",
              8);
  PutOctal(block + 329, 8, dev_major);
  PutOctal(block + 337, 8, dev_minor);
  PutString(block + 345, kPrefixSize, prefix);
  FinishChecksum(block);
}

}  // namespace

absl::Status TarWriter::Emit(absl::string_view data) {
  written_ += static_cast<int64_t>(data.size());
  return sink_->Write(data);
}

absl::Status TarWriter::PadEntry() {
  if (remaining_ != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("tar: ", remaining_, " bytes of the previous entry were not written"));
  }
  size_t tail = static_cast<size_t>(entry_size_ % kBlock);
  entry_size_ = 0;
  if (tail == 0) return absl::OkStatus();
  static const char kZeros[kBlock] = {};
  return Emit(absl::string_view(kZeros, kBlock - tail));
}

absl::Status TarWriter::WriteHeader(const TarHeader& h) {
  if (finished_) return absl::FailedPreconditionError("tar: write after Finish");
  RETURN_IF_ERROR(PadEntry());
  if (h.name.empty()) return absl::InvalidArgumentError("tar: empty entry name");
  std::string name = h.name;
  if (h.type == TarHeader::kDirectory && name.back() != '/') name.push_back('/');
  int64_t size = h.type == TarHeader::kRegular ? h.size : 0;
  if (size < 0) return absl::InvalidArgumentError(absl::StrCat("tar: negative size for ", name));

  // Decide what USTAR can hold and put the rest in PAX records (sorted by key, as Go does).
  std::map<std::string, std::string> pax;
  std::string ustar_name = name, ustar_prefix;
  if (name.size() > kNameSize || !IsAscii(name)) {
    if (!SplitUstarPath(name, &ustar_prefix, &ustar_name)) {
      pax["path"] = name;
      ustar_name = ToAscii(name).substr(0, kNameSize);
      ustar_prefix.clear();
    }
  }
  std::string ustar_link = h.linkname;
  if (h.linkname.size() > kNameSize || !IsAscii(h.linkname)) {
    pax["linkpath"] = h.linkname;
    ustar_link = ToAscii(h.linkname).substr(0, kNameSize);
  }
  int64_t uid = h.uid, gid = h.gid, mtime = h.mtime, hsize = size;
  if (!FitsOctal(uid, 8)) {
    pax["uid"] = std::to_string(uid);
    uid = 0;
  }
  if (!FitsOctal(gid, 8)) {
    pax["gid"] = std::to_string(gid);
    gid = 0;
  }
  if (!FitsOctal(size, 12)) {
    pax["size"] = std::to_string(size);
    hsize = 0;
  }
  if (!FitsOctal(mtime, 12)) {
    pax["mtime"] = std::to_string(mtime);
    mtime = 0;
  }
  for (const auto& [key, value] : h.xattrs) pax["SCHILY.xattr." + key] = value;

  char block[kBlock];
  if (!pax.empty()) {
    std::string records;
    for (const auto& [key, value] : pax) records += PaxRecord(key, value);
    // Go names the extended header "<dir>/PaxHeaders.0/<base>".
    absl::string_view trimmed = name;
    if (!trimmed.empty() && trimmed.back() == '/') trimmed.remove_suffix(1);
    size_t slash = trimmed.rfind('/');
    std::string pax_name = slash == absl::string_view::npos
                               ? absl::StrCat("PaxHeaders.0/", trimmed)
                               : absl::StrCat(trimmed.substr(0, slash + 1), "PaxHeaders.0/",
                                              trimmed.substr(slash + 1));
    pax_name = ToAscii(pax_name).substr(0, kNameSize);
    FillUstar(block, pax_name, "", 0, 0, 0, static_cast<int64_t>(records.size()), 0, 'x', "", 0, 0);
    RETURN_IF_ERROR(Emit(absl::string_view(block, kBlock)));
    RETURN_IF_ERROR(Emit(records));
    entry_size_ = static_cast<int64_t>(records.size());
    RETURN_IF_ERROR(PadEntry());
  }
  FillUstar(block, ustar_name, ustar_prefix, h.mode & 07777, uid, gid, hsize, mtime,
            static_cast<char>(h.type), ustar_link, h.dev_major, h.dev_minor);
  RETURN_IF_ERROR(Emit(absl::string_view(block, kBlock)));
  remaining_ = size;
  entry_size_ = size;
  return absl::OkStatus();
}

absl::Status TarWriter::WriteData(absl::string_view data) {
  if (static_cast<int64_t>(data.size()) > remaining_) {
    return absl::FailedPreconditionError(
        absl::StrCat("tar: ", data.size(), " bytes written but only ", remaining_, " expected"));
  }
  remaining_ -= static_cast<int64_t>(data.size());
  return Emit(data);
}

absl::Status TarWriter::Finish() {
  if (finished_) return absl::OkStatus();
  RETURN_IF_ERROR(PadEntry());
  finished_ = true;
  static const char kZeros[2 * kBlock] = {};
  return Emit(absl::string_view(kZeros, sizeof(kZeros)));
}

}  // namespace farm::worker::layer
