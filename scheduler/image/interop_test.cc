// Farm's images checked by independent tools, and other tools' images used by Farm:
//   - an image Farm assembles and pushes to a real docker-registry is read by `skopeo inspect`,
//     copied by `skopeo copy` to oci: and docker-archive:, validated by `oci-image-tool
//     validate`, and unpacked by `umoci unpack` with the files in the rootfs;
//   - Farm's own docker-archive and OCI layout output is read back by skopeo and umoci;
//   - an image made by buildah (from scratch + a static busybox) and pushed to the registry is
//     pulled by Farm and resolved as a base; one made by umoci loads from its OCI layout.
// Needs skopeo, umoci, oci-image-tool, buildah, docker-registry (tools/setup.sh installs them).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "scheduler/image/archive.h"
#include "scheduler/image/assemble.h"
#include "scheduler/image/store.h"
#include "scheduler/image/store_resolver.h"
#include "scheduler/image/testing/layers.h"
#include "scheduler/image/transfer.h"
#include "scheduler/registry/client.h"
#include "scheduler/registry/testing/local_registry.h"

namespace farm::scheduler::image {
namespace {

using nlohmann::json;
using testing::MakeTar;
using testing::PutLayer;

struct ShellResult {
  int code;
  std::string out;
};

// Runs a shell command; returns its exit code and combined output.
ShellResult Sh(const std::string& cmd) {
  FILE* p = popen(("(" + cmd + ") 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

#define ASSERT_SH(run)               \
  do {                               \
    ShellResult r_ = (run);          \
    ASSERT_EQ(r_.code, 0) << r_.out; \
  } while (0)

class InteropTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new common::TempDir(common::TempDir::Create("interop").value());
    absl::StatusOr<std::unique_ptr<registry::testing::LocalRegistry>> r =
        registry::testing::LocalRegistry::Start(tmp_->path() + "/registry");
    ASSERT_TRUE(r.ok()) << r.status();
    registry_ = r->release();
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete tmp_;
  }

  void SetUp() override {
    dir_ = absl::StrCat(tmp_->path(), "/",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(common::MakeDirs(dir_).ok());
    cache::RocksDbStoreOptions o;
    o.dir = dir_ + "/cas";
    cas_ = std::shared_ptr<cache::RocksDbBlobStore>(cache::RocksDbBlobStore::Create(o).value());
    images_ = std::shared_ptr<ImageStore>(RocksDbImageStore::Create(dir_ + "/images").value());
  }

  // busybox + /app/hello.txt + config as a Dockerfile would leave it.
  AssembledImage MakeFarmImage(ManifestFormat format, oci::Compression app_compression) {
    farm::v1::Layer base =
        PutLayer(*cas_, MakeTar(testing::BusyboxEntries()), oci::Compression::kGzip).value();
    farm::v1::Layer app = PutLayer(*cas_,
                                   MakeTar({{"app", "", 0755, '5'},
                                            {"app/hello.txt", "hello from farm\n"},
                                            {"app/run.sh", "#!/bin/sh\necho hi\n", 0755}}),
                                   app_compression)
                              .value();
    AssembleRequest r;
    r.format = format;
    r.config.config.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "GREETING=hello"};
    r.config.config.working_dir = "/app";
    r.config.config.entrypoint = std::vector<std::string>{"/app/run.sh"};
    r.config.config.cmd = std::vector<std::string>{"--now"};
    r.config.config.labels["org.example.made-by"] = "farm";
    r.config.config.exposed_ports = {"8080/tcp"};
    r.steps.push_back({"ADD rootfs.tar / # buildkit", base});
    r.steps.push_back({"ENV GREETING=hello", std::nullopt});
    r.steps.push_back({"WORKDIR /app", std::nullopt});
    r.steps.push_back({"COPY . /app # buildkit", app});
    r.steps.push_back({"EXPOSE map[8080/tcp:{}]", std::nullopt});
    r.steps.push_back({"ENTRYPOINT [\"/app/run.sh\"]", std::nullopt});
    r.steps.push_back({"CMD [\"--now\"]", std::nullopt});
    r.source_date_epoch = 0;
    return Assemble(*cas_, r).value();
  }

  std::unique_ptr<registry::Client> Client() {
    return registry::Client::Create(registry_->domain(), {}).value();
  }

  std::string Skopeo() { return "skopeo --insecure-policy"; }

  static common::TempDir* tmp_;
  static registry::testing::LocalRegistry* registry_;
  std::string dir_;
  std::shared_ptr<cache::RocksDbBlobStore> cas_;
  std::shared_ptr<ImageStore> images_;
};

common::TempDir* InteropTest::tmp_ = nullptr;
registry::testing::LocalRegistry* InteropTest::registry_ = nullptr;

TEST_F(InteropTest, PushedFarmImageIsReadBySkopeoUmociAndOciImageTool) {
  AssembledImage img = MakeFarmImage(ManifestFormat::kOci, oci::Compression::kGzip);
  ImageRecord rec = DescribeImage(*cas_, img.manifest, img.layers).value();
  oci::Reference ref = oci::Reference::Parse(registry_->domain() + "/farm/hello:1.0").value();
  ASSERT_TRUE(image::PushImage(*Client(), *cas_, rec, ref, {}).ok());
  std::string remote = "docker://" + ref.String();

  ShellResult inspect = Sh(Skopeo() + " inspect --tls-verify=false " + remote);
  ASSERT_EQ(inspect.code, 0) << inspect.out;
  json j = json::parse(inspect.out);
  EXPECT_EQ(j["Digest"], img.manifest.digest);
  EXPECT_EQ(j["Architecture"], "amd64");
  EXPECT_EQ(j["Labels"]["org.example.made-by"], "farm");
  ASSERT_EQ(j["Layers"].size(), 2u);
  EXPECT_EQ(j["Layers"][1], img.layers[1].digest());
  EXPECT_NE(std::find(j["Env"].begin(), j["Env"].end(), "GREETING=hello"), j["Env"].end());
  ShellResult config = Sh(Skopeo() + " inspect --tls-verify=false --config " + remote);
  ASSERT_EQ(config.code, 0) << config.out;
  json c = json::parse(config.out);
  EXPECT_EQ(c["config"]["WorkingDir"], "/app");
  EXPECT_EQ(c["history"].size(), 7u);
  EXPECT_EQ(c["created"], "1970-01-01T00:00:00Z");

  // skopeo copy to an OCI layout: oci-image-tool validates it, umoci unpacks it.
  std::string oci = dir_ + "/oci";
  ASSERT_SH(Sh(Skopeo() + " copy --src-tls-verify=false " + remote + " oci:" + oci + ":hello"));
  ASSERT_SH(Sh("oci-image-tool validate --type image --ref name=hello " + oci));
  std::string bundle = dir_ + "/bundle";
  ASSERT_SH(Sh("umoci unpack --image " + oci + ":hello " + bundle));
  EXPECT_EQ(common::ReadFile(bundle + "/rootfs/app/hello.txt").value(), "hello from farm\n");
  struct stat st;
  ASSERT_EQ(stat((bundle + "/rootfs/bin/busybox").c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_IXUSR);
  ASSERT_EQ(lstat((bundle + "/rootfs/bin/sh").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  std::string runtime = common::ReadFile(bundle + "/config.json").value();
  EXPECT_TRUE(absl::StrContains(runtime, "/app/run.sh")) << runtime;
  EXPECT_TRUE(absl::StrContains(runtime, "GREETING=hello"));

  // skopeo copy to a docker-archive; Farm loads that back to the same image ID.
  std::string archive = dir_ + "/skopeo-docker.tar";
  ASSERT_SH(Sh(Skopeo() + " copy --src-tls-verify=false " + remote + " docker-archive:" + archive +
               ":farm/hello:1.0"));
  cache::RocksDbStoreOptions fresh_options;
  fresh_options.dir = dir_ + "/cas2";
  auto fresh = std::shared_ptr<cache::RocksDbBlobStore>(
      cache::RocksDbBlobStore::Create(fresh_options).value());
  int fd = open(archive.c_str(), O_RDONLY);
  absl::StatusOr<std::vector<LoadedImage>> loaded =
      LoadArchive(*fresh, fd, dir_ + "/scratch", oci::Platform::Host());
  close(fd);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)[0].record.Id(), img.config.digest);
  EXPECT_EQ((*loaded)[0].tags[0].FamiliarString(), "farm/hello:1.0");
}

TEST_F(InteropTest, FarmArchivesAreReadBySkopeoUmociAndOciImageTool) {
  AssembledImage img = MakeFarmImage(ManifestFormat::kOci, oci::Compression::kGzip);
  ImageRecord rec = DescribeImage(*cas_, img.manifest, img.layers).value();
  oci::Reference tag = oci::Reference::ParseWithDefaultTag("farm/archive:2").value();

  // docker-archive (what `docker load` reads): skopeo reads it and copies it to OCI.
  std::string tar = dir_ + "/docker.tar";
  {
    int fd = open(tar.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    auto w = LayoutWriter::Tar(fd).value();
    ASSERT_TRUE(SaveDockerArchive(*cas_, {{rec, {tag}}}, oci::Platform::Host(), *w).ok());
    ASSERT_TRUE(w->Close().ok());
    close(fd);
  }
  ShellResult inspect = Sh(Skopeo() + " inspect docker-archive:" + tar);
  ASSERT_EQ(inspect.code, 0) << inspect.out;
  json j = json::parse(inspect.out);
  EXPECT_EQ(j["Layers"].size(), 2u);
  EXPECT_EQ(j["Labels"]["org.example.made-by"], "farm");
  std::string oci = dir_ + "/from-docker-archive";
  ASSERT_SH(Sh(Skopeo() + " copy docker-archive:" + tar + " oci:" + oci + ":x"));
  ASSERT_SH(Sh("umoci unpack --image " + oci + ":x " + dir_ + "/b1"));
  EXPECT_EQ(common::ReadFile(dir_ + "/b1/rootfs/app/hello.txt").value(), "hello from farm\n");
  // The same tar is an OCI layout too (Docker 25's format).
  ASSERT_SH(Sh(Skopeo() + " inspect oci-archive:" + tar));

  // OCI layout directory: validated, unpacked, and its manifest digest is Farm's.
  std::string layout = dir_ + "/layout";
  {
    auto w = LayoutWriter::Directory(layout).value();
    ASSERT_TRUE(SaveOciLayout(*cas_, {{rec, {tag}}}, *w).ok());
  }
  ASSERT_SH(Sh("oci-image-tool validate --type image --ref name=2 " + layout));
  ASSERT_SH(Sh("umoci unpack --image " + layout + ":2 " + dir_ + "/b2"));
  EXPECT_EQ(common::ReadFile(dir_ + "/b2/rootfs/app/hello.txt").value(), "hello from farm\n");
  ShellResult raw = Sh(Skopeo() + " inspect --raw oci:" + layout + ":2");
  ASSERT_EQ(raw.code, 0) << raw.out;
  EXPECT_EQ(common::DigestOf(raw.out).OciString(), img.manifest.digest);
}

TEST_F(InteropTest, DockerFormatAndZstdLayersAreUnderstood) {
  AssembledImage docker = MakeFarmImage(ManifestFormat::kDocker, oci::Compression::kGzip);
  ImageRecord rec = DescribeImage(*cas_, docker.manifest, docker.layers).value();
  oci::Reference ref = oci::Reference::Parse(registry_->domain() + "/farm/docker:1").value();
  ASSERT_TRUE(image::PushImage(*Client(), *cas_, rec, ref, {}).ok());
  ShellResult raw = Sh(Skopeo() + " inspect --tls-verify=false --raw docker://" + ref.String());
  ASSERT_EQ(raw.code, 0) << raw.out;
  json m = json::parse(raw.out);
  EXPECT_EQ(m["mediaType"], oci::kDockerManifest);
  EXPECT_EQ(m["layers"][0]["mediaType"], oci::kDockerLayerGzip);
  ASSERT_SH(Sh(Skopeo() + " copy --src-tls-verify=false docker://" + ref.String() + " oci:" + dir_ +
               "/d:1"));
  ASSERT_SH(Sh("umoci unpack --image " + dir_ + "/d:1 " + dir_ + "/bd"));
  EXPECT_TRUE(common::PathExists(dir_ + "/bd/rootfs/app/run.sh"));

  AssembledImage zstd = MakeFarmImage(ManifestFormat::kOci, oci::Compression::kZstd);
  ImageRecord zrec = DescribeImage(*cas_, zstd.manifest, zstd.layers).value();
  oci::Reference zref = oci::Reference::Parse(registry_->domain() + "/farm/zstd:1").value();
  ASSERT_TRUE(image::PushImage(*Client(), *cas_, zrec, zref, {}).ok());
  ShellResult zi = Sh(Skopeo() + " inspect --tls-verify=false docker://" + zref.String());
  ASSERT_EQ(zi.code, 0) << zi.out;
  EXPECT_EQ(json::parse(zi.out)["Digest"], zstd.manifest.digest);
  // An independent zstd decoder: skopeo recompresses the layers to gzip (oci-image-tool 1.0.0-rc1
  // and umoci 0.4.7 predate the zstd media type), then umoci unpacks the result.
  std::string zoci = dir_ + "/z";
  ASSERT_SH(Sh(Skopeo() +
               " copy --src-tls-verify=false --dest-compress "
               "--dest-compress-format gzip docker://" +
               zref.String() + " oci:" + zoci + ":z"));
  ASSERT_SH(Sh("oci-image-tool validate --type image --ref name=z " + zoci));
  ASSERT_SH(Sh("umoci unpack --image " + zoci + ":z " + dir_ + "/bz"));
  EXPECT_EQ(common::ReadFile(dir_ + "/bz/rootfs/app/hello.txt").value(), "hello from farm\n");
}

TEST_F(InteropTest, BuildahImageIsPulledAndResolvedAsBase) {
  // buildah from scratch + a static busybox, committed and pushed to the registry.
  std::string b = dir_ + "/buildah";
  std::string env = absl::StrCat("TMPDIR=", b, "/tmp HOME=", b, " ");
  std::string buildah =
      absl::StrCat(env, "buildah --root ", b, "/root --runroot ", b, "/run --storage-driver vfs");
  std::string rootfs = b + "/rootfs";
  ASSERT_SH(Sh(absl::StrCat("mkdir -p ", b, "/tmp ", rootfs, "/bin ", rootfs, "/etc && cp ",
                            "/bin/busybox ", rootfs, "/bin/ && ln -s busybox ", rootfs,
                            "/bin/sh && echo buildah-made > ", rootfs, "/etc/origin")));
  std::string remote = registry_->domain() + "/buildah/base:1";
  ASSERT_SH(Sh(absl::StrCat(
      "set -e; c=$(", buildah, " from scratch); ", buildah, " copy $c ", rootfs, "/ /; ", buildah,
      " config --env FOO=bar --workingdir /srv --cmd '[\"/bin/sh\"]' --label made=buildah $c; ",
      buildah, " commit --format docker $c buildah-base; ", buildah,
      " push --tls-verify=false buildah-base docker://", remote, "; ", buildah, " rm $c")));

  StoreResolverOptions o;
  auto resolver = StoreResolver::Create(cas_, images_, o).value();
  absl::StatusOr<ResolvedImage> base = resolver->Resolve(remote, "linux/amd64");
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->config.config.GetEnv("FOO").value_or(""), "bar");
  EXPECT_EQ(base->config.config.working_dir, "/srv");
  ASSERT_TRUE(base->config.config.cmd.has_value());
  EXPECT_EQ(*base->config.config.cmd, std::vector<std::string>{"/bin/sh"});
  EXPECT_EQ(base->config.config.labels.at("made"), "buildah");
  ASSERT_EQ(base->layers.size(), 1u);
  EXPECT_EQ(base->layers[0].diff_id(), base->config.diff_ids[0]);
  EXPECT_EQ(base->layers[0].media_type(), oci::kDockerLayerGzip);
  EXPECT_GT(base->layers[0].uncompressed_size(), 1 << 20);  // busybox is in there
  std::string blob =
      cas_->ReadBlob(
              common::Digest::ParseOci(base->layers[0].digest(), base->layers[0].size()).value(),
              64 << 20)
          .value();
  std::vector<std::string> paths = testing::ListTar(blob).value();
  EXPECT_NE(std::find_if(paths.begin(), paths.end(),
                         [](const std::string& p) { return absl::EndsWith(p, "bin/busybox"); }),
            paths.end())
      << absl::StrJoin(paths, " ");
  // Recorded in the store under its name, like docker pull.
  EXPECT_TRUE(LookupImage(*images_, remote).ok());

  // Farm builds on it (what FROM does) and the result unpacks with both layers' files.
  farm::v1::Layer mine =
      PutLayer(*cas_, MakeTar({{"srv", "", 0755, '5'}, {"srv/app.txt", "on top\n"}}),
               oci::Compression::kGzip)
          .value();
  AssembleRequest r;
  r.base = &*base;
  r.config = base->config;
  r.steps.push_back({"COPY app.txt /srv/ # buildkit", mine});
  r.source_date_epoch = 0;
  AssembledImage img = Assemble(*cas_, r).value();
  ImageRecord rec = DescribeImage(*cas_, img.manifest, img.layers).value();
  oci::Reference out = oci::Reference::Parse(registry_->domain() + "/farm/on-buildah:1").value();
  rec.sources = {registry_->domain() + "/buildah/base"};
  absl::StatusOr<image::PushResult> pushed = image::PushImage(*Client(), *cas_, rec, out, {});
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->mounted, 1);  // the base layer came from the registry's other repository
  std::string oci = dir_ + "/on";
  ASSERT_SH(Sh(Skopeo() + " copy --src-tls-verify=false docker://" + out.String() + " oci:" + oci +
               ":x"));
  ASSERT_SH(Sh("umoci unpack --image " + oci + ":x " + dir_ + "/bo"));
  EXPECT_EQ(common::ReadFile(dir_ + "/bo/rootfs/srv/app.txt").value(), "on top\n");
  EXPECT_EQ(common::ReadFile(dir_ + "/bo/rootfs/etc/origin").value(), "buildah-made\n");
}

TEST_F(InteropTest, UmociImageLoadsFromItsLayout) {
  std::string layout = dir_ + "/umoci";
  std::string bundle = dir_ + "/ub";
  ASSERT_SH(Sh(absl::StrCat("umoci init --layout ", layout, " && umoci new --image ", layout,
                            ":base && umoci unpack --image ", layout, ":base ", bundle,
                            " && mkdir -p ", bundle, "/rootfs/etc && echo umoci-made > ", bundle,
                            "/rootfs/etc/origin && umoci repack --image ", layout, ":base ", bundle,
                            " && umoci config --image ", layout,
                            ":base --config.env A=1 --config.cmd /bin/true")));
  absl::StatusOr<std::vector<LoadedImage>> loaded =
      LoadLayoutDirectory(*cas_, layout, dir_ + "/scratch", oci::Platform::Host());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1u);
  const ImageRecord& rec = (*loaded)[0].record;
  ASSERT_EQ(rec.manifests.size(), 1u);
  EXPECT_EQ(rec.manifests[0].layers.size(), 1u);
  ShellResult raw = Sh(Skopeo() + " inspect --raw oci:" + layout + ":base");
  ASSERT_EQ(raw.code, 0) << raw.out;
  EXPECT_EQ(common::DigestOf(raw.out).OciString(), rec.digest);
  std::string cfg = cas_->ReadBlob(common::Digest::ParseOci(rec.manifests[0].config_digest,
                                                            rec.manifests[0].config_size)
                                       .value())
                        .value();
  EXPECT_TRUE(absl::StrContains(cfg, "A=1")) << cfg;
}

}  // namespace
}  // namespace farm::scheduler::image
