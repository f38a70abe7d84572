// parallel_for: every item once, exceptions, cancellation, progress.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include <shaped_transformer/parallel.hpp>

namespace st = shaped_transformer;
using namespace std::chrono_literals;

TEST_SUITE("parallel") {
  TEST_CASE("every item runs exactly once for any thread count") {
    for (int threads : {0, 1, 2, 3, 8}) {
      const std::size_t n = 1000;
      std::vector<std::atomic<int>> hits(n);
      st::parallel_for(n, threads, [&](std::size_t i, const st::CancelToken&) { hits[i].fetch_add(1); });
      for (std::size_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
    }
  }

  TEST_CASE("zero items is a no-op and more threads than items is fine") {
    int calls = 0;
    st::parallel_for(0, 4, [&](std::size_t, const st::CancelToken&) { ++calls; });
    CHECK(calls == 0);
    std::atomic<int> c{0};
    st::parallel_for(2, 16, [&](std::size_t, const st::CancelToken&) { c++; });
    CHECK(c.load() == 2);
  }

  TEST_CASE("progress reports the final count") {
    std::size_t last = 0;
    int reports = 0;
    st::parallel_for(
        50, 2, [](std::size_t, const st::CancelToken&) { std::this_thread::sleep_for(1ms); }, {},
        [&](std::size_t done) {
          CHECK(done >= last);
          last = done;
          ++reports;
        },
        5ms);
    CHECK(last == 50);
    CHECK(reports >= 1);
  }

  TEST_CASE("the first exception of a work item is rethrown and stops the others") {
    std::atomic<int> started{0};
    auto run = [&] {
      st::parallel_for(10000, 2, [&](std::size_t i, const st::CancelToken&) {
        started++;
        if (i == 10) throw std::runtime_error("item 10 failed");
        std::this_thread::sleep_for(100us);
      });
    };
    CHECK_THROWS_WITH_AS(run(), "item 10 failed", std::runtime_error);
    CHECK(started.load() < 10000);  // the workers stopped early
    // An invalid_argument (the core's error for bad input) keeps its type.
    CHECK_THROWS_AS(
        st::parallel_for(3, 1, [](std::size_t, const st::CancelToken&) { throw std::invalid_argument("bad"); }),
        std::invalid_argument);
  }

  TEST_CASE("poll returning true cancels: workers see the token and Cancelled is thrown") {
    std::atomic<int> finished{0};
    std::atomic<bool> saw_stop{false};
    const auto t0 = std::chrono::steady_clock::now();
    auto run = [&] {
      st::parallel_for(
          1000, 2,
          [&](std::size_t, const st::CancelToken& cancel) {
            // A long item that checks the token, as the drivers do once per block.
            for (int k = 0; k < 1000; ++k) {
              if (cancel.stop_requested()) {
                saw_stop = true;
                return;
              }
              std::this_thread::sleep_for(1ms);
            }
            finished++;
          },
          [&] { return std::chrono::steady_clock::now() - t0 > 30ms; }, {}, 5ms);
    };
    CHECK_THROWS_AS(run(), st::Cancelled);
    CHECK(saw_stop.load());
    CHECK(finished.load() == 0);
    // Far less than the 1000 s the loop would take uncancelled.
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  }

  TEST_CASE("an exception wins over a cancellation") {
    // The poll cancels only once a work item has thrown, so both have happened
    // whatever the scheduling (a poll that cancels at once could stop the workers
    // before any item ran: on a loaded machine it did, and Cancelled came back).
    std::atomic<bool> thrown{false};
    auto run = [&] {
      st::parallel_for(
          4, 2,
          [&](std::size_t, const st::CancelToken&) {
            thrown = true;
            throw std::logic_error("boom");
          },
          [&] { return thrown.load(); }, {}, 1ms);
    };
    CHECK_THROWS_AS(run(), std::logic_error);
  }
}
