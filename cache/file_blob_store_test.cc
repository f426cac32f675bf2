#include "cache/file_blob_store.h"

#include <dirent.h>
#include <sys/stat.h>

#include <string>

#include "common/fs.h"
#include "gtest/gtest.h"

namespace cache {
namespace {

int CountFiles(const std::string& dir) {
  int n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ++n;
    }
    closedir(d);
  }
  return n;
}

TEST(FileBlobStoreTest, WriteReadFindMissing) {
  auto tmp = common::TempDir::Create("fbs").value();
  auto store = FileBlobStore::Create(tmp.path()).value();
  Digest hello = common::DigestOf("hello");
  EXPECT_EQ(store->FindMissing({hello}).value().size(), 1u);
  ASSERT_TRUE(store->Put("hello").ok());
  EXPECT_TRUE(store->FindMissing({hello}).value().empty());
  EXPECT_EQ(store->ReadBlob(hello).value(), "hello");
  std::string part;
  ASSERT_TRUE(store
                  ->Read(hello, 1, 3,
                         [&](absl::string_view c) {
                           part.append(c.data(), c.size());
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(part, "ell");
  EXPECT_EQ(store->Read(hello, 6, 0, [](absl::string_view) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store->ReadBlob(common::DigestOf("nope")).status().code(), absl::StatusCode::kNotFound);
  // The empty blob is always there.
  EXPECT_TRUE(store->Has(Digest::Empty()).value());
  // Survives reopening.
  auto again = FileBlobStore::Create(tmp.path()).value();
  EXPECT_EQ(again->ReadBlob(hello).value(), "hello");
}

TEST(FileBlobStoreTest, WrongBytesAreNeverVisible) {
  auto tmp = common::TempDir::Create("fbs").value();
  auto store = FileBlobStore::Create(tmp.path()).value();
  Digest want = common::DigestOf("right");
  auto w = store->BeginWrite(want).value();
  ASSERT_TRUE(w->Append("wrong").ok());
  absl::Status s = w->Commit();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("digest mismatch"), std::string::npos);
  w.reset();
  EXPECT_FALSE(store->Has(want).value());
  EXPECT_EQ(CountFiles(tmp.path() + "/tmp"), 0);
  // Too many bytes are refused at once.
  auto w2 = store->BeginWrite(want).value();
  EXPECT_FALSE(w2->Append("right!").ok());
  // An abandoned write leaves nothing.
  auto w3 = store->BeginWrite(want).value();
  ASSERT_TRUE(w3->Append("rig").ok());
  w3.reset();
  w2.reset();
  EXPECT_FALSE(store->Has(want).value());
  EXPECT_EQ(CountFiles(tmp.path() + "/tmp"), 0);
}

TEST(FileBlobStoreTest, BigBlobStreamsInChunks) {
  auto tmp = common::TempDir::Create("fbs").value();
  auto store = FileBlobStore::Create(tmp.path()).value();
  std::string big(5 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
  Digest d = common::DigestOf(big);
  auto w = store->BeginWrite(d).value();
  for (size_t i = 0; i < big.size(); i += 100000) {
    ASSERT_TRUE(w->Append(absl::string_view(big).substr(i, 100000)).ok());
  }
  ASSERT_TRUE(w->Commit().ok());
  size_t max_chunk = 0, total = 0;
  common::Sha256 h;
  ASSERT_TRUE(store
                  ->Read(d, 0, 0,
                         [&](absl::string_view c) {
                           max_chunk = std::max(max_chunk, c.size());
                           total += c.size();
                           h.Update(c);
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(total, big.size());
  EXPECT_LE(max_chunk, size_t{1} << 20);
  EXPECT_EQ(h.Finish(), d);
  // Writing a present blob again succeeds without rewriting it.
  ASSERT_TRUE(store->WriteBlob(d, big).ok());
  ASSERT_TRUE(store->Remove(d).ok());
  EXPECT_FALSE(store->Has(d).value());
}

}  // namespace
}  // namespace cache
