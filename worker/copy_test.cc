// COPY and ADD through LocalStepExecutor, one test per rule: what lands where, with which mode,
// owner and mtime, and which inputs are errors.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/testing/executor_fixture.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker {
namespace {

using testing::ContextBuilder;
using testing::LayerContents;

class CopyTest : public testing::ExecutorTest {
 protected:
  ContextBuilder Ctx() {
    return ContextBuilder()
        .File("a.txt", "a\n")
        .File("b.txt", "b\n")
        .File("run.sh", "#!/bin/sh\n", /*executable=*/true)
        .File("dir/x", "x\n")
        .File("dir/sub/y", "y\n")
        .Symlink("dir/link", "x")
        .File("tree/a/b/c.txt", "c\n")
        .File("tree/a/skip.log", "log\n");
  }
  absl::StatusCode ErrorOf(const farm::v1::StepRequest& r) {
    return Exec(r).result.status().code();
  }
};

std::vector<std::string> Files(const LayerContents& l) {
  std::vector<std::string> out;
  for (const std::string& n : l.order) {
    if (l.at(n).header.type != layer::TarHeader::kDirectory) out.push_back(n);
  }
  return out;
}

TEST_F(CopyTest, FileIntoDirectoryWithTrailingSlash) {
  LayerContents l = ExecLayer(Copy(Ctx(), {"a.txt"}, "/dest/"));
  EXPECT_EQ(l.order, (std::vector<std::string>{"dest", "dest/a.txt"}));
  const auto& h = l.at("dest/a.txt").header;
  EXPECT_EQ(l.at("dest/a.txt").data, "a\n");
  EXPECT_EQ(h.mode, 0644u);
  EXPECT_EQ(h.uid, 0);
  EXPECT_EQ(h.mtime, 0);  // no SOURCE_DATE_EPOCH: context files get 0
  EXPECT_EQ(l.at("dest").header.mode, 0755u);
}

TEST_F(CopyTest, FileToAFileName) {
  LayerContents l = ExecLayer(Copy(Ctx(), {"a.txt"}, "/dest/renamed.txt"));
  EXPECT_EQ(Files(l), std::vector<std::string>{"dest/renamed.txt"});
}

TEST_F(CopyTest, DirectoryCopiesItsContents) {
  LayerContents l = ExecLayer(Copy(Ctx(), {"dir"}, "/dest"));
  EXPECT_EQ(Files(l), (std::vector<std::string>{"dest/link", "dest/sub/y", "dest/x"}));
  EXPECT_EQ(l.at("dest/link").header.type, layer::TarHeader::kSymlink);
  EXPECT_EQ(l.at("dest/link").header.linkname, "x");
}

TEST_F(CopyTest, WildcardsAndSeveralSources) {
  LayerContents l = ExecLayer(Copy(Ctx(), {"*.txt"}, "/dest/"));
  EXPECT_EQ(Files(l), (std::vector<std::string>{"dest/a.txt", "dest/b.txt"}));
  l = ExecLayer(Copy(Ctx(), {"a.txt", "b.txt"}, "/two/"));
  EXPECT_EQ(Files(l), (std::vector<std::string>{"two/a.txt", "two/b.txt"}));
  absl::Status s = Exec(Copy(Ctx(), {"a.txt", "b.txt"}, "/two")).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "must be a directory and end with a /")) << s;
  // A wildcard that matches nothing copies nothing (BuildKit's AllowEmptyWildcard).
  Outcome none = Exec(Copy(Ctx(), {"*.none"}, "/d/"));
  ASSERT_TRUE(none.result.ok()) << none.result.status();
  EXPECT_FALSE(none.result->has_layer());
  l = ExecLayer(Copy(Ctx(), {"a.txt", "*.none"}, "/some/"));
  EXPECT_EQ(Files(l), std::vector<std::string>{"some/a.txt"});
}

TEST_F(CopyTest, RelativeDestinationIsUnderWorkdir) {
  farm::v1::StepRequest r = Copy(Ctx(), {"a.txt"}, "rel/");
  r.mutable_env()->set_workdir("/app");
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(Files(l), std::vector<std::string>{"app/rel/a.txt"});
  r = Copy(Ctx(), {"a.txt"}, ".");
  r.mutable_env()->set_workdir("/app");
  EXPECT_EQ(Files(ExecLayer(r)), std::vector<std::string>{"app/a.txt"});
}

TEST_F(CopyTest, ExistingDirectoryInTheImageIsADirectory) {
  LayerContents l = ExecLayer(Copy(Ctx(), {"a.txt"}, "/etc"));  // no trailing slash
  EXPECT_EQ(Files(l), std::vector<std::string>{"etc/a.txt"});
  // /etc is written as the image has it (mtime 0 in the busybox base), not changed.
  EXPECT_EQ(l.at("etc").header.mtime, 0);
}

TEST_F(CopyTest, DestinationSymlinksInTheImageAreFollowed) {
  LayerContents l = ExecLayer(Copy(Ctx(), {"a.txt"}, "/lib/extra/"));  // /lib -> usr/lib
  EXPECT_EQ(Files(l), std::vector<std::string>{"usr/lib/extra/a.txt"});
  EXPECT_FALSE(l.has("lib"));  // the symlink is not shadowed by a directory
}

TEST_F(CopyTest, MissingParentsAreCreatedOwnedByChown) {
  farm::v1::StepRequest r = Copy(Ctx(), {"a.txt"}, "/x/y/z/");
  r.mutable_copy()->set_chown("nobody:nogroup");
  LayerContents l = ExecLayer(r);
  for (const char* d : {"x", "x/y", "x/y/z"}) {
    EXPECT_EQ(l.at(d).header.uid, 65534) << d;
    EXPECT_EQ(l.at(d).header.mode, 0755u) << d;
  }
  EXPECT_EQ(l.at("x/y/z/a.txt").header.uid, 65534);
  EXPECT_EQ(l.at("x/y/z/a.txt").header.gid, 65534);
}

TEST_F(CopyTest, ChownRulesAndErrors) {
  farm::v1::StepRequest r = Copy(Ctx(), {"a.txt"}, "/c/");
  r.mutable_copy()->set_chown("1234");
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(l.at("c/a.txt").header.uid, 1234);
  EXPECT_EQ(l.at("c/a.txt").header.gid, 1234);
  r.mutable_copy()->set_chown("ghost");
  absl::Status s = Exec(r).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "ghost")) << s;
}

TEST_F(CopyTest, ChmodAndNormalizedModes) {
  LayerContents l = ExecLayer(Copy(Ctx(), {"run.sh", "a.txt"}, "/m/"));
  EXPECT_EQ(l.at("m/run.sh").header.mode, 0755u);  // executable in the context
  EXPECT_EQ(l.at("m/a.txt").header.mode, 0644u);
  farm::v1::StepRequest r = Copy(Ctx(), {"a.txt"}, "/m/");
  r.mutable_copy()->set_chmod("0600");
  EXPECT_EQ(ExecLayer(r).at("m/a.txt").header.mode, 0600u);
  r.mutable_copy()->set_chmod("u+x");
  EXPECT_EQ(ErrorOf(r), absl::StatusCode::kInvalidArgument);
  // Modes as the client recorded them in the context tree (all bits, the default).
  ContextBuilder full;
  full.File("p", "p", false, 0640);
  LayerContents p = ExecLayer(Copy(full, {"p"}, "/m/"));
  EXPECT_EQ(p.at("m/p").header.mode, 0640u);
}

TEST_F(CopyTest, SourceDateEpochSetsContextMtimes) {
  farm::v1::StepRequest r = Copy(Ctx(), {"a.txt"}, "/t/");
  r.mutable_output()->set_source_date_epoch(1234567);
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(l.at("t/a.txt").header.mtime, 1234567);
  EXPECT_EQ(l.at("t").header.mtime, 1234567);
}

TEST_F(CopyTest, LinkDoesNotReadTheImage) {
  farm::v1::StepRequest r = Copy(Ctx(), {"a.txt"}, "/lib/extra/");
  r.mutable_copy()->set_link(true);
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(Files(l), std::vector<std::string>{"lib/extra/a.txt"});  // not usr/lib: no lookup
}

TEST_F(CopyTest, ParentsKeepsPathsBelowThePivot) {
  farm::v1::StepRequest r = Copy(Ctx(), {"tree/./a/b/c.txt"}, "/p/");
  r.mutable_copy()->set_parents(true);
  EXPECT_EQ(Files(ExecLayer(r)), std::vector<std::string>{"p/a/b/c.txt"});
}

TEST_F(CopyTest, ExcludeSkipsMatches) {
  farm::v1::StepRequest r = Copy(Ctx(), {"tree"}, "/e/");
  r.mutable_copy()->add_excludes("**/*.log");
  EXPECT_EQ(Files(ExecLayer(r)), std::vector<std::string>{"e/a/b/c.txt"});
}

TEST_F(CopyTest, HeredocFiles) {
  farm::v1::StepRequest r = Copy(ContextBuilder(), {"<<EOF"}, "/etc/motd");
  farm::v1::InlineFile* f = r.mutable_copy()->add_inline_files();
  f->set_name("EOF");
  f->set_content("welcome\n");
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(l.at("etc/motd").data, "welcome\n");
  EXPECT_EQ(l.at("etc/motd").header.mode, 0644u);
}

TEST_F(CopyTest, HeredocsNextToContextFilesOfTheSameName) {
  // `COPY EOF <<EOF /d/`: the context file EOF, then the heredoc EOF over it; --chmod applies.
  farm::v1::StepRequest r =
      Copy(ContextBuilder().File("EOF", "from the context\n"), {"EOF", "<<EOF", "<<OTHER"}, "/d/");
  for (const char* name : {"EOF", "OTHER"}) {
    farm::v1::InlineFile* f = r.mutable_copy()->add_inline_files();
    f->set_name(name);
    f->set_content(absl::StrCat("heredoc ", name, "\n"));
  }
  r.mutable_copy()->set_chmod("0600");
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(l.at("d/EOF").data, "heredoc EOF\n");
  EXPECT_EQ(l.at("d/OTHER").data, "heredoc OTHER\n");
  EXPECT_EQ(l.at("d/OTHER").header.mode, 0600u);
  // Without the heredoc, the name is the context file's.
  r.mutable_copy()->clear_srcs();
  r.mutable_copy()->add_srcs("EOF");
  EXPECT_EQ(ExecLayer(r).at("d/EOF").data, "from the context\n");
}

TEST_F(CopyTest, ErrorsDoNotRepeatTheStep) {
  // The caller (the build engine) names the step; the executor's message must not repeat it.
  farm::v1::StepRequest r = Copy(Ctx(), {"nope.txt"}, "/d/");
  r.set_description("COPY nope.txt /d/");
  absl::Status s = Exec(r).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(absl::StrContains(s.message(), "COPY")) << s;
  r.mutable_copy()->clear_srcs();
  s = Exec(r).result.status();
  EXPECT_EQ(s.message(), "no source");
}

TEST_F(CopyTest, EscapesAndMissingSourcesAreErrors) {
  EXPECT_EQ(ErrorOf(Copy(Ctx(), {"../x"}, "/d/")), absl::StatusCode::kInvalidArgument);
  ContextBuilder evil = Ctx();
  evil.Symlink("out", "../../etc/passwd");
  EXPECT_EQ(ErrorOf(Copy(evil, {"out"}, "/d/")), absl::StatusCode::kInvalidArgument);
  absl::Status s = Exec(Copy(Ctx(), {"nope.txt"}, "/d/")).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(s.message(), "nope.txt")) << s;
}

TEST_F(CopyTest, FromAStageKeepsOwnersModesAndTimes) {
  farm::v1::Layer stage;
  farm::v1::StepRequest build =
      Sh("mkdir /out && echo bin > /out/app && chown 7:8 /out/app && chmod 750 /out/app && touch "
         "-d @1000 /out/app");
  ExecLayer(build, &stage);
  farm::v1::StepRequest r;
  *r.add_parents() = base_;
  farm::v1::CopyOp* c = r.mutable_copy();
  *c->mutable_source()->mutable_layers()->add_layers() = base_;
  *c->mutable_source()->mutable_layers()->add_layers() = stage;
  c->add_srcs("/out/app");
  c->set_dest("/usr/local/bin/");
  LayerContents l = ExecLayer(r);
  const auto& h = l.at("usr/local/bin/app").header;
  EXPECT_EQ(h.uid, 7);
  EXPECT_EQ(h.gid, 8);
  EXPECT_EQ(h.mode, 0750u);
  EXPECT_EQ(h.mtime, 1000);
}

TEST_F(CopyTest, FromAStageKeepsHardLinks) {
  // Docker (fsutil's copy) writes a hard-linked file once and links its other names.
  farm::v1::Layer stage;
  ExecLayer(Sh("mkdir -p /out/sub && echo same > /out/one && ln /out/one /out/two && "
               "ln /out/one /out/sub/three && echo other > /out/single"),
            &stage);
  farm::v1::StepRequest r;
  *r.add_parents() = base_;
  farm::v1::CopyOp* c = r.mutable_copy();
  *c->mutable_source()->mutable_layers()->add_layers() = base_;
  *c->mutable_source()->mutable_layers()->add_layers() = stage;
  c->add_srcs("/out");
  c->set_dest("/copied/");
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(l.at("copied/one").header.type, layer::TarHeader::kRegular);
  EXPECT_EQ(l.at("copied/one").data, "same\n");
  for (const char* name : {"copied/sub/three", "copied/two"}) {
    EXPECT_EQ(l.at(name).header.type, layer::TarHeader::kHardLink) << name;
    EXPECT_EQ(l.at(name).header.linkname, "copied/one") << name;
  }
  EXPECT_EQ(l.at("copied/single").header.type, layer::TarHeader::kRegular);
}

TEST_F(CopyTest, ContextHardLinksStayLinked) {
  // The client names each hard-link group of the context (its first name); COPY links them.
  ContextBuilder ctx;
  ctx.Linked("dir/one", "same\n", "dir/one")
      .Linked("dir/sub/three", "same\n", "dir/one")
      .Linked("dir/two", "same\n", "dir/one")
      .File("dir/single", "other\n");
  LayerContents l = ExecLayer(Copy(ctx, {"dir"}, "/d/"));
  EXPECT_EQ(l.at("d/one").header.type, layer::TarHeader::kRegular);
  EXPECT_EQ(l.at("d/sub/three").header.type, layer::TarHeader::kHardLink);
  EXPECT_EQ(l.at("d/sub/three").header.linkname, "d/one");
  EXPECT_EQ(l.at("d/two").header.linkname, "d/one");
  // Copied alone, a member is an ordinary file.
  EXPECT_EQ(ExecLayer(Copy(ctx, {"dir/two"}, "/x")).at("x").header.type,
            layer::TarHeader::kRegular);
}

// Archives made by GNU tar with each compressor.
std::string MakeArchive(const std::string& tmp, const std::string& flag) {
  std::string src = tmp + "/archive-src";
  EXPECT_OK(testing::WriteFile(src + "/pkg/bin/tool", "tool\n", 0755));
  EXPECT_OK(testing::WriteFile(src + "/pkg/README", "readme\n"));
  std::string out = absl::StrCat(tmp, "/archive", flag.empty() ? "" : flag.substr(1));
  std::string cmd =
      absl::StrCat("tar ", flag, " --owner=5 --group=6 -C ", src, " -cf ", out, " pkg");
  EXPECT_EQ(system(cmd.c_str()), 0) << cmd;
  auto bytes = common::ReadFile(out);
  EXPECT_OK(bytes);
  return bytes.ok() ? *bytes : "";
}

TEST_F(CopyTest, AddExtractsLocalArchivesInEveryCompression) {
  for (const char* flag : {"", "-z", "-j", "-J", "--zstd"}) {
    ContextBuilder ctx;
    ctx.File("pkg.tar", MakeArchive(tmp_->path(), flag));
    farm::v1::StepRequest r = Copy(ctx, {"pkg.tar"}, "/opt/");
    r.mutable_copy()->set_add(true);
    LayerContents l = ExecLayer(r);
    EXPECT_EQ(Files(l), (std::vector<std::string>{"opt/pkg/README", "opt/pkg/bin/tool"})) << flag;
    EXPECT_EQ(l.at("opt/pkg/bin/tool").header.mode, 0755u);
    EXPECT_EQ(l.at("opt/pkg/bin/tool").header.uid, 5);  // owners come from the archive
    // COPY never extracts; ADD --unpack=false neither.
    r.mutable_copy()->set_add(false);
    EXPECT_EQ(Files(ExecLayer(r)), std::vector<std::string>{"opt/pkg.tar"}) << flag;
    r.mutable_copy()->set_add(true);
    r.mutable_copy()->set_unpack(false);
    EXPECT_EQ(Files(ExecLayer(r)), std::vector<std::string>{"opt/pkg.tar"}) << flag;
  }
}

// A one-shot-per-connection HTTP/1.0 server on `addr` (in the namespace of the creating thread).
class HttpServer {
 public:
  HttpServer(const std::string& host, std::map<std::string, std::string> files)
      : addr_(host), files_(std::move(files)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, addr_.c_str(), &addr.sin_addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 8);
    thread_ = std::thread([this] { Serve(); });
  }
  ~HttpServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string Url(const std::string& path) const {
    return absl::StrCat("http://", addr_, ":", port_, path);
  }

 private:
  void Serve() {
    while (true) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      ssize_t n = read(c, buf, sizeof(buf));
      std::string req(buf, n > 0 ? static_cast<size_t>(n) : 0);
      std::string path = req.substr(4, req.find(' ', 4) - 4);
      auto it = files_.find(path);
      std::string resp =
          it == files_.end()
              ? std::string("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
              : absl::StrCat("HTTP/1.0 200 OK\r\nContent-Length: ", it->second.size(),
                             "\r\nLast-Modified: Sun, 09 Sep 2001 01:46:40 GMT\r\n\r\n",
                             it->second);
      (void)!write(c, resp.data(), resp.size());
      close(c);
    }
  }
  std::string addr_;
  std::map<std::string, std::string> files_;
  int fd_;
  int port_;
  std::thread thread_;
};

TEST_F(CopyTest, AddDownloadsUrlsWithChecksum) {
  std::string archive = MakeArchive(tmp_->path(), "-z");
  // On another host (the suite's peer namespace): the worker's own addresses are refused.
  std::unique_ptr<HttpServer> peer;
  ASSERT_OK(hosts_->InPeer([&] {
    peer = std::make_unique<HttpServer>(
        testing::TestHosts::kPeerAddress,
        std::map<std::string, std::string>{{"/files/hello.txt", "hello\n"},
                                           {"/pkg.tar.gz", archive}});
  }));
  HttpServer& server = *peer;
  farm::v1::StepRequest r = Copy(ContextBuilder(), {server.Url("/files/hello.txt")}, "/dl/");
  r.mutable_copy()->set_add(true);
  r.mutable_copy()->set_checksum(absl::StrCat("sha256:", common::Sha256Hex("hello\n")));
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(l.at("dl/hello.txt").data, "hello\n");
  EXPECT_EQ(l.at("dl/hello.txt").header.mode, 0600u);
  EXPECT_EQ(l.at("dl/hello.txt").header.mtime, 1000000000);  // Last-Modified
  r.mutable_copy()->set_checksum(absl::StrCat("sha256:", common::Sha256Hex("other")));
  absl::Status s = Exec(r).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "checksum mismatch")) << s;
  // Remote archives are not extracted.
  farm::v1::StepRequest t = Copy(ContextBuilder(), {server.Url("/pkg.tar.gz")}, "/dl/");
  t.mutable_copy()->set_add(true);
  EXPECT_EQ(Files(ExecLayer(t)), std::vector<std::string>{"dl/pkg.tar.gz"});
  farm::v1::StepRequest missing = Copy(ContextBuilder(), {server.Url("/nope")}, "/dl/");
  missing.mutable_copy()->set_add(true);
  EXPECT_EQ(ErrorOf(missing), absl::StatusCode::kNotFound);
  // COPY does not download.
  t.mutable_copy()->set_add(false);
  EXPECT_EQ(ErrorOf(t), absl::StatusCode::kInvalidArgument);
}

// The file pool (worker/layerstore/file_pool.h): a COPY's unchanged context files are the
// previous version's inodes, and the layer is byte for byte what writing them gives.
TEST_F(CopyTest, UnchangedContextFilesAreTheirPreviousVersionsInodes) {
  auto InodeIn = [](const farm::v1::Layer& layer, const std::string& path) {
    std::string hex = layer.diff_id().substr(layer.diff_id().find(':') + 1);
    struct stat st {};
    std::string p = absl::StrCat(tmp_->path(), "/state/layers/sha256/", hex, "/root/", path);
    EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
    return st.st_ino;
  };
  auto version = [](const std::string& edited) {
    return ContextBuilder()
        .File("same.txt", "same\n")
        .File("twin.txt", "same\n")  // same bytes, another path: never the same inode
        .File("edited.txt", edited)
        .File("run.sh", "#!/bin/sh\n", /*executable=*/true)
        .File("dir/deep.txt", "deep\n");
  };
  farm::v1::Layer v1, v2, fresh;
  ExecLayer(Copy(version("v1\n"), {"."}, "/pool/"), &v1);
  LayerContents c2 = ExecLayer(Copy(version("v2\n"), {"."}, "/pool/"), &v2);
  ASSERT_NE(v1.diff_id(), v2.diff_id());
  for (const char* same : {"pool/same.txt", "pool/twin.txt", "pool/run.sh", "pool/dir/deep.txt"}) {
    EXPECT_EQ(InodeIn(v1, same), InodeIn(v2, same)) << same;
  }
  EXPECT_NE(InodeIn(v1, "pool/edited.txt"), InodeIn(v2, "pool/edited.txt"));
  EXPECT_NE(InodeIn(v2, "pool/same.txt"), InodeIn(v2, "pool/twin.txt"));
  // Archived as written files: no hard-link entries, the content and metadata of a COPY.
  for (const std::string& name : c2.order) {
    EXPECT_NE(c2.at(name).header.type, layer::TarHeader::kHardLink) << name;
  }
  EXPECT_EQ(c2.at("pool/run.sh").header.mode, 0755u);
  EXPECT_EQ(c2.at("pool/edited.txt").data, "v2\n");

  // The same layer written with no pool at all: the same diff_id.
  ASSERT_OK(common::RemoveAll(tmp_->path() + "/state/layers/files"));
  ExecLayer(Copy(version("v2\n"), {"."}, "/pool/"), &fresh);
  EXPECT_EQ(fresh.diff_id(), v2.diff_id());
  EXPECT_EQ(fresh.digest(), v2.digest());

  // Other metadata (--chmod, --chown) is another file, not a link.
  farm::v1::StepRequest chmod = Copy(version("v2\n"), {"."}, "/pool/");
  chmod.mutable_copy()->set_chmod("0600");
  farm::v1::Layer c;
  ExecLayer(chmod, &c);
  EXPECT_NE(InodeIn(c, "pool/same.txt"), InodeIn(v1, "pool/same.txt"));

  // Two sources writing one name: the later replaces the earlier, pooled or not.
  auto twice = [] { return ContextBuilder().File("one/f", "first\n").File("two/f", "second\n"); };
  farm::v1::Layer o1, o2;
  LayerContents l1 = ExecLayer(Copy(twice(), {"one/", "two/"}, "/over/"), &o1);
  LayerContents l2 = ExecLayer(Copy(twice(), {"one/", "two/"}, "/over/"), &o2);
  EXPECT_EQ(l1.at("over/f").data, "second\n");
  EXPECT_EQ(l2.at("over/f").data, "second\n");
  EXPECT_EQ(o1.diff_id(), o2.diff_id());
  EXPECT_EQ(InodeIn(o1, "over/f"), InodeIn(o2, "over/f"));
}

TEST_F(CopyTest, AddUrlFollowsTheStepNetworkPolicy) {
  // The same file on this host's loopback: the worker downloads on the step's behalf, so the
  // step network's rules apply (worker/copy/fetch_test.cc has the rest of them).
  HttpServer local("127.0.0.1", {{"/files/hello.txt", "hello\n"}});
  farm::v1::StepRequest r = Copy(ContextBuilder(), {local.Url("/files/hello.txt")}, "/dl/");
  r.mutable_copy()->set_add(true);
  absl::Status s = Exec(r).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "127.0.0.1 is not reachable from a build step")) << s;
}

}  // namespace
}  // namespace farm::worker
