// A small, cancellable parallel loop over independent samples.
//
// Work items are handed out through an atomic counter, so the assignment of
// samples to threads varies from run to run; results never depend on it because
// every random number is keyed by (seed, sample, block, matrix) (see rng.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace shaped_transformer {

/// Cooperative cancellation: long loops call `stop_requested()` once per block
/// and return early when it is true.
class CancelToken {
 public:
  bool stop_requested() const noexcept { return flag_.load(std::memory_order_relaxed); }
  void request_stop() noexcept { flag_.store(true, std::memory_order_relaxed); }

 private:
  std::atomic<bool> flag_{false};
};

/// Thrown by parallel_for when `poll` asked to stop.
struct Cancelled : std::exception {
  const char* what() const noexcept override { return "cancelled"; }
};

/// Runs fn(i, cancel) for i in [0, count) on up to `threads` threads (0: all
/// hardware threads).  The calling thread does not compute: it waits and calls
/// `poll()` every `poll_interval`; when poll returns true the token is set, the
/// workers stop at their next check and Cancelled is thrown.  `progress(done)`
/// (optional) is called from the calling thread as items finish.  The first
/// exception thrown by a work item is rethrown here after all workers stopped.
template <class Fn>
void parallel_for(std::size_t count, int threads, Fn&& fn, const std::function<bool()>& poll = {},
                  const std::function<void(std::size_t)>& progress = {},
                  std::chrono::milliseconds poll_interval = std::chrono::milliseconds(50)) {
  if (count == 0) return;
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  std::size_t nthreads = threads > 0 ? std::size_t(threads) : std::size_t(hw);
  nthreads = std::min(nthreads, count);

  CancelToken cancel;
  std::atomic<std::size_t> next{0}, done{0};
  std::exception_ptr error;
  std::mutex mu;
  std::condition_variable cv;
  std::size_t running = nthreads;

  auto worker = [&] {
    for (;;) {
      if (cancel.stop_requested()) break;
      const std::size_t i = next.fetch_add(1);
      if (i >= count) break;
      try {
        fn(i, cancel);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        cancel.request_stop();
      }
      done.fetch_add(1);
      cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu);
    --running;
    cv.notify_all();
  };

  std::vector<std::thread> pool;
  pool.reserve(nthreads);
  for (std::size_t t = 0; t < nthreads; ++t) pool.emplace_back(worker);

  bool cancelled = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    std::size_t reported = 0;
    while (running > 0) {
      cv.wait_for(lock, poll_interval);
      lock.unlock();
      // A throwing callback must not leave joinable threads behind (that would
      // call std::terminate): record its exception like a worker's and stop.
      try {
        if (progress) {
          const std::size_t d = done.load();
          if (d != reported) progress(reported = d);
        }
        if (!cancelled && poll && poll()) {
          cancelled = true;
          cancel.request_stop();
        }
      } catch (...) {
        std::lock_guard<std::mutex> guard(mu);
        if (!error) error = std::current_exception();
        cancel.request_stop();
      }
      lock.lock();
    }
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  if (cancelled) throw Cancelled();
  if (progress) progress(done.load());  // outside the loop: threads are joined
}

}  // namespace shaped_transformer
