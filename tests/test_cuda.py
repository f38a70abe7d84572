"""The CUDA backend (docs/cuda.md).

Without a GPU (CI):
  * the per-thread device code, run on the CPU, against the CPU kernels: the
    normals bit for bit, the SDE paths and exact-chain samples to rounding;
  * the device argument: unknown devices and missing CUDA raise clear errors;
  * nvcc compiles the CUDA sources (a CMake build with SHAPED_TRANSFORMER_CUDA=ON
    in a temporary folder: at reduced size the units a CUDA build adds and their
    link interface, with SHAPED_TRANSFORMER_FULL=1 the whole extension, imported;
    skipped when nvcc is absent, never skipped under CI=true when nvcc is there).
With a GPU (benchmarks/gpu_check.sh): CPU vs GPU agreement for every method and
dtype; these tests skip cleanly when no GPU backend is available.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shaped_transformer as st
from conftest import FULL, skip_unless_ci
from shaped_transformer._core_loader import core
from shaped_transformer._device import CudaUnavailableError, cuda_available, cuda_reason

ROOT = Path(__file__).resolve().parents[1]
HAVE_GPU = cuda_available()
gpu = pytest.mark.skipif(not HAVE_GPU, reason=f"no CUDA GPU backend: {cuda_reason()}")


def _equicorrelated(m: int, rho: float) -> np.ndarray:
    V = np.full((m, m), rho)
    np.fill_diagonal(V, 1.0)
    return V


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| over the largest |a| (NaN must match NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(a[ok] - b[ok])) / max(np.max(np.abs(a[ok])), 1e-300))


# ---- the per-thread code on the CPU ------------------------------------------------


@pytest.mark.parametrize("first", [0, 1, 3, 1000, 2**32 * 4 - 2])
def test_device_normals_are_the_cpu_normals_bit_for_bit(first):
    for key in [(0, 0, 0, 0), (12345, 7, 3, 2), (2**64 - 1, 2**32 - 1, 99, 0xC001)]:
        a = np.asarray(core.normals(*key, first, 1027))
        b = np.asarray(core.device_host_normals(*key, first, 1027))
        assert a.dtype == b.dtype == np.float32
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("scheme", ["euler", "tamed_euler"])
@pytest.mark.parametrize("psd", ["clip", "none"])
@pytest.mark.parametrize("m", [2, 5, 8])
def test_device_sde_path_equals_the_cpu_solver(scheme, psd, m):
    net = st.shaped_transformer(heads=2, gamma=0.6)
    V0 = _equicorrelated(m, 0.3)
    save = np.array([0, 1, 40, 80], dtype=np.int64)
    args = (net.to_core(), V0, 1 / 80, 80, save, scheme, psd, 16, 5)
    V1, e1, p1 = core.solve_sde(*args, 1, 20.0)
    V2, e2, p2 = core.device_host_solve_sde(*args, 20.0)
    assert np.array_equal(e1, e2)
    assert np.array_equal(p1, p2)
    assert _rel(V1, V2) < 1e-10


def test_device_sde_blowups_match_the_cpu_solver():
    # gamma near 1 and a low threshold: many paths stop; the stopping steps must agree.
    net = st.make_network(st.ShapedAttention(gamma=0.95, tau0=0.5))
    V0 = _equicorrelated(4, 0.5)
    save = np.array([0, 100], dtype=np.int64)
    args = (net.to_core(), V0, 0.01, 100, save, "euler", "clip", 64, 9)
    V1, e1, _ = core.solve_sde(*args, 1, 3.0)
    V2, e2, _ = core.device_host_solve_sde(*args, 3.0)
    assert 0 < np.sum(e1 >= 0) < 64
    assert np.array_equal(e1, e2)
    assert _rel(V1, V2) < 1e-10


@pytest.mark.parametrize(
    "kw, width",
    [
        (dict(), 64),
        (dict(heads=2, causal=True, alpha=0.5, beta=2.0), 40),
        (dict(heads=3, key_dim=2), 100),  # a singular key Wishart (n_k < m)
        (dict(tau0=0.3), 4),  # n - m = 0: no Wishart remainder
    ],
)
def test_device_exact_sample_equals_the_cpu_chain(kw, width):
    net = st.make_network([st.ShapedAttention(**kw), st.ShapedAttention(gamma=0.4, lam=np.sqrt(1 - 0.16))])
    V0 = _equicorrelated(4, 0.4)
    save = np.array([0, 2, 12], dtype=np.int64)
    V1, e1 = core.simulate_exact(net.to_core(), V0, width, 12, 6, 21, save, 1, 1e4)
    V2, e2 = core.device_host_exact(net.to_core(), V0, width, 12, 6, 21, save, 1e4)
    assert np.array_equal(e1, e2)
    assert _rel(V1, V2) < 1e-11


def test_device_exact_chain_scheme_equals_the_cpu_sde_scheme():
    net = st.make_network([st.ShapedAttention(heads=2)])
    V0 = _equicorrelated(3, 0.2)
    save = np.array([0, 25, 50], dtype=np.int64)
    V1, e1, _ = core.solve_sde(net.to_core(), V0, 1 / 50, 50, save, "exact_chain", "clip", 8, 4, 1, 1e4)
    V2, e2 = core.device_host_exact(net.to_core(), V0, 50, 50, 8, 4, save, 1e4)
    assert np.array_equal(e1, e2)
    assert _rel(V1, V2) < 1e-11


def _layernorm_attention():
    """Attention-only (the device's exact blocks) with LayerNorm: s carried through a block
    without it."""
    return st.make_network(
        [
            st.ShapedAttention(heads=2, norm="pre_layer"),
            st.StandardAttention(norm="post_layer"),
            st.ShapedAttention(gamma=0.4, lam=np.sqrt(1 - 0.16)),
        ]
    )


@pytest.mark.parametrize("width", [9, 64])  # m + 1 (no Wishart remainder) and wider
def test_device_exact_sample_carries_layernorm_state_as_the_cpu_chain(width):
    """From V0 off the unit diagonal (s0 = L0 1_m generic; the device starts from V0 as the
    CPU chain does, not from corr(V0)); width m is refused naming width."""
    net = _layernorm_attention()
    V0 = _equicorrelated(8, 0.3)
    V0[0, 0], V0[5, 5] = 1.6, 0.7
    save = np.array([0, 2, 12], dtype=np.int64)
    V1, e1 = core.simulate_exact(net.to_core(), V0, width, 12, 6, 21, save, 1, 1e4, None, "generic")
    V2, e2 = core.device_host_exact(net.to_core(), V0, width, 12, 6, 21, save, 1e4)
    assert np.array_equal(e1, e2)
    assert _rel(V1, V2) < 1e-11
    with pytest.raises(ValueError, match="^width: .*m \\+ 1"):
        core.device_host_exact(net.to_core(), V0, 8, 1, 1, 0, save[:1], 1e4)


def test_device_code_refuses_what_it_does_not_cover():
    mixed = st.shaped_transformer()
    with pytest.raises(ValueError, match="CPU only"):  # the MLP's O(m^2 n) Gram
        core.device_host_exact(mixed.to_core(), _equicorrelated(3, 0.1), 16, 1, 1, 0, np.array([0, 1]), 1e4)
    with pytest.raises(ValueError, match="m <= 16"):
        core.device_host_solve_sde(
            mixed.to_core(), _equicorrelated(17, 0.1), 0.1, 1, np.array([0, 1]), "euler", "clip", 1, 0, 1e4
        )


# ---- the device argument -------------------------------------------------------------


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="device must be one of"):
        st.simulate(st.ShapedAttention(), V0=_equicorrelated(2, 0.1), width=8, depth=1, device="gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        st.solve_sde(st.ShapedAttention(), V0=_equicorrelated(2, 0.1), T=0.1, device=None)


def test_cuda_availability_is_reported_with_a_reason():
    assert isinstance(core.cuda_built(), bool)
    if HAVE_GPU:
        assert cuda_reason() == ""
        return
    assert cuda_reason()
    if not core.cuda_built():
        assert "SHAPED_TRANSFORMER_CUDA=ON" in cuda_reason()
    with pytest.raises(CudaUnavailableError, match="device='cuda' is not available"):
        st.simulate(st.ShapedAttention(), V0=_equicorrelated(2, 0.1), width=8, depth=1, device="cuda")
    with pytest.raises(CudaUnavailableError):
        st.solve_sde(st.ShapedAttention(), V0=_equicorrelated(2, 0.1), T=0.1, device="cuda")


# ---- nvcc compiles the CUDA sources (no GPU needed) ------------------------------------


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for p in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if os.path.exists(p):
            return p
    return None


#: The translation units that differ in a CUDA build (CMake targets ->
#: object files): the kernels (nvcc), the host driver of the explicit network, and
#: the one binding unit that SHAPED_TRANSFORMER_HAVE_CUDA changes.  Every other
#: unit is the ordinary CPU build, which the wheels of CI compile anyway.
_CUDA_OBJECTS = (
    "CMakeFiles/shaped_transformer_cuda_kernels.dir/cpp/cuda/kernels.cu.o",
    "CMakeFiles/shaped_transformer_cuda.dir/cpp/cuda/explicit_cuda.cpp.o",
    "CMakeFiles/_core.dir/cpp/python/bind_cuda.cpp.o",
)
#: Mangled prefix of the host interface of the kernels (cpp/cuda/cuda_api.hpp).
_CUDA_NAMESPACE = "_ZN18shaped_transformer4cuda"


def _symbols(nm: str, files: list[Path]) -> tuple[set[str], set[str]]:
    """(defined, undefined) symbol names of object files or archives (``nm``)."""
    defined: set[str] = set()
    undefined: set[str] = set()
    for f in files:
        out = subprocess.run([nm, "--format=posix", str(f)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 2 or line.endswith(":"):
                continue
            (undefined if fields[1] in ("U", "w", "v") else defined).add(fields[0])
    return defined, undefined


@pytest.mark.skipif(_nvcc() is None, reason="nvcc not found (CI with nvcc always runs this test)")
def test_nvcc_compiles_the_cuda_backend(tmp_path):
    """Configures the extension with SHAPED_TRANSFORMER_CUDA=ON (one GPU architecture,
    to keep it short) and compiles what a CUDA build adds: the kernels with nvcc, the
    host driver and the binding unit with SHAPED_TRANSFORMER_HAVE_CUDA.  Then checks
    the link interface of those objects: every function of shaped_transformer::cuda
    that the driver or the binding calls is defined by them, and every CUDA runtime
    function the kernels call is in the static CUDA runtime (libcudart_static.a).

    At reduced size (CI) only those three objects are compiled (about 40 CPU-seconds):
    building and linking the whole extension recompiled every CPU unit that the
    wheels of CI compile anyway (about 8 CPU-minutes, the longest test of the suite).
    With SHAPED_TRANSFORMER_FULL=1 the whole extension is built and imported as
    well: cuda_built() must be True and, on a machine without a GPU,
    cuda_available() False with the runtime's reason (benchmarks/gpu_check.sh
    builds and imports it on a GPU machine)."""
    import pybind11

    build = tmp_path / "build"
    nvcc = _nvcc()
    cmd = [
        "cmake",
        "-S",
        str(ROOT),
        "-B",
        str(build),
        "-G",
        "Ninja" if shutil.which("ninja") else "Unix Makefiles",
        "-DCMAKE_BUILD_TYPE=Release",
        "-DSHAPED_TRANSFORMER_PYTHON=ON",
        "-DSHAPED_TRANSFORMER_CUDA=ON",
        "-DSHAPED_TRANSFORMER_INSTALL=OFF",
        "-DCMAKE_CUDA_ARCHITECTURES=90",
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]
    if shutil.which("ccache"):
        cmd += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    # Ninja builds single object files (the paths from the build folder); with
    # another generator (no ninja: it is in the test extras) the whole extension.
    whole = FULL or not shutil.which("ninja")
    targets = ["--target", "_core"] if whole else ["--", *_CUDA_OBJECTS]
    run = subprocess.run(["cmake", "--build", str(build), "-j2", *targets], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    objects = [build / o for o in _CUDA_OBJECTS]
    assert all(o.is_file() for o in objects), objects

    nm = shutil.which("nm")
    if nm is None:
        skip_unless_ci("nm (binutils) is needed to check the CUDA objects' symbols")
        return
    defined, undefined = _symbols(nm, objects)
    missing = sorted(s for s in undefined - defined if s.startswith(_CUDA_NAMESPACE))
    assert not missing, f"shaped_transformer::cuda functions called but defined by no CUDA object: {missing}"
    runtime = [s for s in undefined if s.startswith(("cuda", "__cuda"))]
    assert runtime, "the kernels call no CUDA runtime function: were they compiled at all?"
    cache = (build / "CMakeCache.txt").read_text()
    found = re.search(r"^CUDA_cudart_static_LIBRARY:FILEPATH=(.+)$", cache, re.MULTILINE)
    assert found, "CMake found no static CUDA runtime (libcudart_static.a)"
    in_runtime, _ = _symbols(nm, [Path(found.group(1))])
    absent = sorted(set(runtime) - in_runtime)
    assert not absent, f"CUDA runtime functions missing from {found.group(1)}: {absent}"

    if not whole:
        return
    probe = (
        "import json, shaped_transformer._core_loader as l; c = l.core; "
        "print(json.dumps([c.__file__, c.cuda_built(), c.cuda_available(), c.cuda_reason(), "
        "hasattr(c, 'cuda_solve_sde')]))"
    )
    env = dict(os.environ, SHAPED_TRANSFORMER_BUILD_DIR=str(build), PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    path, built, avail, reason, has_driver = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(path).parent == build, path  # the module just built, not an installed one
    assert built and has_driver
    assert avail == (reason == "")  # no GPU here: False with the runtime's reason


# ---- CPU vs GPU (skipped without a GPU) --------------------------------------------------


@gpu
def test_gpu_normals_are_the_cpu_normals_bit_for_bit():
    for key in [(0, 0, 0, 0), (12345, 7, 3, 2), (2**64 - 1, 2**32 - 1, 99, 0xC001)]:
        for first in (0, 3, 2**32 * 4 - 5):
            a = np.asarray(core.normals(*key, first, 100_003))
            b = np.asarray(core.cuda_normals(*key, first, 100_003))
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


_EXPLICIT_NETS = {
    "shaped_transformer": lambda: st.shaped_transformer(heads=2),
    "standard_pre_rms_concat": lambda: st.make_network(
        [st.StandardAttention(heads=2, concat=True, norm="pre_rms"), st.ReluMLP(norm="post_layer")]
    ),
    "shaped_causal_keydim": lambda: st.make_network([st.ShapedAttention(causal=True, key_dim=5, alpha=0.7)]),
}


@gpu
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("name", sorted(_EXPLICIT_NETS))
def test_gpu_explicit_equals_cpu(name, dtype, tol):
    net = _EXPLICIT_NETS[name]()
    kw = dict(V0=_equicorrelated(4, 0.3), width=96, depth=4, samples=3, seed=7, dtype=dtype, blowup=1e4, return_X=True)
    a = st.simulate(net, method="explicit", device="cpu", **kw)
    b = st.simulate(net, method="explicit", device="cuda", **kw)
    assert np.array_equal(np.isinf(a.exploded_at), np.isinf(b.exploded_at))
    assert _rel(a.V, b.V) < tol
    assert _rel(a.X, b.X) < 10 * tol


@gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_explicit_wide_block(dtype):
    # n not a multiple of 4 (weights straddle Philox groups) and wide enough to split the rows
    net = st.ShapedAttention()
    kw = dict(V0=_equicorrelated(8, 0.3), width=4099, depth=1, samples=1, seed=3, dtype=dtype, blowup=1e4)
    a = st.simulate(net, method="explicit", device="cpu", threads=2, **kw)
    b = st.simulate(net, method="explicit", device="cuda", **kw)
    assert _rel(a.V, b.V) < (1e-10 if dtype == "float64" else 1e-4)


@gpu
def test_gpu_exact_equals_cpu():
    net = st.make_network([st.ShapedAttention(heads=2), st.ShapedAttention(causal=True, alpha=0.5)])
    kw = dict(V0=_equicorrelated(8, 0.3), width=256, depth=64, samples=200, seed=1, method="exact", blowup=1e4)
    a = st.simulate(net, device="cpu", **kw)
    b = st.simulate(net, device="cuda", **kw)
    # libdevice's exp / log may differ from glibc's by an ulp: agreement to rounding
    assert np.array_equal(np.isinf(a.exploded_at), np.isinf(b.exploded_at))
    assert _rel(a.V, b.V) < 1e-9


@gpu
def test_gpu_exact_layernorm_equals_cpu():
    """LayerNorm's state s on the GPU threads, from tokens (s0 = X0 1 / sqrt(n))."""
    X0 = np.random.default_rng(5).standard_normal((8, 256))
    kw = dict(X0=X0, depth=64, samples=200, seed=1, method="exact", blowup=1e4)
    a = st.simulate(_layernorm_attention(), device="cpu", **kw)
    b = st.simulate(_layernorm_attention(), device="cuda", **kw)
    assert np.array_equal(np.isinf(a.exploded_at), np.isinf(b.exploded_at))
    assert _rel(a.V, b.V) < 1e-9


@gpu
@pytest.mark.parametrize(
    "scheme, psd", [("euler", "clip"), ("euler", "none"), ("tamed_euler", "clip"), ("exact_chain", "clip")]
)
@pytest.mark.parametrize("m", [3, 4, 8, 12])
def test_gpu_sde_equals_cpu(scheme, psd, m):
    net = st.shaped_transformer(heads=2) if scheme != "exact_chain" else st.ShapedAttention(heads=2)
    kw = dict(T=0.5, dt=1 / 200, paths=300, seed=2, scheme=scheme, psd=psd, blowup=1e4, save_at=[0, 0.25, 0.5])
    a = st.solve_sde(net, V0=_equicorrelated(m, 0.3), device="cpu", **kw)
    b = st.solve_sde(net, V0=_equicorrelated(m, 0.3), device="cuda", **kw)
    assert np.array_equal(np.isinf(a.exploded_at), np.isinf(b.exploded_at))
    assert np.array_equal(a.info["projections"], b.info["projections"])
    assert _rel(a.V, b.V) < 1e-9


@gpu
def test_gpu_memory_check_refuses_before_allocating():
    from shaped_transformer._device import check_gpu_memory

    with pytest.raises(st.ResourceError, match="GPU memory"):
        check_gpu_memory(10**15, "a test")
