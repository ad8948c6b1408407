"""The API reference (docs/reference/, rendered by mkdocstrings from the docstrings) covers the
public API: every public module under src/healthprobe has an entry, every public name of it
(its ``__all__``, or the classes and functions it defines, with their public methods) appears
in the built site, every reference page is in the nav, and no cross-reference in a docstring
is left unresolved.

The site is built once, into a temporary directory, with ``mkdocs build --strict`` as
``make docs`` runs it (about 3 s; no server is started).
"""

from __future__ import annotations

import functools
import html
import importlib
import inspect
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import griffe
import pytest
import yaml

import healthprobe

from .support import ROOT

SRC = ROOT / "src"
REFERENCE = ROOT / "docs" / "reference"
EXTENSION = REFERENCE / "griffe_docstrings.py"


def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    modules = []
    for path in sorted((SRC / "healthprobe").rglob("*.py")):
        relative = path.relative_to(SRC)
        if not all((SRC / folder / "__init__.py").is_file() for folder in relative.parents[:-1]):
            continue  # not inside a package: not importable as a module of healthprobe
        parts = relative.with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts):
            modules.append(".".join(parts))
    return modules


MODULES = public_modules()


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, or the classes and functions the module defines; with each class's public
    methods and properties (``Class.method``)."""
    exported = getattr(module, "__all__", None)
    if exported is None:
        exported = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__
        ]
    names = []
    for name in exported:
        names.append(name)
        value = getattr(module, name)
        if inspect.isclass(value):
            for member, attribute in vars(value).items():
                if member.startswith("_"):
                    continue
                if inspect.isfunction(attribute) or isinstance(
                    attribute, (staticmethod, classmethod, property, functools.cached_property)
                ):
                    names.append(f"{name}.{member}")
    return names


def anchors_for(module: ModuleType, name: str) -> set[str]:
    """The anchors under which ``module.name`` may be documented: its own path, or, when the
    package re-exports the same object, ``healthprobe.name`` (documented with the package)."""
    anchors = {f"{module.__name__}.{name}"}
    top = name.split(".", 1)[0]
    if top in healthprobe.__all__ and getattr(healthprobe, top) is getattr(module, top):
        anchors.add(f"healthprobe.{name}")
    return anchors


def is_public(identifier: str) -> bool:
    """Whether a dotted path names a public module, or a public name of one (in its
    ``__all__``, or, without ``__all__``, not starting with ``_``)."""
    parts = identifier.split(".")
    if any(part.startswith("_") for part in parts):
        return False
    for end in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        exported = getattr(module, "__all__", None)
        return end == len(parts) or exported is None or parts[end] in exported
    return False


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]
    command += ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}{built.stderr}"
    return out


@pytest.fixture(scope="module")
def reference_html(site: Path) -> dict[str, str]:
    """Built reference pages by path (``reference/checks/index.html``)."""
    pages = {str(page.relative_to(site)): page.read_text() for page in sorted((site / "reference").rglob("*.html"))}
    assert pages, "the site has no reference pages"
    return pages


@pytest.fixture(scope="module")
def anchors(reference_html: dict[str, str]) -> set[str]:
    return {html.unescape(found) for page in reference_html.values() for found in re.findall(r'\bid="([^"]+)"', page)}


def test_the_package_has_public_modules_to_document() -> None:
    # The discovery itself is right: the modules everyone imports are found, private ones not.
    assert {"healthprobe", "healthprobe.asgi", "healthprobe.checks", "healthprobe.servers.uvicorn"} <= set(MODULES)
    assert not [module for module in MODULES if "._" in module]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_module_has_a_reference_entry(module_name: str, anchors: set[str]) -> None:
    directives = {
        match for page in REFERENCE.glob("*.md") for match in re.findall(r"^::: *(\S+)", page.read_text(), re.M)
    }
    assert module_name in directives and module_name in anchors, (
        f"{module_name} is public but has no reference entry: add `::: {module_name}` to a page "
        "in docs/reference/ (a new page goes under Reference in the nav of mkdocs.yml)"
    )


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_appears_in_the_reference(module_name: str, anchors: set[str]) -> None:
    module = importlib.import_module(module_name)
    names = public_names(module)
    missing = [name for name in names if not anchors_for(module, name) & anchors]
    assert not missing, f"public names of {module_name} missing from the built reference: {missing}"


def test_every_reference_page_is_in_the_nav_and_the_overview() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    (section,) = [entry["Reference"] for entry in config["nav"] if isinstance(entry, dict) and "Reference" in entry]
    in_nav = {path for entry in section for path in entry.values()}
    pages = {f"reference/{page.name}" for page in REFERENCE.glob("*.md")}
    assert in_nav == pages
    overview = (REFERENCE / "index.md").read_text()
    assert {f"reference/{link}" for link in re.findall(r"\]\((\w[\w-]*\.md)\)", overview)} == pages - {
        "reference/index.md"
    }


def test_docstring_cross_references_resolve(reference_html: dict[str, str]) -> None:
    raw_roles = {
        page: roles
        for page, text in reference_html.items()
        if (roles := re.findall(r":(?:class|func|meth|attr|data|const|exc|obj|mod):(?:<code>|`)", text))
    }
    assert not raw_roles, f"Sphinx roles left as text: {raw_roles}"
    # mkdocs-autorefs leaves a docstring reference it could not resolve as
    # <span title="identifier"><code>name</code></span> (signatures have no <code>).
    unresolved = {
        (page, identifier)
        for page, text in reference_html.items()
        for identifier in re.findall(r'<span title="(healthprobe\.[^"]+)"><code>', text)
        if is_public(identifier)
    }
    assert not unresolved, f"references to public names that lead nowhere: {sorted(unresolved)}"


SAMPLE = '''"""See :class:`Thing`, :func:`~sample.make` and :mod:`logging`.

Use it::

    make(1, 2)
"""

import logging

#: Seconds to wait for a thing,
#: at most.
LIMIT = 1.0


class Thing:
    """A thing."""


def make(a: int, b: int, c: int = 0, d: int = 0, e: int = 0) -> Thing:
    """Make a :class:`Thing`.

    Args:
        a, b: sizes, in bytes;
            both positive.
        c: a count.
        d,
            e: offsets.

    Returns:
        The thing.
    """
    return Thing()
'''


def test_the_docstring_extension_reads_the_project_dialect(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "__init__.py").write_text(SAMPLE)
    with caplog.at_level(logging.WARNING):
        sample = griffe.load(
            "sample",
            search_paths=[tmp_path],
            extensions=griffe.load_extensions(f"{EXTENSION}:HealthprobeDocstrings"),
            docstring_parser="google",
        )
        assert sample.docstring is not None and sample["make"].docstring is not None
        sections = sample["make"].docstring.parsed
    assert not caplog.records, [record.getMessage() for record in caplog.records]

    text = sample.docstring.value
    assert '<autoref identifier="sample.Thing" optional><code>Thing</code></autoref>' in text
    assert '<autoref identifier="sample.make" optional><code>make</code></autoref>' in text
    assert '<autoref identifier="logging" optional><code>logging</code></autoref>' in text
    assert "Use it:\n\n    make(1, 2)" in text
    assert sample["LIMIT"].docstring.value == "Seconds to wait for a thing,\nat most."

    (parameters,) = [section for section in sections if section.kind is griffe.DocstringSectionKind.parameters]
    assert [(p.name, p.annotation and str(p.annotation), p.description) for p in parameters.value] == [
        ("a", "int", "sizes, in bytes;\nboth positive."),
        ("b", "int", "sizes, in bytes;\nboth positive."),
        ("c", "int", "a count."),
        ("d", "int", "offsets."),
        ("e", "int", "offsets."),
    ]
