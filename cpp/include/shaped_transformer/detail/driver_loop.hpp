// The loop every driver shares (explicit, law, exact, SDE): independent samples or
// paths handed to parallel_for (cancellation through RunOptions::poll, progress in
// samples through RunOptions::progress), each recording V through SaveAt and
// stopping at a blow-up (covariance_ok).
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>

#include "../parallel.hpp"
#include "../result.hpp"
#include "../save_at.hpp"

namespace shaped_transformer {

/// True when V is finite and its largest diagonal entry is <= blowup.
template <class M>
inline bool covariance_ok(const M& V, double blowup) {
  return V.allFinite() && V.diagonal().maxCoeff() <= blowup;
}

namespace detail {

/// Runs fn(item, cancel) for `items` work items of `per` samples each (the last may
/// hold fewer; `total` samples in all) on opt.threads threads; progress counts samples.
template <class Fn>
void for_each_item(std::size_t items, std::size_t per, std::size_t total, const RunOptions& opt, Fn&& fn) {
  std::function<void(std::size_t)> progress;
  if (opt.progress) {
    if (per == 1) progress = opt.progress;
    else progress = [&](std::size_t done) { opt.progress(std::min(done * per, total)); };
  }
  parallel_for(items, opt.threads, std::forward<Fn>(fn), opt.poll, progress);
}

}  // namespace detail
}  // namespace shaped_transformer
