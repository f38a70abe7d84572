// PSD remedy (b) of docs/model.md section 6: the exact chain of section 4 at width
// n_eff = 1/dt as an SDE scheme.  It stays in the PSD cone by construction and
// converges to the same SDE (weakly, at order 1 in 1/n_eff).  Its random numbers are
// those of simulate_exact at width n_eff, so the two give identical paths.
#pragma once

#include "../detail/exact_impl.hpp"

namespace shaped_transformer::sde {

template <class Net>
inline void exact_chain_step(const Net& net, Cov& V, long n_eff, std::uint64_t seed, std::uint32_t path,
                             std::uint32_t step) {
  for (std::size_t b = 0; b < net.blocks.size(); ++b)
    exact_block(net.blocks[b], V, n_eff, ExactKey{seed, path, net.block_index(step, b)});
}

}  // namespace shaped_transformer::sde
