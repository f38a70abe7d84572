// The problem descriptions the CUDA kernels run for the library's network (the
// registry, network.hpp): plain data, copied to the device by value.  Built from a
// Network by from_network.hpp (host only).
#pragma once

#include "../exact_common.hpp"
#include "../kernels/block_list.hpp"
#include "../network.hpp"
#include "exact_step.hpp"
#include "sde_step.hpp"

namespace shaped_transformer::device {

/// The device problems of a network of kinds K...
template <class Net>
struct problems_of;
template <class... K>
struct problems_of<BasicNetwork<K...>> {
  using Sde = SdeProblemOf<K...>;
  using Exact = ExactProblemOf<FaceBlock<ExactDeviceFace, K...>>;
};
/// The problems of the library's network (the CUDA kernels' types).
using SdeProblem = problems_of<Network>::Sde;
using ExactProblem = problems_of<Network>::Exact;

}  // namespace shaped_transformer::device
