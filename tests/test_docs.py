"""Every code block of README.md and docs/*.md runs here, so that a renamed
function, argument, option or config key fails CI instead of the user.

How a block is run depends on its fence's language:

* ``python``: executed in order, one namespace per page (later blocks use what
  earlier ones defined), in a scratch folder;
* ``pycon``: run with :mod:`doctest`, so the quoted output (an error message, a
  value) must match;
* ``bash``: each command (split at ``&&`` and ``;``) must be a
  ``shaped-transformer`` command, run in-process through ``cli.main``;
* ``text`` (diagrams, quoted output), ``toml``: not run;
* ``{directive}`` (MyST, for the documentation site: ``{include}``, ``{toctree}``):
  not code, not run.

HTML comments on the lines just above a fence adjust this (``<!-- doc-test: ... -->``):

* ``skip: REASON`` -- the block cannot run in a test (a build, a pip install, a
  cluster); the reason must say why, and it is shown as a skipped test;
* ``reduce: "OLD" -> "NEW"; ...`` -- substitutions applied before running
  (smaller sizes); each OLD must occur in the block, so the table cannot go stale;
* ``check`` -- (bash) ``shaped-transformer report|atlas|sweep`` commands are
  parsed by the command's own parser and their configuration (``--size``,
  ``--config``, ``--seed``) is built and validated, but not run (minutes each);
  ``--help``, ``--version`` and ``--print-config`` still run;
* ``needs: MODULE`` -- the page's blocks need an optional module (torch).

Time: about 25 s on 2 idle cores (most of it the tiny atlas and report of
docs/atlas.md and docs/report.md).
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"] + sorted(
    f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")
)
LANGUAGES = {"python", "pycon", "bash", "text", "toml", "cmake", "cpp"}
_DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None = None
    check: bool = False
    needs: list[str] = field(default_factory=list)
    reduce: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}[{self.lang}]"

    def source(self) -> str:
        code = self.code
        for old, new in self.reduce:
            assert old in code, f"{self.name}: the reduce table names {old!r}, which the block no longer contains"
            code = code.replace(old, new)
        return code


def _parse_reduce(spec: str, where: str) -> list[tuple[str, str]]:
    pairs = re.findall(r'"((?:[^"\\]|\\.)*)"\s*->\s*"((?:[^"\\]|\\.)*)"', spec)
    assert pairs, f'{where}: reduce needs \'"OLD" -> "NEW"\' pairs, got {spec!r}'
    return [(a.replace('\\"', '"'), b.replace('\\"', '"')) for a, b in pairs]


def blocks(page: str) -> list[Block]:
    """The fenced code blocks of a page with their doc-test directives."""
    lines = (ROOT / page).read_text().split("\n")
    out: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("```"):
            i += 1
            continue
        lang = line[3:].strip()
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: unclosed code fence"
        if lang.startswith("{"):  # a MyST directive of the site (docs/index.md), not code
            i = j + 1
            continue
        b = Block(page, i + 1, lang, "\n".join(lines[i + 1 : j]) + "\n")
        k = i - 1
        while k >= 0 and _DIRECTIVE.match(lines[k]):
            d = _DIRECTIVE.match(lines[k]).group(1)
            key, _, rest = d.partition(":")
            key, rest = key.strip(), rest.strip()
            if key == "skip":
                b.skip = rest
            elif key == "check" and not rest:
                b.check = True
            elif key == "needs":
                b.needs += [m.strip() for m in rest.split(",") if m.strip()]
            elif key == "reduce":
                b.reduce += _parse_reduce(rest, b.name)
            else:
                raise AssertionError(f"{b.name}: unknown doc-test directive {d!r}")
            k -= 1
        out.append(b)
        i = j + 1
    return out


ALL = [b for p in PAGES for b in blocks(p)]


def test_every_block_has_a_known_language_and_every_skip_a_reason():
    """An unlabelled fence would be neither run nor skipped on purpose."""
    for b in ALL:
        assert b.lang in LANGUAGES, f"{b.name}: label the fence with one of {sorted(LANGUAGES)}"
        if b.skip is not None:
            assert len(b.skip.split()) >= 3, f"{b.name}: a skip needs a reason that says why, got {b.skip!r}"
        if b.lang in ("cmake", "cpp"):
            assert b.skip, f"{b.name}: C++ and CMake fragments cannot run here: mark them skip with a reason"
    # Indented code blocks (four spaces after a blank line) would escape this test.
    for page in PAGES:
        lines = (ROOT / page).read_text().split("\n")
        fenced = False
        for n, (prev, line) in enumerate(zip([""] + lines, lines), start=1):
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and not prev.strip() and re.match(r"    +[^ \-*|\d]", line):
                raise AssertionError(f"{page}:{n}: indented code block: use a fenced block with a language")


_ALIASES = {"st": "shaped_transformer", "stt": "shaped_transformer.torch"}


def _resolve(dotted: str) -> object:
    """The object a dotted name of the package refers to (submodules imported on the way)."""
    import importlib
    import types

    parts = dotted.split(".")
    obj: object = importlib.import_module(_ALIASES.get(parts[0], parts[0]))
    for part in parts[1:]:
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif isinstance(obj, types.ModuleType):
            obj = importlib.import_module(f"{obj.__name__}.{part}")
        else:
            raise AttributeError(f"{dotted}: {type(obj).__name__} has no attribute {part!r}")
    return obj


def test_names_of_the_package_in_the_prose_exist():
    """Inline code such as `st.sde.sde_drift(net, V)` names real objects (docs/model.md
    called `st.sde_drift`, which does not exist)."""
    names = set()
    for page in PAGES:
        text = re.sub(r"```.*?```", "", (ROOT / page).read_text(), flags=re.S)
        for span in re.findall(r"`([^`\n]+)`", text):
            names |= {(page, m) for m in re.findall(r"(?<![\w.])((?:st|stt|shaped_transformer)(?:\.\w+)+)", span)}
    assert len(names) > 20
    bad = []
    for page, name in sorted(names):
        if name.startswith(("stt", "shaped_transformer.torch")):
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            bad.append(f"{page}: `{name}`: {exc}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("b", [b for b in ALL if b.skip], ids=lambda b: b.name)
def test_blocks_that_cannot_run_here_say_why(b):
    pytest.skip(f"{b.name}: {b.skip}")


# ---------------------------------------------------------------------------
# Running the blocks of one page
# ---------------------------------------------------------------------------


def _commands(code: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped,
    split at && and ;."""
    text = code.replace("\\\n", " ")
    cmds: list[list[str]] = []
    for line in text.split("\n"):
        words = shlex.split(line, comments=True)
        cur: list[str] = []
        for w in words + [";"]:
            if w in ("&&", ";"):
                if cur:
                    cmds.append(cur)
                cur = []
            else:
                cur.append(w)
    return cmds


def _shaped_transformer(argv: list[str], check: bool, where: str) -> None:
    from shaped_transformer import cli

    cheap = any(a in argv for a in ("--help", "-h", "--version", "--print-config")) or not argv
    if check and not cheap:
        parser = cli.build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"{where}: shaped-transformer {' '.join(argv)}: the parser refused it") from exc
        if args.command == "report":
            from shaped_transformer.report import study_config

            study_config(args.size, args.config, seed=args.seed)
        elif args.command == "atlas":
            from shaped_transformer.atlas import atlas_config

            atlas_config(args.size, args.config, seed=args.seed)
        elif args.command == "sweep":
            from shaped_transformer.sweep import _resolve

            _resolve(args.config, None)
        return
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # --help and --version exit through argparse
            rc = exc.code
    assert rc in (0, None), f"{where}: shaped-transformer {' '.join(argv)} exited with {rc}:\n{out.getvalue()}"


def _run_bash(b: Block) -> None:
    for cmd in _commands(b.source()):
        assert cmd[0] == "shaped-transformer", (
            f"{b.name}: {' '.join(cmd)!r} cannot run in a test: run only shaped-transformer commands, or mark "
            "the block `<!-- doc-test: skip: REASON -->`"
        )
        _shaped_transformer(cmd[1:], b.check, b.name)


def _run_python(b: Block, ns: dict) -> set[str]:
    """Runs the block; returns the names of the package's warnings it issued."""
    code = compile(b.source(), b.name, "exec")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(code, ns)
    return {w.category.__name__ for w in caught if w.category.__module__.startswith("shaped_transformer")}


def _prose_after(b: Block) -> str:
    """The block and the page's text after it, up to the next heading or block."""
    lines = (ROOT / b.page).read_text().split("\n")
    i = b.line + b.code.count("\n")  # the closing fence (0-based index)
    j = i + 1
    while j < len(lines) and not lines[j].startswith(("#", "```")):
        j += 1
    return b.code + "\n".join(lines[i + 1 : j])


def _run_pycon(b: Block, ns: dict) -> None:
    test = doctest.DocTestParser().get_doctest(b.source(), ns, b.name, b.page, b.line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    runner.run(test, out=report.write)
    assert runner.failures == 0, f"{b.name}: the quoted output differs:\n{report.getvalue()}"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(not b.skip and b.lang in ("python", "pycon", "bash") for b in blocks(p))]
)
def test_page_code_runs(page, tmp_path, monkeypatch):
    bs = [b for b in blocks(page) if not b.skip and b.lang in ("python", "pycon", "bash")]
    for mod in sorted({m for b in bs for m in b.needs}):
        try:
            __import__(mod)
        except ImportError:
            skip_unless_ci(f"{page} needs {mod}")
    # A scratch folder with the repository's examples/ and docs/ reachable, as from
    # a checkout: the blocks write their outputs here.
    for d in ("examples", "docs"):
        (tmp_path / d).symlink_to(ROOT / d)
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__doc_test__"}
    for b in bs:
        if b.lang == "python":
            # A warning the user will see must be explained where they see it.
            for name in _run_python(b, ns):
                assert name in _prose_after(b), (
                    f"{b.name} issues a {name}: say so (and why) in the block or the text right after it"
                )
        elif b.lang == "pycon":
            _run_pycon(b, ns)
        else:
            _run_bash(b)


def test_directives_are_read(tmp_path):
    """The harness itself: a stale reduce table and a non-CLI bash command fail."""
    b = Block("x.md", 1, "python", "a = 1\n", reduce=[("b = 2", "b = 3")])
    with pytest.raises(AssertionError, match="no longer contains"):
        b.source()
    with pytest.raises(AssertionError, match="cannot run in a test"):
        _run_bash(Block("x.md", 1, "bash", "cmake -S . -B build\n"))
    assert _commands("a b && c # d\nshaped-transformer x \\\n  --y ; z\n") == [
        ["a", "b"],
        ["c"],
        ["shaped-transformer", "x", "--y"],
        ["z"],
    ]
