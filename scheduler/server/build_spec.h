// BuildSpec: what farm-scheduler makes one build's step executor from (the per-build fields of
// the remote tasks it dispatches). BuildManager's `executors` option takes one; BuildRunner
// fills it in from the submitted request.
#ifndef FARM_SCHEDULER_SERVER_BUILD_SPEC_H_
#define FARM_SCHEDULER_SERVER_BUILD_SPEC_H_

#include <map>
#include <string>

namespace farm::scheduler::server {

struct BuildSpec {
  std::string build_id;
  std::string tenant;
  int priority = 0;
  std::string cache_instance;
  std::map<std::string, std::string> secrets;
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_BUILD_SPEC_H_
