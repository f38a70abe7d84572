// The SDE drivers, instantiated for the registry's Network (definitions in
// detail/sde_impl.hpp).
#include "shaped_transformer/detail/sde_impl.hpp"

namespace shaped_transformer {

template Trajectories solve_sde<Network>(const Network&, const Cov&, const SdeOptions&, int, std::uint64_t,
                                         const RunOptions&, const char*);
template const char* solve_sde_into<Network>(const Network&, const Cov&, const SdeOptions&, int, std::uint64_t,
                                             const RunOptions&, const char*, double*, std::int64_t*, std::int64_t*);
template SdeSummaryResult solve_sde_summary<Network>(const Network&, const Cov&, const SdeOptions&, int, std::uint64_t,
                                                     const RunOptions&, const char*);

}  // namespace shaped_transformer
