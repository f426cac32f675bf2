#include "scheduler/server/tenant_images.h"

#include "common/fs.h"
#include "gtest/gtest.h"
#include "oci/reference.h"

namespace farm::scheduler::server {
namespace {

image::ImageRecord Record(char c) {
  image::ImageRecord r;
  r.digest = "sha256:" + std::string(64, c);
  r.media_type = "application/vnd.oci.image.manifest.v1+json";
  r.size = 100;
  return r;
}

TEST(TenantImagesTest, ATenantsTagNeverChangesAnothersName) {
  auto tmp = common::TempDir::Create("tenant-images");
  ASSERT_TRUE(tmp.ok());
  std::string dir = tmp->path() + "/images";
  auto images = TenantImages::Open(dir);
  ASSERT_TRUE(images.ok()) << images.status();
  auto a = (*images)->For("team-a");
  auto b = (*images)->For("team-b");
  auto none = (*images)->For("");
  ASSERT_TRUE(a.ok() && b.ok() && none.ok());
  EXPECT_EQ(a->get(), (*images)->For("team-a")->get());  // opened once
  EXPECT_NE(a->get(), b->get());
  EXPECT_EQ((*images)->DirOf(""), dir);
  EXPECT_NE((*images)->DirOf("team-a").find(dir + "-tenants/"), std::string::npos);

  oci::Reference alpine = oci::Reference::ParseWithDefaultTag("alpine:3.19").value();
  ASSERT_TRUE((*a)->Put(Record('a')).ok());
  ASSERT_TRUE((*a)->SetReference(alpine, Record('a').digest).ok());
  EXPECT_EQ((*(*a)->ResolveReference(alpine)), Record('a').digest);
  EXPECT_EQ((*b)->ResolveReference(alpine).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*none)->ResolveReference(alpine).status().code(), absl::StatusCode::kNotFound);
  // b's own tag of the same name points elsewhere; a's is unchanged.
  ASSERT_TRUE((*b)->Put(Record('b')).ok());
  ASSERT_TRUE((*b)->SetReference(alpine, Record('b').digest).ok());
  EXPECT_EQ((*(*a)->ResolveReference(alpine)), Record('a').digest);
  EXPECT_EQ((*(*b)->ResolveReference(alpine)), Record('b').digest);
}

}  // namespace
}  // namespace farm::scheduler::server
