// The explicit network and the law-exact activation sampler, instantiated for the
// registry's Network (the definitions live in detail/explicit_impl.hpp).
#include "shaped_transformer/detail/explicit_impl.hpp"

namespace shaped_transformer {

template Trajectories simulate_explicit<Network>(const Network&, const MatD&, int, int, std::uint64_t,
                                                 const std::vector<std::int64_t>&, bool, const RunOptions&);
template Trajectories simulate_law<Network>(const Network&, const MatD&, int, int, std::uint64_t,
                                            const std::vector<std::int64_t>&, bool, const RunOptions&);

}  // namespace shaped_transformer
