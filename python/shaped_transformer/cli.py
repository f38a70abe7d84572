"""The ``shaped-transformer`` console command.

Usage::

    shaped-transformer report [--out DIR] [--seed N] [--size tiny|small|default|large] [--config FILE.toml] [--print-config]
    shaped-transformer sweep CONFIG.toml [--out DIR] [--workers N]
    shaped-transformer atlas [--out DIR] [--seed N] [--size tiny|small|default|large] [--config FILE.toml] [--workers N]
                             [--print-config]
    shaped-transformer --version
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

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
    r.add_argument("--size", choices=list(SIZES), default="default",
                   help="preset scaling samples and widths (default: default, a few minutes on 2 cores)")
    r.add_argument("--config", metavar="FILE.toml", default=None,
                   help="TOML file overriding any entry of the study (applied after --size)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--print-config", action="store_true",
                   help="print the study (after --size, --config and --seed) as TOML and exit: a template for --config")
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
    a.add_argument("--print-config", action="store_true",
                   help="print the atlas configuration (after --size, --config and --seed) as TOML and exit")
    return p


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
    try:
        if args.command in ("report", "atlas") and args.print_config:
            from ._toml import dumps

            if args.command == "report":
                from .report import study_config as make_config
            else:
                from .atlas import atlas_config as make_config
            cfg = make_config(args.size, args.config, seed=args.seed)
            print(dumps(cfg, f"shaped-transformer {args.command} --size {args.size}: every key; any subset of these "
                             "tables can be given to --config"), end="")
            return 0
        if args.command == "report":
            from .report import run_report

            t0 = time.perf_counter()
            run_report(args.out, size=args.size, config=args.config, seed=args.seed,
                       progress=False if args.no_progress else None, log=lambda s: print(s, flush=True))
            print(f"done in {time.perf_counter() - t0:.0f} s: open {args.out}/report.md", flush=True)
            return 0
        if args.command == "sweep":
            from pathlib import Path

            from .sweep import sweep

            if args.workers is not None and args.workers < 1:
                raise ValueError(f"--workers must be >= 1, got {args.workers}")
            res = sweep(args.config, None, args.out, max_workers=args.workers,
                        progress=False if args.no_progress else None)
            path = res.to_csv(Path(args.out) / "results.csv")
            print(f"{len(res)} points; table written to {path}", flush=True)
            return 0
        if args.command == "atlas":
            from .atlas import run_atlas

            if args.workers is not None and args.workers < 1:
                raise ValueError(f"--workers must be >= 1, got {args.workers}")
            t0 = time.perf_counter()
            run_atlas(args.out, size=args.size, config=args.config, seed=args.seed, workers=args.workers,
                      progress=False if args.no_progress else None, log=lambda s: print(s, flush=True))
            print(f"done in {time.perf_counter() - t0:.0f} s: open {args.out}/atlas.md", flush=True)
            return 0
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
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
