// The exact chain, instantiated for the registry's Network (definitions in
// detail/exact_impl.hpp).
#include "shaped_transformer/detail/exact_impl.hpp"

namespace shaped_transformer {

template Trajectories simulate_exact<Network>(const Network&, const Cov&, long, int, int, std::uint64_t,
                                              const std::vector<std::int64_t>&, const RunOptions&, const char*,
                                              const Eigen::VectorXd*);

}  // namespace shaped_transformer
