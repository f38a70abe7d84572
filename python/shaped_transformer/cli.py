"""The ``shaped-transformer`` console command.

Usage::

    shaped-transformer report [--out DIR] [--seed N] [--size tiny|small|default|large] [--config FILE.toml] [--print-config]
    shaped-transformer sweep CONFIG.toml [--out DIR] [--workers N]
    shaped-transformer atlas [--out DIR] [--seed N] [--size tiny|small|default|large] [--config FILE.toml] [--workers N]
                             [--print-config]
    shaped-transformer check --width N --depth D [--heads H] [--tokens M] [--tau0 X] [--gamma X] ... (see --help)
    shaped-transformer --version
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["main", "build_parser"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("shaped-transformer")
    except Exception:  # running from a source tree
        from . import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``shaped-transformer`` command.

    Exposed for the documentation and the tests, which parse the commands of the
    docs without running them.

    Returns
    -------
    argparse.ArgumentParser
    """
    from .report import SIZES

    p = argparse.ArgumentParser(
        prog="shaped-transformer",
        description="Deep shaped-attention networks at initialization: finite networks against the covariance SDE.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser(
        "report",
        help="run a study (network at several widths vs the SDE) and write a report folder",
        description="Runs the built-in study (a few minutes on 2 cores at the default size): the network at several "
        "widths against the covariance SDE under one stopping rule (blow-up probabilities, distances and differences "
        "given survival with intervals, the SDE's discretization check), and writes PNG figures, results.json, "
        "differences.csv, distances.csv, summaries.csv and report.md into the output folder (replaced atomically at "
        "the end). --print-config prints every key of the study with its value as TOML: the schema of --config.",
    )
    r.add_argument("--out", default="report", help="output folder (default: ./report)")
    r.add_argument("--seed", type=int, default=None, help="random seed of the study (default: 0, or the config's)")
    r.add_argument(
        "--size",
        choices=list(SIZES),
        default="default",
        help="preset scaling samples and widths (default: default, a few minutes on 2 cores)",
    )
    r.add_argument(
        "--config",
        metavar="FILE.toml",
        default=None,
        help="TOML file overriding any entry of the study (applied after --size)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument(
        "--print-config",
        action="store_true",
        help="print the study (after --size, --config and --seed) as TOML and exit: a template for --config",
    )
    s = sub.add_parser(
        "sweep",
        help="run a resumable parameter sweep from a TOML file ([base] and [grid] tables)",
        description="Evaluates shaped_transformer.sweep.run_point at every point of the [grid] table "
        "(Cartesian product) around the [base] parameters, one JSON file per point in --out; "
        "rerunning resumes. Writes results.csv at the end.",
    )
    s.add_argument("config", metavar="FILE.toml")
    s.add_argument("--out", default="sweep", help="output folder (default: ./sweep)")
    s.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .atlas import ATLAS_SIZES

    a = sub.add_parser(
        "atlas",
        help="stability atlas: P(blow-up by T) over tau0, gamma, heads for the SDE and networks (resumable)",
        description="Estimates the probability that max diag V exceeds the blow-up threshold by time T, with 95% "
        "intervals, over a grid of tau0, gamma and heads, for the SDE and the exact chain at several widths (with "
        "adaptive multilevel splitting where plain Monte Carlo sees few blow-ups), plus one rare point. Each point "
        "is called safe, unsafe or undecided at study.level by one rule: its interval lies below, above, or across "
        "it. Writes CSV/JSON tables, figures and atlas.md into --out; rerunning resumes from --out/points. "
        "--print-config prints every key as TOML: the schema of --config.",
    )
    a.add_argument("--out", default="atlas", help="output folder (default: ./atlas)")
    a.add_argument("--seed", type=int, default=None, help="random seed (default: 0, or the config's)")
    a.add_argument("--size", choices=list(ATLAS_SIZES), default="default", help="preset (default: default)")
    a.add_argument("--config", metavar="FILE.toml", default=None, help="TOML file overriding any entry of the atlas")
    a.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.add_argument(
        "--print-config",
        action="store_true",
        help="print the atlas configuration (after --size, --config and --seed) as TOML and exit",
    )
    _add_check(sub)
    return p


def _add_check(sub) -> None:
    """The ``check`` subcommand: st.assess for a planned model (docs/assess.md)."""
    from .assess import BLOCKS, COLLAPSE_EPS

    c = sub.add_parser(
        "check",
        help="one-call verdict for a planned model: P(blow-up) and P(collapse) by the last layer, with intervals",
        description="Runs shaped_transformer.assess: the exact chain of the network at the given width (plain Monte "
        "Carlo), the covariance SDE at T = depth / width, adaptive multilevel splitting where too few blow-ups were "
        "seen, and prints P(blow-up by the last layer) and P(collapse) with intervals, the network-SDE gap, a verdict "
        "at --level (safe / unsafe / undecided) and the time it took. Bad arguments are refused before any compute.",
    )
    c.add_argument("--width", type=int, required=True, help="embedding dimension n")
    c.add_argument("--depth", type=int, required=True, help="number of layers d (the SDE runs to T = d / n)")
    c.add_argument("--heads", type=int, default=1, help="attention heads (default: 1)")
    c.add_argument("--tokens", type=int, default=None, help="sequence length m (required with --rho0)")
    c.add_argument("--tau0", type=float, default=None, help="shaped heads' temperature (default: 1)")
    c.add_argument("--gamma", type=float, default=0.5, help="branch weight in (0, 1] (default: 0.5)")
    c.add_argument(
        "--block",
        choices=list(BLOCKS),
        default="shaped_transformer",
        help="layer kind (default: shaped_transformer = shaped attention + shaped MLP)",
    )
    c.add_argument("--causal", action="store_true", help="causal shaped heads")
    c.add_argument(
        "--norm",
        default=None,
        help="per-token norm of every block: none (default), pre_rms, post_rms, pre_layer or post_layer "
        "(docs/norms.md; LayerNorm runs through the law sampler)",
    )
    inp = c.add_mutually_exclusive_group()
    inp.add_argument("--rho0", type=float, default=None, help="input: equicorrelated tokens (default: 0.3)")
    inp.add_argument(
        "--X0", metavar="FILE", default=None, help="input: token embeddings, tokens x width (.npy, or text/CSV)"
    )
    inp.add_argument(
        "--V0", metavar="FILE", default=None, help="input: Gram matrix, tokens x tokens (.npy, or text/CSV)"
    )
    c.add_argument("--samples", type=int, default=2000, help="initializations of the exact chain (default: 2000)")
    c.add_argument("--level", type=float, default=1e-3, help="the verdict's level (default: 1e-3)")
    c.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals (default: 0.95)")
    c.add_argument("--blowup", type=float, default=1e4, help="blow-up threshold on max diag V (default: 1e4)")
    c.add_argument(
        "--collapse-eps",
        type=float,
        default=COLLAPSE_EPS,
        help=f"collapse = mean token correlation > 1 - eps (default: {COLLAPSE_EPS:g})",
    )
    c.add_argument("--sde-paths", type=int, default=None, help="SDE paths (default: --samples)")
    c.add_argument(
        "--dt", type=float, default=None, help="SDE step (default: T / max(ceil(T / 1e-3), min(depth, 100)))"
    )
    c.add_argument("--no-sde", action="store_true", help="skip the SDE")
    c.add_argument("--no-splitting", action="store_true", help="skip adaptive multilevel splitting")
    c.add_argument("--splitting-particles", type=int, default=100, help="particles per splitting run (default: 100)")
    c.add_argument("--splitting-repeats", type=int, default=4, help="splitting runs (default: 4)")
    c.add_argument(
        "--splitting-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="rough time budget per splitting estimate (default: the plain Monte Carlo time, >= 30 s)",
    )
    c.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    c.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    c.add_argument("--json", metavar="FILE", default=None, help="also write every number to this JSON file")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_matrix(name: str, path: str | None):
    """A matrix from a .npy file or a text/CSV file (ValueError naming the option)."""
    if path is None:
        return None
    import numpy as np

    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with open(path) as f:
            first = f.readline()
        return np.loadtxt(path, delimiter="," if "," in first else None, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--{name}: cannot read {path}: {exc}") from None


def _check(args) -> int:
    import json

    from .assess import assess

    a = assess(
        width=args.width,
        depth=args.depth,
        heads=args.heads,
        tokens=args.tokens,
        tau0=args.tau0,
        gamma=args.gamma,
        block=args.block,
        causal=args.causal,
        norm=args.norm,
        rho0=args.rho0,
        X0=_load_matrix("X0", args.X0),
        V0=_load_matrix("V0", args.V0),
        samples=args.samples,
        level=args.level,
        confidence=args.confidence,
        blowup=args.blowup,
        collapse_eps=args.collapse_eps,
        sde=not args.no_sde,
        sde_paths=args.sde_paths,
        dt=args.dt,
        splitting=not args.no_splitting,
        splitting_particles=args.splitting_particles,
        splitting_repeats=args.splitting_repeats,
        splitting_budget_s=args.splitting_budget,
        seed=args.seed,
        threads=args.threads,
        progress=False if args.no_progress else None,
    )
    print(a, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(a.to_dict(), f, indent=1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``shaped-transformer`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, 2 for a bad configuration, argument or output folder
        (the message names the key), 130 when interrupted.

    Examples
    --------
    >>> main(["report", "--size", "tiny", "--out", "quick"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command not in _COMMANDS:
        parser.error(f"unknown command {args.command!r}")
    try:
        if args.command in ("report", "atlas") and args.print_config:
            return _print_config(args)
        return _COMMANDS[args.command](args)
    except (ValueError, ImportError) as exc:
        print(f"shaped-transformer: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the disk filled up while writing the report
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"shaped-transformer: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shaped-transformer: interrupted", file=sys.stderr)
        return 130


def _print_config(args: argparse.Namespace) -> int:
    """``report --print-config`` and ``atlas --print-config``: every key of the preset."""
    from ._toml import dumps

    if args.command == "report":
        from .report import study_config as make_config
    else:
        from .atlas import atlas_config as make_config
    cfg = make_config(args.size, args.config, seed=args.seed)
    what = f"shaped-transformer {args.command} --size {args.size}: every key; any subset of these tables can be given"
    print(dumps(cfg, what + " to --config"), end="")
    return 0


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def _check_workers(args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")


def _report(args: argparse.Namespace) -> int:
    from .report import run_report

    t0 = time.perf_counter()
    run_report(args.out, size=args.size, config=args.config, seed=args.seed, progress=_progress(args),
               log=lambda s: print(s, flush=True))  # fmt: skip
    print(f"done in {time.perf_counter() - t0:.0f} s: open {args.out}/report.md", flush=True)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .sweep import sweep

    _check_workers(args)
    res = sweep(args.config, None, args.out, max_workers=args.workers, progress=_progress(args))
    path = res.to_csv(Path(args.out) / "results.csv")
    print(f"{len(res)} points; table written to {path}", flush=True)
    return 0


def _atlas(args: argparse.Namespace) -> int:
    from .atlas import run_atlas

    _check_workers(args)
    t0 = time.perf_counter()
    run_atlas(args.out, size=args.size, config=args.config, seed=args.seed, workers=args.workers,
              progress=_progress(args), log=lambda s: print(s, flush=True))  # fmt: skip
    print(f"done in {time.perf_counter() - t0:.0f} s: open {args.out}/atlas.md", flush=True)
    return 0


#: The subcommands and what runs each (``check`` is defined above).
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "report": _report,
    "sweep": _sweep,
    "atlas": _atlas,
    "check": _check,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
