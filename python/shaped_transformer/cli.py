"""The ``shaped-transformer`` console command.

    shaped-transformer report [--out DIR] [--seed N] [--size tiny|small|default|large] [--config FILE.toml]
    shaped-transformer sweep CONFIG.toml [--out DIR] [--workers N]
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
    """The argument parser of the command (exposed for documentation and tests)."""
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
        "the end). See docs/report.md for the TOML schema of --config.",
    )
    r.add_argument("--out", default="report", help="output folder (default: ./report)")
    r.add_argument("--seed", type=int, default=None, help="random seed of the study (default: 0, or the config's)")
    r.add_argument("--size", choices=list(SIZES), default="default",
                   help="preset scaling samples and widths (default: default, a few minutes on 2 cores)")
    r.add_argument("--config", metavar="FILE.toml", default=None,
                   help="TOML file overriding any entry of the study (applied after --size)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shaped-transformer`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
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
