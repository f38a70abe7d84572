"""A pytest plugin: what each test did, and what raised a failure.

``python -m pytest -p _outcome_report --outcome-report=FILE ...`` (tests/ on the
Python path) writes one JSON line per test that ran (its call phase) and per
failed setup or teardown: the node id, the phase, the outcome and, for a failure,

- ``type``, ``message``, ``explanation``: the exception's type name, the first
  line of its message and, for an ``assert``, pytest's line with the values
  (``assert 9.6 < 4.5``);
- ``file``, ``function``, ``line``, ``statement``: the innermost frame of the
  traceback that lies in the test's own code (the test module's folder: the test
  file and its helpers, never the package or NumPy), and its statement;
- ``own_assertion``: whether the test failed on one of its own assertions -- an
  AssertionError raised by an ``assert`` statement in that frame, or by an
  ``np.testing.assert_*`` call made there; an AssertionError from inside the
  package, a crash or any other exception is not one.

tests/test_mutations.py counts a mutation as caught only from these records
(docs/validation.md, "The mutation matrix").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--outcome-report",
        default=None,
        metavar="FILE",
        help="write each test's outcome and what raised its failure to FILE (JSON lines)",
    )


def pytest_configure(config) -> None:
    path = config.getoption("outcome_report")
    if path:
        config.pluginmanager.register(OutcomeReport(path), "st-outcome-report-writer")


class OutcomeReport:
    """Appends the records described in the module docstring to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        open(path, "w").close()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        if rep.when != "call" and not rep.failed:
            return
        rec = {"nodeid": rep.nodeid, "when": rep.when, "outcome": rep.outcome}
        if rep.failed and call.excinfo is not None:
            rec.update(describe_failure(call.excinfo, Path(str(item.path)).resolve().parent))
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def describe_failure(excinfo, own_dir: Path) -> dict:
    """What raised a test's exception; ``own_dir``: the folder of the test's own code."""

    def own(entry) -> bool:
        try:
            return Path(str(entry.path)).resolve().is_relative_to(own_dir)
        except (OSError, ValueError):
            return False

    tb = list(excinfo.traceback)
    lines = str(excinfo.value).strip().splitlines() or [""]
    # pytest's rewritten assert explains itself on a line "assert <values>"
    out = {
        "type": excinfo.typename,
        "message": lines[0][:300],
        "explanation": next((x for x in lines if x.startswith("assert ")), "")[:300],
    }
    ours = [e for e in tb if own(e)]
    if not ours:
        return dict(out, own_assertion=False)
    last, innermost = ours[-1], tb[-1]
    try:
        statement = " ".join(str(last.statement).split())
    except Exception:  # no source to show (generated code)
        statement = ""
    by_assert = innermost is last and statement.startswith("assert ")
    # numpy.testing's assert_* raise inside NumPy, called from the test's own statement
    by_numpy = "numpy" in Path(str(innermost.path)).parts and "testing.assert_" in statement
    return dict(
        out,
        own_assertion=bool(excinfo.errisinstance(AssertionError) and (by_assert or by_numpy)),
        file=str(Path(str(last.path)).resolve()),
        function=last.name,
        line=last.lineno + 1,
        statement=statement,
    )
