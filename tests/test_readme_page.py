"""README.md, and the repository's layout and make targets as docs/architecture.md and
docs/performance.md show them.

The README's ``make`` lines and the pages' ``make bench`` are checked with ``make -n`` (what
the targets would run, without building an environment or running the suite they start):
the commands are the ones the tests run or that the lines name. The module map of
docs/architecture.md names exactly the modules and packages of ``src/healthprobe/``, and the
folders of its repository tree exist. Every other README block is run by the test named
where :func:`test_every_block_of_the_readme_is_run` lists it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from . import doc_pages
from .support import ROOT, require_binary

README = (ROOT / "README.md").read_text()
ARCHITECTURE = doc_pages.page("architecture.md")
PERFORMANCE = doc_pages.page("performance.md")

MAKE = doc_pages.block(README, "sh", starts="make demo")
MODULE_MAP = doc_pages.block(ARCHITECTURE, "text", starts="src/healthprobe/\n")
TREE = doc_pages.block(ARCHITECTURE, "text", starts="examples/ ")
BENCH = doc_pages.block(PERFORMANCE, "sh", starts="make bench")


def test_every_block_of_the_readme_is_run() -> None:
    """Each block of the README is one a test runs, here or in the test named beside it."""
    elsewhere = [
        # tests/test_docs_recipes.py::test_readme_quickstart: app.py under each command the
        # shell block names (the curl lines as httpx requests).
        doc_pages.block(README, "python", starts="# app.py\n"),
        doc_pages.block(README, "sh", starts="uvicorn app:app "),
        # tests/test_install.py::test_wheel_and_sdist_install_into_a_fresh_venv: the clone's
        # lines run as written; the wheel and sdist lines are its build and installs, their
        # file names those it built.
        doc_pages.block(README, "sh", starts="python3 -m venv .venv && . .venv/bin/activate"),
        doc_pages.block(README, "sh", starts="pip install build && python -m build"),
    ]
    assert sorted(doc_pages.blocks(README)) == sorted([MAKE, *elsewhere])


def test_every_block_of_architecture_and_performance_is_checked_here() -> None:
    assert sorted(doc_pages.blocks(ARCHITECTURE)) == sorted([MODULE_MAP, TREE])
    assert doc_pages.blocks(PERFORMANCE) == [BENCH]


# -- make targets ------------------------------------------------------------------------------------


def _make(target: str, venv: Path | None = None) -> list[str]:
    """The commands ``make -n target`` prints in the project root, each split as the shell
    would; with ``venv``, for an environment there (none yet: every step shows)."""
    make = require_binary("make", "make")
    override = [f"VENV={venv}"] if venv is not None else []
    args = [make, "--no-print-directory", "-n", target, *override]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return [shlex.join(shlex.split(line)) for line in done.stdout.splitlines() if line.strip()]


def _page_commands(block: str) -> dict[str, str]:
    """The ``make`` lines of a block: target to the comment that says what it does."""
    found = {}
    for line in block.splitlines():
        match = re.fullmatch(r"make (\S+)\s+# (.*)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_each_make_line_builds_its_own_environment(tmp_path: Path) -> None:
    """ "Each creates .venv/ and installs what it needs": from no environment, each target
    of the README's block and ``make bench`` first creates it, then installs the project
    with the extra it needs, before it runs anything; ``.venv`` is the default."""
    venv = tmp_path / "venv"
    needs = {"demo": "'.[demo]'", "test": "'.[dev,bench]'", "bench": "'.[dev,bench]'"}
    assert set(_page_commands(MAKE)) | set(_page_commands(BENCH)) == set(needs)
    for target, extras in needs.items():
        commands = _make(target, venv)
        assert commands[0] == f"python3 -m venv {venv}", commands
        install = commands.index(f"{venv}/bin/python -m pip install --quiet -e {extras}")
        steps = ("python3 -m venv", f"{venv}/bin/python -m pip", "touch")
        assert all(command.startswith(steps) for command in commands[:install]), commands
        assert _make(target)[-1].startswith(".venv/bin/"), target


def test_make_demo_runs_the_demo_the_tests_run() -> None:
    """``make demo`` runs the node demo's ASGI flavour, the module tests/test_node_demo.py
    runs, which listens on 0.0.0.0:8080 unless ``PORT`` (or ``HOST``) says otherwise."""
    from examples.node_demo.common import Settings

    from .test_node_demo import FLAVOURS

    assert "on 0.0.0.0:8080 (PORT=... overrides)" in _page_commands(MAKE)["demo"]
    assert _make("demo")[-1] == f".venv/bin/python -m {FLAVOURS['asgi']}"
    default = Settings.from_env({})
    assert (default.host, default.port) == ("0.0.0.0", 8080)
    assert Settings.from_env({"PORT": "9090"}).port == 9090


def test_make_test_runs_the_checks_and_the_whole_suite() -> None:
    """``make test``: ruff's lint and format check over the sources and tests, mypy with
    ``strict = true``, the documentation built with ``--strict`` (docs/architecture.md says
    so), then pytest with no selection: the whole suite."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    commands = _make("test")
    lint = [c for c in commands if c.startswith(".venv/bin/ruff ")]
    assert [c.split()[:3] for c in lint] == [
        [".venv/bin/ruff", "check", "src"],
        [".venv/bin/ruff", "format", "--check"],
    ]
    assert all({"src", "tests", "examples"} <= set(c.split()) for c in lint), lint
    assert ".venv/bin/mypy" in commands
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["mypy"]["strict"] is True
    assert any(c.startswith(".venv/bin/mkdocs build --strict") for c in commands), commands
    assert "built with --strict by `make test`" in TREE
    assert commands[-1] == ".venv/bin/python -m pytest"
    assert not re.search(r"(^|\s)-[mk]\b", pyproject["tool"]["pytest"]["ini_options"]["addopts"])
    said = _page_commands(MAKE)["test"]
    assert "ruff lint + format check" in said and "mypy --strict" in said and "the whole pytest suite" in said


def test_make_bench_runs_the_benchmarks_as_the_by_hand_lines_do() -> None:
    """docs/performance.md: ``make bench`` installs the extras the by-hand lines install and
    runs the command they end with; ``make docs-figures``, which docs/architecture.md names
    beside the benchmarks, draws the figures with ``benchmarks.figures``."""
    first, _comment, by_hand_venv, apt, run = BENCH.splitlines()
    assert first.startswith("make bench ") and apt.startswith("apt-get install -y wrk ")
    assert by_hand_venv == "python3 -m venv .venv && .venv/bin/pip install -e '.[dev,bench]'"  # as make bench does
    assert shlex.join(shlex.split(run, comments=True)) == _make("bench")[-1] == ".venv/bin/python -m benchmarks"
    assert (ROOT / "benchmarks" / "__main__.py").is_file()
    assert "(`make bench`)" in TREE and "(`make docs-figures`)" in TREE
    assert _make("docs-figures")[-1] == ".venv/bin/python -m benchmarks.figures"
    assert (ROOT / "benchmarks" / "figures.py").is_file()


# -- docs/architecture.md ------------------------------------------------------------------------------


def test_the_module_map_names_every_module_and_package_once() -> None:
    """The map names exactly the modules (``.py``) and packages (``name/``) of
    ``src/healthprobe/``, each once."""
    source = ROOT / "src" / "healthprobe"
    lines = MODULE_MAP.splitlines()
    assert lines[0] == "src/healthprobe/"
    named = [token for line in lines[1:] for token in re.findall(r"(?<!\S)([\w.]+\.py|\w+/)(?!\S)", line)]
    real = [path.name for path in source.glob("*.py")]
    real += [f"{path.name}/" for path in source.iterdir() if (path / "__init__.py").is_file()]
    assert len(named) == len(set(named)), named
    assert sorted(named) == sorted(real)


def test_the_repository_tree_names_folders_and_files_that_exist() -> None:
    """Each line of the tree starts with a top folder, or continues the one above; the
    folders (``name/``) and files (``name.py``) it names are in that folder."""
    top: Path | None = None
    named = []
    for line in TREE.splitlines():
        if not line.startswith(" "):
            first = line.split()[0]
            assert first.endswith("/"), line
            top = ROOT / first
            named.append(top)
            line = line[len(first) :]
        assert top is not None
        named += [top / token for token in re.findall(r"(?<![\w/.`-])([\w]+/|[\w]+\.py)(?![\w/`])", line)]
    assert [path.relative_to(ROOT).as_posix() for path in named if not path.exists()] == []
    assert {path.relative_to(ROOT).as_posix() for path in named} >= {
        "examples",
        "examples/node_demo",
        "examples/worker",
        "examples/prometheus",
        "tests",
        "tests/conftest.py",
        "tests/support.py",
        "benchmarks",
        "docs",
        "docs/frameworks",
    }
