"""tqdm progress bars fed from the C++ loop (which reports finished samples)."""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator

__all__ = ["progress_callback", "total_of"]


def total_of(count: object) -> int | None:
    """The bar's total: ``count`` when it is a positive integer, else None (the core
    checks the count and refuses a bad one before the bar advances)."""
    if isinstance(count, bool) or not hasattr(count, "__index__"):
        return None
    n = operator.index(count)
    return n if n > 0 else None


@contextlib.contextmanager
def progress_callback(total: int | None, desc: str, enabled: bool | None) -> Iterator[Callable[[int], None] | None]:
    """Yields a callback(done) that advances a tqdm bar to ``done``, or None.

    ``enabled=None`` shows the bar only on an interactive terminal (tqdm's
    ``disable=None``), so logs and tests stay clean.
    """
    if enabled is False:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="sample", disable=None if enabled is None else not enabled, leave=False)
    state = {"n": 0}

    def update(done: int) -> None:
        if done > state["n"]:
            bar.update(done - state["n"])
            state["n"] = done

    try:
        yield update
    finally:
        bar.close()
