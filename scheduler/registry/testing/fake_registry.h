// FakeRegistry: a small in-memory Docker Registry v2 HTTP server on 127.0.0.1 for tests that
// need behaviour a real registry will not show on demand: the Bearer token flow, 5xx/429
// responses, a blob served with the wrong bytes, a connection cut in the middle of a blob, an
// upload chunk that fails after the registry kept part of it. Speaks HTTP/1.1 with keep-alive;
// one thread per connection. Test-only.
//
//   scheduler::registry::testing::FakeRegistry fake;
//   ASSERT_OK(fake.Start());
//   fake.RequireBearer("user", "pass");
//   fake.FailNext("/v2/app/blobs/", 2, 503);
//   ... scheduler::registry::Client::Create(fake.domain(), ...) ...
#ifndef FARM_SCHEDULER_REGISTRY_TESTING_FAKE_REGISTRY_H_
#define FARM_SCHEDULER_REGISTRY_TESTING_FAKE_REGISTRY_H_

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace farm::scheduler::registry::testing {

class FakeRegistry {
 public:
  FakeRegistry() = default;
  ~FakeRegistry();
  absl::Status Start();
  std::string domain() const;  // "127.0.0.1:PORT"

  // Content.
  void PutBlob(const std::string& repo, const std::string& bytes);
  void PutManifest(const std::string& repo, const std::string& ref, const std::string& media_type,
                   const std::string& bytes);
  bool HasBlob(const std::string& repo, const std::string& digest);

  // Behaviour.
  // Requires a Bearer token from /token (with basic auth `user`:`pass` if user is non-empty).
  void RequireBearer(const std::string& user, const std::string& pass);
  // The next `count` requests whose path starts with `path_prefix` get `status`.
  void FailNext(const std::string& path_prefix, int count, int status);
  // Serves `digest` with one byte changed (same length).
  void TamperBlob(const std::string& digest);
  // The first GET of `digest` sends half the body, then closes the connection.
  void CutBlobOnce(const std::string& digest);
  // The n-th PATCH (1-based, counted from now) keeps half its body, then answers 500.
  void FailPatch(int nth);
  // Removes the HEAD support for manifests (some registries answer 405).
  void DisableManifestHead();

  // Observations.
  std::vector<std::string> requests();  // "METHOD /path?query" in order
  int CountRequests(const std::string& method, const std::string& path_contains);
  void ClearRequests();
  std::vector<std::string> token_scopes();  // scopes asked of /token, in order

 private:
  struct Request {
    std::string method, target, path, query;
    std::map<std::string, std::string> headers;  // lowercase names
    std::string body;
  };
  struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool head = false;
    size_t cut_after = std::string::npos;  // close the connection after this many body bytes
  };
  void AcceptLoop();
  void Serve(int fd);
  Response Handle(const Request& req);
  Response HandleLocked(const Request& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Response Error(int status, const std::string& code, const std::string& message);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  absl::Mutex mu_;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::set<int> open_fds_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> blobs_ ABSL_GUARDED_BY(mu_);  // digest → bytes
  std::map<std::string, std::set<std::string>> repo_blobs_ ABSL_GUARDED_BY(mu_);
  struct StoredManifest {
    std::string media_type, bytes;
  };
  std::map<std::string, std::map<std::string, StoredManifest>> manifests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> uploads_ ABSL_GUARDED_BY(mu_);  // uuid → bytes
  int next_upload_ ABSL_GUARDED_BY(mu_) = 0;
  std::string bearer_user_, bearer_pass_;
  bool bearer_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> token_scopes_ ABSL_GUARDED_BY(mu_);
  struct Failure {
    std::string prefix;
    int count;
    int status;
  };
  std::vector<Failure> failures_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> tampered_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> cut_once_ ABSL_GUARDED_BY(mu_);
  int patch_countdown_ ABSL_GUARDED_BY(mu_) = 0;
  bool manifest_head_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::scheduler::registry::testing

#endif  // FARM_SCHEDULER_REGISTRY_TESTING_FAKE_REGISTRY_H_
