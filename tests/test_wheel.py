"""Shipping the Python package: sdist -> wheel -> fresh virtual environment.

``test_installed_package_*`` run against whatever ``shaped_transformer`` is
importable (the development build, or an installed wheel: cibuildwheel's
test-command runs exactly these).  ``test_wheel_in_fresh_venv`` builds the sdist,
builds the wheel from the sdist with ``pip wheel`` (so a file missing from the
sdist breaks it), installs the wheel with its dependencies from the package index
into a new ``python -m venv`` and imports and simulates there.  It compiles the
whole extension (about a minute on 2 cores) and needs the package index (build
isolation downloads scikit-build-core, pybind11 and cmeel-eigen).
``test_repaired_wheel_in_fresh_venv`` takes the same wheel (built once per
session), checks it with ``auditwheel show`` (no external shared library beyond
the manylinux policy's), repairs it to a manylinux tag with ``auditwheel repair``
and installs and runs the repaired wheel in another fresh venv, as users get it
from PyPI; it skips when auditwheel or patchelf is missing (``.ci/run`` installs
both, and under CI=true it fails instead).  SHAPED_TRANSFORMER_TEST_WHEEL=path
tests that wheel instead of building one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parents[1]

# A tiny run of every method; printed values are checked by the caller.  Shared by
# the in-process test and the fresh-venv test, so both check the same thing.
SMOKE = textwrap.dedent(
    """
    import json
    import numpy as np
    import shaped_transformer as st

    net = st.shaped_transformer(heads=2, tau0=1.0, gamma=0.5)
    V0 = st.inputs.equicorrelated(m=3, rho=0.3)
    out = {"file": st.__file__, "version": st.__version__}
    for method in ("explicit", "law", "exact"):
        r = st.simulate(net, V0=V0, width=16, depth=4, samples=3, method=method, seed=1, threads=2)
        assert r.V.shape == (3, 5, 3, 3), (method, r.V.shape)
        assert np.isfinite(r.V).all(), method
        assert np.allclose(r.V[:, 0], V0), method
        r2 = st.simulate(net, V0=V0, width=16, depth=4, samples=3, method=method, seed=1, threads=1)
        assert np.array_equal(r.V, r2.V), method  # thread count does not change results
        out[method] = float(r.rho[:, -1].mean())
    sde = st.solve_sde(net, V0=V0, T=0.1, steps=8, paths=4, seed=1, threads=2)
    assert sde.V.shape == (4, 9, 3, 3) and np.isfinite(sde.V).all()
    out["sde"] = float(sde.rho[:, -1].mean())
    print(json.dumps(out))
    """
)


def test_installed_package_imports_and_simulates() -> None:
    """The importable package runs a tiny simulation with every method."""
    namespace: dict = {}
    exec(compile(SMOKE, "<smoke>", "exec"), namespace)


def test_installed_package_has_core_functions() -> None:
    """The compiled extension loads and exposes the drivers simulate.py calls."""
    from shaped_transformer._core_loader import core

    assert core is not None
    names = [n for n in dir(core) if not n.startswith("_")]
    assert {"simulate_explicit", "simulate_law", "simulate_exact"} <= set(names)


def _run(cmd: list, cwd: Path | None = None, env: dict | None = None, timeout: float = 1200) -> str:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-8000:]}"
    print(f"[{time.perf_counter() - t0:6.1f} s] {' '.join(map(str, cmd))}")
    return proc.stdout


def _clean_env() -> dict:
    """The environment without our development overrides (build dir, PYTHONPATH)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SHAPED_TRANSFORMER_BUILD_DIR", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist -> `pip wheel`, once for the tests of this file; or the wheel named by
    SHAPED_TRANSFORMER_TEST_WHEEL (one built elsewhere, e.g. by cibuildwheel)."""
    given = os.environ.get("SHAPED_TRANSFORMER_TEST_WHEEL")
    if given:
        assert Path(given).is_file(), f"SHAPED_TRANSFORMER_TEST_WHEEL={given} is not a file"
        return Path(given)
    tmp = tmp_path_factory.mktemp("wheel")
    dist, env = tmp / "dist", _clean_env()
    if importlib.util.find_spec("build") is not None:
        # The sdist must hold all a build needs: the wheel is built from it.
        _run([sys.executable, "-m", "build", "--sdist", "--outdir", dist, ROOT], env=env)
        sdists = list(dist.glob("shaped_transformer-*.tar.gz"))
        assert len(sdists) == 1
        source = sdists[0]
    else:  # `build` is in the test extras; without it, build from the checkout
        source = ROOT
    wheels_dir = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels_dir, source], cwd=tmp, env=env)
    wheels = list(wheels_dir.glob("shaped_transformer-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _install_and_smoke(wheel: Path, tmp: Path) -> dict:
    """Installs ``wheel`` (its dependencies from the package index, nothing from
    this environment) into a new venv under ``tmp`` and runs SMOKE from an empty
    folder there; returns SMOKE's printed values."""
    env = _clean_env()
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], env=env)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([py, "-m", "pip", "install", "-q", wheel], cwd=tmp, env=env)
    # Run from an empty folder so that nothing from the checkout can be imported.
    work = tmp / "run"
    work.mkdir()
    out = _run([py, "-c", SMOKE], cwd=work, env=env, timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(venv.resolve())
    for method in ("explicit", "law", "exact", "sde"):
        assert np.isfinite(result[method])
    return result


def test_wheel_in_fresh_venv(built_wheel: Path, tmp_path: Path) -> None:
    """The wheel as built: its contents, then install in a new venv -> import + simulate."""
    names = zipfile.ZipFile(built_wheel).namelist()
    assert any(n.startswith("shaped_transformer/_core") and n.endswith((".so", ".pyd")) for n in names), names
    assert "shaped_transformer/__init__.py" in names
    # The type information ships with the package (PEP 561).
    assert {"shaped_transformer/py.typed", "shaped_transformer/_core.pyi"} <= set(names)
    # Only the Python component: no C++ headers, static library or CMake package.
    assert not [n for n in names if n.endswith((".hpp", ".a", ".cmake"))]
    _install_and_smoke(built_wheel, tmp_path)


def _auditwheel() -> list[str] | None:
    """The auditwheel command (with patchelf on PATH), or None."""
    bindir = Path(sys.executable).parent
    if importlib.util.find_spec("auditwheel") is None:
        return None
    if shutil.which("patchelf") is None and shutil.which("patchelf", path=str(bindir)) is None:
        return None
    return [sys.executable, "-m", "auditwheel"]


def _show(cmd: list[str], wheel: Path, env: dict) -> dict:
    """`auditwheel show --json`: the tag the wheel is consistent with, the shared
    libraries outside the manylinux policies' lists and the versioned symbols."""
    out = _run([*cmd, "show", "--json", wheel], env=env)  # log lines (stderr) come first
    info, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    newest = {
        lib: max(v, key=lambda s: tuple(int(x) for x in re.findall(r"[0-9]+", s)))
        for lib, v in info.get("versioned_symbols", {}).items()
        if v
    }
    print(
        f"auditwheel show {wheel.name}: tag {info.get('overall_tag')}, external libraries "
        f"{info.get('external_libs')}, newest versioned symbols {newest}"
    )
    return info


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel checks Linux wheels")
def test_repaired_wheel_in_fresh_venv(built_wheel: Path, tmp_path: Path) -> None:
    """auditwheel: the extension needs no shared library outside the manylinux
    policies (so `repair` grafts nothing), the repaired wheel has a manylinux tag,
    and it installs and runs in a fresh venv."""
    cmd = _auditwheel()
    if cmd is None:
        skip_unless_ci("auditwheel and patchelf are needed (pip install auditwheel patchelf)")
        return
    env = _clean_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    info = _show(cmd, built_wheel, env)
    assert not info["pure"] and not info["unsupported_isa"], info
    assert info["external_libs"] == {}, f"libraries outside the manylinux policies: {info['external_libs']}"
    tag = info["overall_tag"]
    assert tag.startswith("manylinux"), info

    repaired_dir = tmp_path / "repaired"
    _run([*cmd, "repair", "--wheel-dir", repaired_dir, built_wheel], env=env)
    repaired = list(repaired_dir.glob("shaped_transformer-*.whl"))
    assert len(repaired) == 1, repaired
    assert tag in repaired[0].name, repaired[0].name
    grafted = [n for n in zipfile.ZipFile(repaired[0]).namelist() if ".libs/" in n]
    assert not grafted, f"auditwheel bundled libraries the extension should not need: {grafted}"
    again = _show(cmd, repaired[0], env)
    assert again["overall_tag"] == tag and again["external_libs"] == {}
    print(f"repaired: {repaired[0].name}")
    _install_and_smoke(repaired[0], tmp_path)
