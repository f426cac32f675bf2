// The runner's half of a run's isolated network (SandboxRequest.network ISOLATED, see
// protos/farm/v1/sandbox.proto): lease a /30 of the pool, create the veth pair into the run's
// network namespace and configure both ends. The worker's half, the firewall and NAT that
// decide what the run reaches, is worker/network/step_network.h.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<StepNet> net, StepNet::Create(req.isolated(), init_pid));
//   ... run ...
//   net.reset();  // releases the lease (the pair goes with the run's network namespace)
#ifndef FARM_WORKER_SANDBOX_STEP_NET_H_
#define FARM_WORKER_SANDBOX_STEP_NET_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "farm/v1/sandbox.pb.h"

namespace farm::worker::sandbox {

class StepNet {
 public:
  // Sets up the network of the namespace of process `pid` (the run's init, blocked until this
  // returns). UNAVAILABLE when every slot of the pool is leased.
  static absl::StatusOr<std::unique_ptr<StepNet>> Create(const farm::v1::SandboxNetwork& config,
                                                         pid_t pid);
  ~StepNet();

  const std::string& host_interface() const { return host_if_; }
  uint32_t gateway() const { return gateway_; }  // host order
  uint32_t address() const { return address_; }  // the run's, host order

 private:
  StepNet() = default;
  int lease_fd_ = -1;
  std::string host_if_;
  uint32_t gateway_ = 0, address_ = 0;
};

}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_STEP_NET_H_
