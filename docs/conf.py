"""Sphinx configuration of the documentation site.

Build (warnings are errors)::

    python3 -m pip install '.[docs]'
    python3 -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery (examples/gallery) runs at full size; SHAPED_TRANSFORMER_GALLERY_SIZE=ci
runs it at the reduced size of the tests (CI does).  The API pages are written
here, at configuration time, from each module's ``__all__`` (into docs/api/,
git-ignored), so that every public name has a page and a new name needs no edit.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import sys
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# A source checkout without `pip install .` (SHAPED_TRANSFORMER_BUILD_DIR names a
# build of the extension): import the package from python/.
if os.environ.get("SHAPED_TRANSFORMER_BUILD_DIR"):
    sys.path.insert(0, str(ROOT / "python"))

import shaped_transformer  # noqa: E402

project = "shaped-transformer"
author = "the shaped-transformer developers"
copyright = "the shaped-transformer developers"
release = version = shaped_transformer.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "api/_templates", "**/*.ipynb", "gallery/*.py", "gallery/*.md5", "gallery/*.zip"]
templates_path = ["api/_templates"]
html_theme = "furo"
html_title = f"shaped-transformer {release}"
html_static_path: list[str] = []
nitpicky = False

# --- MyST: the Markdown pages as they are in the repository -------------------
myst_heading_anchors = 3  # links such as model.md#6-numerical-integration resolve
myst_enable_extensions = ["dollarmath"]

# --- autodoc, autosummary, numpydoc -------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc sections say the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Every public function and class must have a docstring (GL08); its Parameters
# must name its parameters (PR01, PR02).  tests/test_code_shape.py checks the same
# for the modules that follow numpydoc throughout.
numpydoc_validation_checks = {"GL08", "PR01", "PR02"}
numpydoc_validation_exclude = {r"\.__init__$", r"\._[a-z]\w*$", r"^shaped_transformer\._core\b"}

# torch is an optional extra: without it, the reference of shaped_transformer.torch
# is built from mocked torch classes and the torch example is left out.
try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
    autodoc_mock_imports = ["torch"]

# --- the gallery --------------------------------------------------------------
GALLERY_SIZE = os.environ.get("SHAPED_TRANSFORMER_GALLERY_SIZE", "full")
if GALLERY_SIZE not in ("full", "ci"):
    raise ValueError(f"SHAPED_TRANSFORMER_GALLERY_SIZE must be 'full' or 'ci', got {GALLERY_SIZE!r}")
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples" / "gallery")],
    "gallery_dirs": ["gallery"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py" + ("" if HAVE_TORCH else r"|plot_torch_probe\.py"),
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "show_memory": False,
    "capture_repr": (),
    "min_reported_time": 1,
    "reference_url": {"shaped_transformer": None},
    # The examples' size comes from the environment, which sphinx-gallery's cache
    # (keyed by each file's checksum) does not see: without this, a full-size build
    # after a CI-size one in the same checkout would show the CI-size outputs.
    "run_stale_examples": True,
}

# --- the API pages, from __all__ ------------------------------------------------
#: The modules of the reference, in the order of its table of contents.  Names
#: that the package re-exports at the top level are documented there only.
API_MODULES = [
    ("shaped_transformer", "Networks, runs and results"),
    ("shaped_transformer.inputs", "Inputs"),
    ("shaped_transformer.sde", "The covariance SDE"),
    ("shaped_transformer.analysis", "Analysis"),
    ("shaped_transformer.splitting", "Rare events: adaptive multilevel splitting"),
    ("shaped_transformer.report", "The report"),
    ("shaped_transformer.atlas", "The stability atlas"),
    ("shaped_transformer.sweep", "Sweeps"),
    ("shaped_transformer.plotting", "Figures"),
    ("shaped_transformer.torch", "PyTorch modules and the covariance probe"),
    ("shaped_transformer.cli", "The command line"),
]


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "classes" if not issubclass(obj, BaseException) else "exceptions"
    if callable(obj):
        return "functions"
    return "data"


def _api_pages() -> None:
    """Writes docs/api/index.rst and one page per module, each listing its public
    names in autosummary tables (autosummary then writes a page per name)."""
    api = DOCS / "api"
    # Everything under docs/api is generated (and git-ignored): start afresh, so that
    # a page of a name or module no longer public cannot linger and fail the build.
    shutil.rmtree(api, ignore_errors=True)
    api.mkdir()
    top = importlib.import_module("shaped_transformer")
    top_ids = {id(getattr(top, n)) for n in top.__all__}
    toc = []
    for modname, title in API_MODULES:
        mod = importlib.import_module(modname)
        groups: dict[str, list[str]] = {"functions": [], "classes": [], "exceptions": [], "data": []}
        for name in mod.__all__:
            obj = getattr(mod, name)
            if isinstance(obj, types.ModuleType) or (mod is not top and id(obj) in top_ids):
                continue
            groups[_kind(obj)].append(name)
        slug = modname.replace("shaped_transformer.", "") if modname != "shaped_transformer" else "top"
        lines = [
            f"{title}",
            "=" * len(title),
            "",
            f".. automodule:: {modname}",
            "   :no-members:",
            "",
            f".. currentmodule:: {modname}",
            "",
        ]
        for kind, names in groups.items():
            if not names:
                continue
            lines += (
                [
                    kind.capitalize(),
                    "-" * len(kind),
                    "",
                    ".. autosummary::",
                    "   :toctree: generated",
                    f"   :template: {'class.rst' if kind in ('classes', 'exceptions') else 'base.rst'}",
                    "   :nosignatures:",
                    "",
                ]
                + [f"   {n}" for n in names]
                + [""]
            )
        (api / f"{slug}.rst").write_text("\n".join(lines))
        toc.append(slug)
    index = (
        [
            "API reference",
            "=============",
            "",
            "Every public name of the package, generated from its docstring. ``import shaped_transformer as st``",
            "gives the names of the first page; the others live in their modules (``st.analysis``, ...).",
            "",
            ".. toctree::",
            "   :maxdepth: 1",
            "",
        ]
        + [f"   {s}" for s in toc]
        + [""]
    )
    (api / "index.rst").write_text("\n".join(index))
    templates = api / "_templates" / "autosummary"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "class.rst").write_text(
        "{{ fullname | escape | underline }}\n\n.. currentmodule:: {{ module }}\n\n"
        ".. autoclass:: {{ objname }}\n   :members:\n   :show-inheritance:\n"
    )
    (templates / "base.rst").write_text(
        "{{ fullname | escape | underline }}\n\n.. currentmodule:: {{ module }}\n\n"
        ".. auto{{ objtype }}:: {{ objname }}\n"
    )


_api_pages()


# --- docstrings written as plain text -------------------------------------------
# The docstrings write formulas as text (``|b|_F``, ``c_+``), which reST would read
# as substitutions and link targets.  Outside ``literals``, escape "|" and a "_" that
# ends a word; numpydoc's sections are untouched (they contain neither).
_LITERAL = re.compile(r"(``.*?``)")
_WORD_UNDERSCORE = re.compile(r"(?<=[A-Za-z0-9])_(?=[^\w`]|$)")


def _escape_plain_text(app, what, name, obj, options, lines):
    literal_indent = None  # inside a literal block (after a "::" line): its indentation
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and (not line.strip() or indent > literal_indent):
            continue
        literal_indent = indent if line.rstrip().endswith("::") else None
        parts = _LITERAL.split(line)
        for j in range(0, len(parts), 2):  # the even parts lie outside ``literals``
            parts[j] = _WORD_UNDERSCORE.sub(r"\\_", parts[j].replace("|", "\\|"))
        lines[i] = "".join(parts)


def setup(app):
    app.connect("autodoc-process-docstring", _escape_plain_text, priority=400)  # before numpydoc (500)
