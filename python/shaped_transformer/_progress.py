"""tqdm progress bars fed from the C++ loop (which reports finished samples)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

__all__ = ["progress_callback"]


@contextlib.contextmanager
def progress_callback(total: int, desc: str, enabled: bool | None) -> Iterator[Callable[[int], None] | None]:
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
