"""Parameter sweeps that survive interruptions and run on any executor.

:func:`sweep` evaluates a function (or the built-in :func:`run_point` study of
one network configuration) at every point of a grid, on any
:class:`concurrent.futures.Executor`: a local ``ProcessPoolExecutor`` by default,
``dask.distributed.Client(...).get_executor()`` on a cluster, or mpi4py's
``MPIPoolExecutor``.  Each finished point is written at once to its own JSON
file in ``out_dir`` (atomically: a temporary file and ``os.replace``), named by
a stable hash of the function name and its parameters.  Running the same sweep
again skips every point whose file exists, so an interrupted sweep (Ctrl-C, a
killed job, a lost node) resumes without recomputing or losing finished points.

A saved point is reused only when it was made by the same version of the package
(a changed model must not bring back old numbers) and its parameters still hash
to its file name; any other saved point is recomputed with a :class:`SweepWarning`
saying why (or, with ``stale="refuse"``, the sweep stops with a ValueError).

The worker only computes; the process that called :func:`sweep` writes the
files, so the cluster needs no shared file system.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from .sde import Scheme

__all__ = ["sweep", "load", "grid_points", "point_key", "run_point", "SweepResults", "SweepError", "SweepWarning"]

#: Layout of a point's file; 2 added the package version.
_FORMAT = 2


class SweepWarning(UserWarning):
    """Saved points were not reused: made by another version of the package, in an
    older file layout, or with parameters that no longer hash to their file name."""


def _version() -> str:
    """The package version, from the extension (importing the package here would be circular)."""
    from ._core_loader import core

    return str(core.__version__)


class SweepError(RuntimeError):
    """Some points raised; the others were saved.

    Parameters
    ----------
    message : str
        The error message.
    failures : dict
        Point key -> (parameters, error text) of every failed point; kept as the
        attribute ``failures``.
    """

    def __init__(self, message: str, failures: dict[str, tuple[dict, str]]):
        super().__init__(message)
        self.failures = failures


# ---------------------------------------------------------------------------
# Grid and keys
# ---------------------------------------------------------------------------


def _jsonable(v: Any) -> Any:
    """Plain JSON types for parameters and results (NumPy scalars and arrays too)."""
    if isinstance(v, (str, bool)) or v is None:
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None if math.isnan(f) else ("inf" if f > 0 else "-inf")
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    raise TypeError(f"value of type {type(v).__name__} is not JSON-serializable: {v!r}")


def grid_points(grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]]) -> list[dict]:
    """The points of a grid.

    Parameters
    ----------
    grid : mapping or iterable of mapping
        A mapping name -> values (their Cartesian product, in the order given; a
        single value counts as a list of one) or an explicit sequence of parameter
        dictionaries.

    Returns
    -------
    list of dict
        One parameter dictionary per point.

    Raises
    ------
    ValueError
        For a parameter without values, or no points at all.

    Examples
    --------
    >>> grid_points({"tau0": [0.5, 1.0], "gamma": 0.5})
    [{'tau0': 0.5, 'gamma': 0.5}, {'tau0': 1.0, 'gamma': 0.5}]
    """
    if isinstance(grid, Mapping):
        names = list(grid)
        values = []
        for k in names:
            v = grid[k]
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                v = [v]
            v = list(v)
            if not v:
                raise ValueError(f"grid: parameter {k!r} has no values")
            values.append(v)
        pts = [dict(zip(names, combo)) for combo in itertools.product(*values)]
    else:
        try:
            pts = [dict(p) for p in grid]
        except (TypeError, ValueError):
            raise ValueError("grid must be a mapping name -> list of values, or a sequence of dictionaries") from None
    if not pts:
        raise ValueError("grid has no points")
    return pts


def _function_name(fn: Callable) -> str:
    mod = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{mod}:{name}"


def point_key(params: Mapping[str, Any], function: str = "") -> str:
    """A stable key of one point: 20 hex digits of the SHA-256 of the function name and its parameters.

    The parameters are serialized as canonical JSON (sorted keys), so the key does
    not depend on the order of the grid or on the Python session.

    Parameters
    ----------
    params : mapping
        The point's parameters.
    function : str, default ""
        The name of the function evaluated at the point.

    Returns
    -------
    str
        The key, also the point's file name (``<key>.json``).

    Examples
    --------
    >>> point_key({"a": 1, "b": 2}) == point_key({"b": 2, "a": 1})
    True
    """
    blob = json.dumps({"function": function, "params": _jsonable(dict(params))}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _atomic_write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------
# Results table
# ---------------------------------------------------------------------------


class SweepResults:
    """A table with one row per finished point: the parameters, then the results.

    Nested result dictionaries are flattened with dots (``a.b``).

    Parameters
    ----------
    records : list of dict
        The saved records (``params``, ``result``, ``key``, ...), one per point, in
        the table's order; kept as the attribute ``records``.

    Attributes
    ----------
    rows : list of dict
        The flat rows.
    """

    def __init__(self, records: list[dict]):
        self.records = records
        self.rows: list[dict] = []
        for r in records:
            row = dict(r["params"])
            res = r["result"]
            if isinstance(res, Mapping):
                row.update(_flatten(res))
            else:
                row["result"] = res
            self.rows.append(row)

    @property
    def columns(self) -> list[str]:
        """The column names, in order of first appearance."""
        cols: list[str] = []
        for row in self.rows:
            for k in row:
                if k not in cols:
                    cols.append(k)
        return cols

    @property
    def keys(self) -> list[str]:
        """The point keys of the rows."""
        return [r["key"] for r in self.records]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]

    def column(self, name: str) -> np.ndarray:
        """The values of one column.

        Parameters
        ----------
        name : str
            The column.

        Returns
        -------
        ndarray
            Floats (NaN where a row lacks the column) when the values are numbers,
            else an object array (None where missing).

        Raises
        ------
        KeyError
            For an unknown column.
        """
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {self.columns}")
        vals = [row.get(name) for row in self.rows]
        try:
            return np.array([np.nan if v is None else v for v in vals], dtype=float)
        except (TypeError, ValueError):
            return np.array(vals, dtype=object)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Writes the table as CSV (lists and dicts as JSON, missing values empty).

        Parameters
        ----------
        path : str or PathLike
            The file.

        Returns
        -------
        Path
            The file written.
        """
        import csv

        path = Path(path)
        cols = self.columns
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for row in self.rows:
                w.writerow(
                    [
                        ""
                        if row.get(c) is None
                        else json.dumps(row[c])
                        if isinstance(row.get(c), (list, dict))
                        else row[c]
                        for c in cols
                    ]
                )
        return path

    def to_pandas(self):  # pragma: no cover - optional dependency
        """The table as a ``pandas.DataFrame`` (needs pandas).

        Returns
        -------
        pandas.DataFrame
        """
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)

    def __repr__(self) -> str:
        return f"SweepResults({len(self)} rows, columns={self.columns})"


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def load(out_dir: str | os.PathLike, *, keys: Sequence[str] | None = None) -> SweepResults:
    """The results saved in a sweep folder.

    Saved points that may not be reused (another version of the package, an older
    file layout, parameters that no longer hash to the file name) are left out with
    a :class:`SweepWarning`.

    Parameters
    ----------
    out_dir : str or PathLike
        The folder of a :func:`sweep`.
    keys : sequence of str, optional
        The points to load, in this order (default: all, in grid order).

    Returns
    -------
    SweepResults

    Raises
    ------
    ValueError
        If ``out_dir`` is not a folder.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} is not a directory")
    records, stale = _read_all(out_dir)
    if stale:
        import warnings

        warnings.warn(_stale_message(stale, out_dir) + "; they are left out", SweepWarning, stacklevel=2)
    if keys is None:
        recs = sorted(records.values(), key=lambda r: (r.get("index", 0), r["key"]))
    else:
        recs = [records[k] for k in keys if k in records]
    return SweepResults(recs)


def _remove_stale_temporaries(out_dir: Path, age_s: float = 600.0) -> None:
    """Deletes temporary files left by a process killed between writing and renaming.

    A temporary file lives for milliseconds, so one older than ``age_s`` is stale
    even when other sweeps write into the same folder."""
    now = time.time()
    for p in out_dir.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > age_s:
                p.unlink()
        except OSError:
            pass


def _read_all(out_dir: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """(records that may be reused, {key: why} for saved points that may not)."""
    records: dict[str, dict] = {}
    stale: dict[str, str] = {}
    version = _version()
    for p in out_dir.glob("*.json"):
        if p.name.startswith(".tmp-"):
            continue
        try:
            with open(p) as f:
                r = json.load(f)
        except (OSError, ValueError):
            continue  # not one of ours, or unreadable: that point is recomputed
        if not (isinstance(r, dict) and r.get("key") == p.stem and "params" in r):
            continue  # not one of ours
        if r.get("format") != _FORMAT:
            stale[p.stem] = (
                f"saved in an older file layout (format {r.get('format')!r}, now {_FORMAT}), without a version"
            )
        elif r.get("version") != version:
            stale[p.stem] = f"made by shaped-transformer {r.get('version')}, this is {version}"
        elif point_key(r["params"], r.get("function", "")) != p.stem:
            stale[p.stem] = "its parameters no longer hash to its file name (edited, or keyed differently)"
        else:
            records[p.stem] = r
    return records, stale


def _stale_message(stale: Mapping[str, str], out_dir: Path) -> str:
    reasons = sorted(set(stale.values()))
    return (
        f"{len(stale)} saved point(s) in {out_dir} cannot be reused: "
        + "; ".join(reasons[:3])
        + ("; ..." if len(reasons) > 3 else "")
    )


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


def _call(fn: Callable, params: dict) -> tuple[Any, float]:
    t0 = time.perf_counter()
    res = fn(**params)
    return res, time.perf_counter() - t0


def sweep(
    function_or_config: Callable[..., Any] | Mapping[str, Any] | str | os.PathLike,
    grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]] | None,
    out_dir: str | os.PathLike,
    executor: cf.Executor | None = None,
    *,
    max_workers: int | None = None,
    errors: str = "raise",
    progress: bool | None = None,
    stale: Literal["recompute", "refuse"] = "recompute",
) -> SweepResults:
    """Evaluates ``function_or_config`` at every point of ``grid``; saves and resumes.

    Parameters
    ----------
    function_or_config : a picklable top-level function called as ``f(**point)``
        that returns a JSON-serializable value (best: a flat dict of numbers); or a
        dict of base parameters of :func:`run_point`, which each grid point
        overrides; or the path of a TOML file with a ``[base]`` table (those
        parameters) and an optional ``[grid]`` table (used when ``grid`` is None).
    grid : mapping name -> list of values (Cartesian product) or a list of dicts.
    out_dir : folder for the results, one ``<key>.json`` per point; created if needed.
    executor : any ``concurrent.futures.Executor`` (it is not shut down here).
        None: a local ``ProcessPoolExecutor(max_workers)`` made and closed here.
    max_workers : workers of the default executor.
    errors : "raise" (default: finish all other points, then raise SweepError)
        or "skip" (leave the failed points out of the table; they are retried
        on the next run).
    progress : tqdm bar over points (None: only on a terminal).
    stale : what to do with a saved point of this grid that may not be reused
        (made by another version of the package, in an older file layout, or
        whose parameters no longer hash to its name): "recompute" it (default,
        with a :class:`SweepWarning`) or "refuse" (ValueError, nothing runs).

    Returns
    -------
    SweepResults with one row per grid point in grid order.  Points already in
    ``out_dir`` are loaded, not recomputed.  On KeyboardInterrupt the pending
    points are cancelled and the finished ones stay on disk.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    if stale not in ("recompute", "refuse"):
        raise ValueError(f"stale must be 'recompute' or 'refuse', got {stale!r}")
    if executor is not None and not isinstance(executor, cf.Executor) and not hasattr(executor, "submit"):
        raise ValueError("executor must be a concurrent.futures.Executor (or have a submit method)")
    fn, grid = _resolve(function_or_config, grid)
    points = grid_points(grid)
    fname = _function_name(fn)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = [point_key(p, fname) for p in points]
    _remove_stale_temporaries(out)
    done, old = _read_all(out)
    _refuse_or_warn_stale({k: why for k, why in old.items() if k in set(keys)}, out, stale)
    todo = [(i, k, p) for i, (k, p) in enumerate(zip(keys, points)) if k not in done]
    todo = list({k: (i, k, p) for i, k, p in todo}.values())  # duplicate points run once
    failures: dict[str, tuple[dict, str]] = {}
    if todo:
        failures = _run_points(fn, todo, out, executor, max_workers, progress, total=len(points))
    if failures and errors == "raise":
        lines = "; ".join(f"{p}: {e}" for p, e in list(failures.values())[:5])
        raise SweepError(
            f"{len(failures)} of {len(points)} points failed (finished points were saved): {lines}", failures
        )
    records, _ = _read_all(out)
    return SweepResults([records[k] for k in dict.fromkeys(keys) if k in records])


def _refuse_or_warn_stale(old: dict[str, str], out: Path, stale: str) -> None:
    """Saved points of this grid that may not be reused: refused, or recomputed with a warning."""
    if not old:
        return
    if stale == "refuse":
        raise ValueError(_stale_message(old, out) + "; remove them or pass stale='recompute'")
    import warnings

    warnings.warn(_stale_message(old, out) + "; they are recomputed", SweepWarning, stacklevel=3)


def _run_points(
    fn: Callable,
    todo: list[tuple[int, str, dict]],
    out: Path,
    executor: cf.Executor | None,
    max_workers: int | None,
    progress: bool | None,
    *,
    total: int,
) -> dict[str, tuple[dict, str]]:
    """Runs the pending points on the executor, writing each finished point's record
    as it arrives; returns the failed points (key -> (params, error)).  On any
    exception (Ctrl-C) the pending points are cancelled and the finished ones stay."""
    from tqdm.auto import tqdm

    fname, version = _function_name(fn), _version()
    own = executor is None
    ex: cf.Executor = cf.ProcessPoolExecutor(max_workers=max_workers) if executor is None else executor
    bar = tqdm(
        total=total,
        initial=total - len(todo),
        desc="sweep",
        unit="point",
        disable=None if progress is None else not progress,
    )
    futures: dict[Any, tuple[int, str, dict]] = {}
    failures: dict[str, tuple[dict, str]] = {}
    interrupted = False
    try:
        for i, k, p in todo:
            futures[ex.submit(_call, fn, p)] = (i, k, p)
        for fut in cf.as_completed(futures):
            i, k, p = futures[fut]
            try:
                res, elapsed = fut.result()
                record = {
                    "format": _FORMAT,
                    "version": version,
                    "key": k,
                    "index": i,
                    "function": fname,
                    "params": _jsonable(p),
                    "result": _jsonable(res),
                    "elapsed_s": elapsed,
                    "finished_at": time.time(),
                }
            except Exception as exc:  # a failing point must not lose the others
                failures[k] = (p, f"{type(exc).__name__}: {exc}")
                bar.update(1)
                continue
            _atomic_write_json(out / f"{k}.json", record)
            bar.update(1)
    except BaseException:
        interrupted = True
        for f in futures:
            f.cancel()
        raise
    finally:
        bar.close()
        if own:
            # after Ctrl-C do not wait for the points in flight (they are lost anyway)
            ex.shutdown(wait=not interrupted, cancel_futures=True)
    return failures


def _resolve(function_or_config, grid):
    if callable(function_or_config):
        if grid is None:
            raise ValueError("grid must be given with a function")
        return function_or_config, grid
    if isinstance(function_or_config, (str, os.PathLike)):
        from ._toml import load_toml

        cfg = load_toml(function_or_config)
        base = dict(cfg.get("base", {}))
        if grid is None:
            grid = cfg.get("grid")
        if grid is None:
            raise ValueError(f"grid is None and {function_or_config} has no [grid] table")
        function_or_config = base
    if isinstance(function_or_config, Mapping):
        if grid is None:
            raise ValueError("grid must be given with a config dictionary")
        unknown = set(function_or_config) - set(_RUN_POINT_PARAMS)
        if unknown:
            raise ValueError(f"function_or_config: unknown parameters {sorted(unknown)}; known: {_RUN_POINT_PARAMS}")
        base = dict(function_or_config)
        points = [{**base, **p} for p in grid_points(grid)]
        for p in points:
            bad = set(p) - set(_RUN_POINT_PARAMS)
            if bad:
                raise ValueError(f"grid: unknown parameters {sorted(bad)}; known: {_RUN_POINT_PARAMS}")
        return run_point, points
    raise ValueError("function_or_config must be a callable, a dict of run_point parameters or a TOML path")


# ---------------------------------------------------------------------------
# The built-in point: one network configuration, summarized
# ---------------------------------------------------------------------------

_RUN_POINT_PARAMS = (
    "block",
    "heads",
    "tau0",
    "gamma",
    "c_plus",
    "c_minus",
    "m",
    "rho0",
    "width",
    "T",
    "samples",
    "method",
    "dt",
    "scheme",
    "seed",
    "threads",
    "blowup",
)


def run_point(
    *,
    block: str = "shaped_transformer",
    heads: int = 1,
    tau0: float = 1.0,
    gamma: float = 0.5,
    c_plus: float = 0.0,
    c_minus: float = -1.0,
    m: int = 8,
    rho0: float = 0.3,
    width: int = 256,
    T: float = 1.0,
    samples: int = 500,
    method: Literal["exact", "explicit", "law", "sde"] = "exact",
    dt: float | None = None,
    scheme: Scheme = "euler",
    seed: int = 0,
    threads: int | None = 1,
    blowup: float = 1e4,
) -> dict:
    """Runs one configuration and returns summary numbers of the final covariance.

    The function that a TOML sweep (``shaped-transformer sweep``) evaluates at every
    point: each parameter is a key of ``[base]`` or ``[grid]``.

    Parameters
    ----------
    block : str, default "shaped_transformer"
        A block-kind name of :func:`shaped_transformer.make_network`.
    heads, tau0, gamma, c_plus, c_minus : number
        The block parameters (as in :func:`shaped_transformer.make_network`).
    m : int, default 8
        The number of tokens.
    rho0 : float, default 0.3
        The input correlation (equicorrelated V0, unit diagonal).
    width : int, default 256
        The network's width n (its depth is round(T * width)); for the SDE, the
        default step is 1 / width.
    T : float, default 1.0
        depth / width, or the SDE's final time.
    samples : int, default 500
        Networks or SDE paths.
    method : {"exact", "explicit", "law", "sde"}, default "exact"
        A network method of :func:`shaped_transformer.simulate`, or the covariance
        SDE.
    dt : float, optional
        The SDE step (default 1 / width).
    scheme : {"euler", "tamed_euler", "exact_chain"}, default "euler"
        The SDE scheme (tamed Euler suppresses blow-ups at practical steps,
        docs/model.md section 6).
    seed : int, default 0
        The seed.
    threads : int, optional, default 1
        Worker threads of the core (one per point: the sweep runs points in
        parallel).
    blowup : float, default 1e4
        The stopping rule shared by networks and SDE.

    Returns
    -------
    dict
        ``rho_mean``, ``rho_sem``, ``rho_median``, ``rho_q05``, ``rho_q95`` (the final
        off-diagonal correlations; None when every sample blew up),
        ``effective_rank``, ``min_eig`` (means of the effective rank and of the
        normalized smallest eigenvalue), ``exploded`` and ``samples``.
    """
    from . import analysis as an
    from ._blocks import make_network
    from .inputs import equicorrelated

    net = make_network(block, heads=heads, tau0=tau0, gamma=gamma, c_plus=c_plus, c_minus=c_minus)
    V0 = equicorrelated(m, rho0)
    if method == "sde":
        from .sde import solve_sde

        step = (1.0 / width) if dt is None else float(dt)
        res = solve_sde(
            net,
            V0=V0,
            T=T,
            dt=step,
            paths=samples,
            scheme=scheme,
            seed=seed,
            threads=threads,
            save_at=np.array([0.0, T]),
            blowup=blowup,
            progress=False,
        )
    else:
        from .simulate import simulate

        depth = int(round(T * width))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = simulate(
                net,
                V0=V0,
                width=width,
                depth=depth,
                samples=samples,
                method=method,
                seed=seed,
                threads=threads,
                save_at=np.array([0, depth]),
                blowup=blowup,
                progress=False,
            )
    VT = res.V[:, -1]
    rho = an.off_diagonal(an.correlations(VT))
    ok = np.all(np.isfinite(rho), axis=1)
    r = rho[ok]
    out = {
        "rho_mean": float(r.mean()) if r.size else None,
        "rho_sem": float(r.mean(axis=1).std(ddof=1) / math.sqrt(r.shape[0])) if r.shape[0] > 1 else None,
        "rho_median": float(np.median(r)) if r.size else None,
        "rho_q05": float(np.quantile(r, 0.05)) if r.size else None,
        "rho_q95": float(np.quantile(r, 0.95)) if r.size else None,
        "effective_rank": float(np.nanmean(an.effective_rank(VT[ok]))) if ok.any() else None,
        "min_eig": float(np.nanmean(an.smallest_eigenvalue(VT[ok], normalized=True))) if ok.any() else None,
        "exploded": int((~ok).sum()),
        "samples": int(VT.shape[0]),
    }
    return out
