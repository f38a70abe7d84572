// Host interface of the CUDA kernels (cpp/cuda/kernels.cu).  Plain C++ types only,
// so that the orchestration code (explicit_cuda.cpp, bind_cuda.cpp) is compiled by
// the ordinary C++ compiler.  Every function throws std::runtime_error with the CUDA
// error text when a CUDA call fails.  No function keeps state between calls (the
// scratch buffers belong to the caller), so several host threads may call them at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "shaped_transformer/device/philox.hpp"
#include "shaped_transformer/device/problems.hpp"

namespace shaped_transformer::cuda {

/// True when the CUDA runtime sees at least one GPU; otherwise `reason` says why.
bool available(std::string& reason);
/// Name of GPU 0 and its memory (free, total) in bytes.
std::string device_name();
void mem_info(std::size_t& free_bytes, std::size_t& total_bytes);

/// Normals first .. first+count-1 of stream s, generated on the GPU (tests: they must
/// equal the CPU's bit for bit).
void normals(const device::Key& s, std::uint64_t first, std::size_t count, float* host_out);

// ---- memory --------------------------------------------------------------------
void* dalloc(std::size_t bytes);  ///< throws std::runtime_error naming the size on failure
void dfree(void* p) noexcept;
void to_device(void* dst, const void* src, std::size_t bytes);
void to_host(void* dst, const void* src, std::size_t bytes);
void dzero(void* p, std::size_t bytes);
void dcopy(void* dst, const void* src, std::size_t bytes);

/// Owning device array of T.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) { resize(n); }
  ~DeviceArray() { dfree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void resize(std::size_t n) {
    if (n <= n_) return;
    dfree(p_);
    p_ = nullptr;
    n_ = 0;
    p_ = static_cast<T*>(dalloc(n * sizeof(T)));
    n_ = n;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// ---- the explicit network's pieces (row-major device matrices) ------------------
/// Elements of workspace gaussian_gemm needs for these sizes (0: none).
std::size_t gemm_workspace(int m, std::int64_t n_in, std::int64_t n_out);
/// Out (m x n_out) = scale * X (m x n_in) * W, W(i, j) = normal i * n_out + j of
/// stream s, generated inside the kernel (never stored).  ws: gemm_workspace elements.
void gaussian_gemm(const device::Key& s, int m, std::int64_t n_in, std::int64_t n_out, const float* X, std::int64_t ldx,
                   float* Out, std::int64_t ldo, float scale, float* ws);
void gaussian_gemm(const device::Key& s, int m, std::int64_t n_in, std::int64_t n_out, const double* X,
                   std::int64_t ldx, double* Out, std::int64_t ldo, double scale, double* ws);
/// out (host, m x m) = A B^T, accumulated in double (A, B: m x n, leading dims lda,
/// ldb); scratch: m x m doubles of device memory.
void cross(const float* A, std::int64_t lda, const float* B, std::int64_t ldb, int m, std::int64_t n, double* scratch,
           double* out);
void cross(const double* A, std::int64_t lda, const double* B, std::int64_t ldb, int m, std::int64_t n, double* scratch,
           double* out);
/// Out (m x n) = A X (A: device m x m, already in the arithmetic type), or Out += A X.
void left_mix(const float* A, const float* X, std::int64_t ldx, int m, std::int64_t n, float* Out, std::int64_t ldo,
              bool accumulate);
void left_mix(const double* A, const double* X, std::int64_t ldx, int m, std::int64_t n, double* Out, std::int64_t ldo,
              bool accumulate);
/// X = a X + b B (both m x n, leading dimension n).
void axpby(float a, float* X, float b, const float* B, std::size_t count);
void axpby(double a, double* X, double b, const double* B, std::size_t count);
/// Per-token normalisation (RMS, or LayerNorm without gain and bias) of X (m x n).
void normalize_rows(float* X, int m, std::int64_t n, bool layer);
void normalize_rows(double* X, int m, std::int64_t n, bool layer);
/// X = f X.
void scale(float* X, std::size_t count, float f);
void scale(double* X, std::size_t count, double f);
/// x -> x > 0 ? sp x : sm x.
void leaky(float* X, std::size_t count, float sp, float sm);
void leaky(double* X, std::size_t count, double sp, double sm);

// ---- width-independent paths: one thread per path / sample -----------------------
/// `poll` is called between launches (chunks of paths); returning true stops the
/// run (the caller discards the result).  `progress(done)` after every chunk.
struct Hooks {
  std::function<bool()> poll;
  std::function<void(std::size_t)> progress;
};
/// Paths 0..paths-1 of the SDE; out: paths x nsave x m x m (host), exploded and
/// projections: paths (host).  Returns false when stopped by poll.
bool solve_sde(const device::SdeProblem& p, const std::vector<std::int64_t>& save, std::int64_t paths, double* out,
               std::int64_t* exploded, std::int64_t* projections, const Hooks& hooks);
/// Samples 0..samples-1 of the attention-only exact chain.
bool exact_chain(const device::ExactProblem& p, const std::vector<std::int64_t>& save, std::int64_t samples,
                 double* out, std::int64_t* exploded, const Hooks& hooks);

}  // namespace shaped_transformer::cuda
