"""Installing healthprobe: the wheel and the sdist install into a fresh virtual environment
and work there; the core imports no extra; a missing extra raises an error naming the
command that installs it; README and docs/index.md list every extra of pyproject.toml."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from healthprobe._extras import EXTRAS, MissingExtraError, requires

from . import doc_pages
from .support import ROOT, clean_env, raised_without

#: Extras whose packages the core must never import.
EXTRA_MODULES = sorted({module for modules in EXTRAS.values() for module in modules})

#: Extras that need no server, installed in the fresh environment.
SERVER_INDEPENDENT = "asgi,wsgi,prometheus,postgres,redis,sqlalchemy,http"


def _run(args: list[str | Path], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    shown = " ".join("<script>" if "\n" in str(a) else str(a) for a in args)
    assert done.returncode == 0, f"{shown} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


# -- in the test's own interpreter ------------------------------------------------------------


def test_requires_names_the_extra_and_keeps_the_original() -> None:
    original = ModuleNotFoundError("No module named 'starlette'", name="starlette")
    with pytest.raises(ImportError) as caught, requires("asgi", "healthprobe.asgi"):
        raise original
    assert str(caught.value) == "healthprobe.asgi needs starlette: pip install 'healthprobe[asgi]'"
    assert isinstance(caught.value, ModuleNotFoundError)
    assert isinstance(caught.value, MissingExtraError)
    assert caught.value.extra == "asgi"
    assert caught.value.name == "starlette"
    assert caught.value.__cause__ is original


def test_requires_names_the_distribution_not_the_module() -> None:
    message = r"^x needs psycopg-pool: pip install 'healthprobe\[postgres\]'$"
    with pytest.raises(ImportError, match=message), requires("postgres", "x"):
        raise ModuleNotFoundError("No module named 'psycopg_pool'", name="psycopg_pool")


@pytest.mark.parametrize(
    "error",
    [
        ModuleNotFoundError("No module named 'typing_extensions'", name="typing_extensions"),  # the extra's dependency
        ModuleNotFoundError("No module named 'starlette.future'", name="starlette.future"),  # an older release
        ModuleNotFoundError("No module named 'werkzeug'", name="werkzeug"),  # another extra's package
        ImportError("cannot import name 'Thing' from 'starlette'", name="starlette"),
        ValueError("not an import error"),
    ],
)
def test_requires_lets_other_errors_through(error: Exception) -> None:
    with pytest.raises(type(error)) as caught, requires("asgi", "healthprobe.asgi"):
        raise error
    assert caught.value is error


def test_requires_nested_chains_the_first_error() -> None:
    original = ModuleNotFoundError("No module named 'prometheus_client'", name="prometheus_client")
    outer, inner = requires("prometheus", "metrics=True"), requires("prometheus", "healthprobe.prometheus")
    with pytest.raises(ImportError) as caught, outer, inner:
        raise original
    assert str(caught.value) == "metrics=True needs prometheus-client: pip install 'healthprobe[prometheus]'"
    assert caught.value.__cause__ is original


def test_requires_refuses_an_unknown_extra() -> None:
    with pytest.raises(ValueError, match="unknown extra 'starlette'"):
        requires("starlette", "x")


def _pyproject_extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")
    extras: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    return extras


def _install_section(path: Path) -> str:
    text = path.read_text()
    match = re.search(r"^## Install\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"{path.name} has no '## Install' section"
    return match.group(1)


@pytest.mark.parametrize("doc", ["README.md", "docs/index.md"])
def test_install_section_lists_every_extra(doc: str) -> None:
    section = _install_section(ROOT / doc)
    missing = [extra for extra in _pyproject_extras() if f"`{extra}`" not in section]
    assert not missing, f"the Install section of {doc} does not list {missing}"
    assert "not on PyPI" in section
    assert "pip install -e '.[asgi]'" in section
    assert "dist/healthprobe-0.1.0-py3-none-any.whl[asgi]" in section


def test_guarded_extras_are_in_pyproject() -> None:
    extras = _pyproject_extras()
    for extra, modules in EXTRAS.items():
        assert extra in extras, extra
        requirements = " ".join(extras[extra]).lower()
        for module, distribution in modules.items():
            if module != "greenlet":  # sqlalchemy[asyncio] brings it
                assert distribution in requirements, (extra, distribution)


# -- in a child interpreter: a missing package ---------------------------------------------

# (extra, blocked packages, statement, what the message starts with)
MISSING_CASES = {
    "flask": ("flask", "flask", "import healthprobe.flask", "healthprobe.flask"),
    "django": ("django", "django", "import healthprobe.django", "healthprobe.django"),
    "celery": ("celery", "celery", "import healthprobe.celery", "healthprobe.celery"),
    "asgi": ("asgi", "starlette", "import healthprobe.asgi", "healthprobe.asgi"),
    "prometheus": ("prometheus", "prometheus_client", "import healthprobe.prometheus", "healthprobe.prometheus"),
    "metrics=True": (
        "prometheus",
        "prometheus_client",
        "healthprobe.HealthEndpoints(healthprobe.HealthRegistry(), metrics=True)",
        "metrics=True",
    ),
    "probe server": ("wsgi", "werkzeug", "healthprobe.serve", "healthprobe.probe_server"),
    "servers.gunicorn_probes": (
        "wsgi",
        "werkzeug",
        "import healthprobe.servers.gunicorn_probes",
        "healthprobe.servers.gunicorn_probes",
    ),
    "servers.werkzeug": ("wsgi", "werkzeug", "import healthprobe.servers.werkzeug", "healthprobe.servers.werkzeug"),
    "servers.uvicorn": ("uvicorn", "uvicorn", "import healthprobe.servers.uvicorn", "healthprobe.servers.uvicorn"),
    "servers.hypercorn": (
        "hypercorn",
        "hypercorn",
        "import healthprobe.servers.hypercorn",
        "healthprobe.servers.hypercorn",
    ),
    "servers.waitress": ("waitress", "waitress", "import healthprobe.servers.waitress", "healthprobe.servers.waitress"),
    "checks.postgres": (
        "postgres",
        "psycopg,psycopg_pool",
        "checks.postgres('postgresql://127.0.0.1/test')",
        "healthprobe.checks.postgres()",
    ),
    "checks.redis url": ("redis", "redis", "checks.redis('redis://127.0.0.1')", "healthprobe.checks.redis()"),
    "checks.redis client": ("redis", "redis", "checks.redis(object())", "healthprobe.checks.redis()"),
    "checks.sqlalchemy": ("sqlalchemy", "sqlalchemy", "checks.sqlalchemy(object())", "healthprobe.checks.sqlalchemy()"),
    "checks.http": ("http", "httpx", "checks.http('http://127.0.0.1/')", "healthprobe.checks.http()"),
}


@pytest.mark.parametrize("case", MISSING_CASES)
def test_missing_extra_names_the_fix(case: str) -> None:
    extra, block, statement, what = MISSING_CASES[case]
    raised = raised_without(block, statement)
    assert raised is not None, f"{statement} worked with {block} missing"
    package = block.split(",")[0]
    distribution = EXTRAS[extra][package]
    assert raised["message"] == f"{what} needs {distribution}: pip install 'healthprobe[{extra}]'"
    assert isinstance(raised["type"], list) and "ImportError" in raised["type"]
    assert raised["name"] == package
    assert raised["cause"] == ["ModuleNotFoundError", package]


@pytest.mark.parametrize(
    ("block", "statement", "message"),
    [
        ("werkzeug", "healthprobe.serve", "healthprobe.probe_server needs werkzeug: pip install 'healthprobe[wsgi]'"),
        ("starlette", "import healthprobe.asgi", "healthprobe.asgi needs starlette: pip install 'healthprobe[asgi]'"),
    ],
    ids=["probe server", "asgi"],
)
def test_missing_extra_blocked_in_sys_modules(block: str, statement: str, message: str) -> None:
    """``sys.modules[name] = None``, the usual way to hide a package in a test, reports a
    submodule import as ``'werkzeug' is not a package``: still the extra's package missing."""
    raised = raised_without(block, statement, mode="none")
    assert raised is not None
    assert raised["message"] == message
    assert raised["name"] == block


def test_wsgi_adapter_needs_no_extra() -> None:
    """healthprobe.wsgi speaks PEP 3333 itself: Django under gunicorn needs no Werkzeug."""
    statement = "import healthprobe.wsgi; healthprobe.wsgi.HealthApp(healthprobe.HealthRegistry())"
    assert raised_without("werkzeug", statement) is None


_CORE = textwrap.dedent(
    """
    import json, sys
    import healthprobe, healthprobe.checks, healthprobe.cli, healthprobe.http, healthprobe.shutdown
    print(json.dumps(sorted(name for name in sys.modules if name.partition(".")[0] in sys.argv[1:])))
    """
)


def test_core_imports_no_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CORE, *EXTRA_MODULES], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# -- a fresh virtual environment ------------------------------------------------------------

# Run by the fresh environment's interpreter, outside this checkout.
_BARE = textwrap.dedent(
    """
    import sys
    import healthprobe, healthprobe.checks, healthprobe.wsgi

    assert "site-packages" in healthprobe.__file__, healthprobe.__file__
    extras = [m for m in sys.modules if m.partition(".")[0] in sys.argv[1:]]
    assert not extras, extras
    for module, message in [
        ("healthprobe.prometheus", "pip install 'healthprobe[prometheus]'"),
        ("healthprobe.probe_server", "pip install 'healthprobe[wsgi]'"),
    ]:
        try:
            __import__(module)
        except ImportError as exc:
            assert message in str(exc), str(exc)
        else:
            raise AssertionError(f"{module} imported without its extra")
    print("bare ok")
    """
)

_FULL = textwrap.dedent(
    """
    import subprocess, sys, urllib.request
    from pathlib import Path
    import healthprobe, healthprobe.checks

    root = Path(healthprobe.__file__).parent
    assert "site-packages" in str(root), root
    assert (root / "py.typed").is_file()
    extras = [m for m in sys.modules if m.partition(".")[0] in sys.argv[1:]]
    assert not extras, f"importing the core imported {extras}"

    import healthprobe.asgi, healthprobe.wsgi, healthprobe.prometheus
    from healthprobe import checks

    checks.http("http://127.0.0.1:9/")
    checks.redis("redis://127.0.0.1:9")
    checks.postgres("postgresql://127.0.0.1:9/test")
    import sqlalchemy
    checks.sqlalchemy(sqlalchemy.create_engine("sqlite://"))

    registry = healthprobe.HealthRegistry()
    registry.add_check("ok", lambda: True)
    registry.mark_started()
    server = healthprobe.serve(registry, "127.0.0.1", 0, metrics=True)
    try:
        with urllib.request.urlopen(server.url + "/readyz", timeout=10) as answer:
            body = answer.read()
            assert answer.status == 200 and body.strip() == b"ok", (answer.status, body)
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as answer:
            assert b"healthprobe_" in answer.read()
        command = Path(sys.executable).parent / "healthprobe"
        subprocess.run([str(command), "probe", server.url + "/livez"], check=True, timeout=30)
    finally:
        server.stop()
    print("full ok")
    """
)


#: Pages whose install line adds an extra to an installed healthprobe, and what it then imports.
PAGE_INSTALL_LINES = {
    "metrics.md": "import healthprobe.prometheus",
    "kubelet.md": "import yaml",
    "testing.md": "import httpx, pytest, yaml",
}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_and_sdist_install_into_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", dist, ROOT], cwd=tmp_path, timeout=240)
    (wheel,) = dist.glob("healthprobe-*-py3-none-any.whl")
    (sdist,) = dist.glob("healthprobe-*.tar.gz")

    _run([sys.executable, "-m", "venv", tmp_path / "venv"], cwd=tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input", "install", "--quiet"]

    # The wheel alone: the core works, and a missing extra names the command that adds it.
    _run([*pip, wheel], cwd=tmp_path)
    assert "bare ok" in _run([python, "-c", _BARE, *EXTRA_MODULES], cwd=tmp_path)

    # The install lines of the pages that add one extra to an installed copy, as written (the
    # command the ImportError above names): pip takes the extra from the wheel's metadata.
    for page, imports in PAGE_INSTALL_LINES.items():
        (line,) = doc_pages.block(doc_pages.page(page), "sh", starts="pip install ").splitlines()
        program, *arguments = shlex.split(line, comments=True)
        _run([tmp_path / "venv" / "bin" / program, *arguments], cwd=tmp_path)
        _run([python, "-c", imports], cwd=tmp_path)

    # The wheel with extras, as the README says; then more extras by name, as an
    # ImportError says, which pip takes from the installed package's metadata.
    _run([*pip, f"{wheel}[asgi,wsgi,prometheus]"], cwd=tmp_path)
    _run([*pip, f"healthprobe[{SERVER_INDEPENDENT}]"], cwd=tmp_path)
    assert "full ok" in _run([python, "-c", _FULL, *EXTRA_MODULES], cwd=tmp_path)

    # The sdist builds and installs (its dependencies are there already), and works the same.
    _run([*pip, "--no-deps", "--force-reinstall", f"{sdist}[{SERVER_INDEPENDENT}]"], cwd=tmp_path)
    assert "full ok" in _run([python, "-c", _FULL, *EXTRA_MODULES], cwd=tmp_path)

    # The wheel and sdist lines of README.md and docs/index.md (the same on both pages): the
    # first is the build above, and the next two install what it wrote, as the steps above do.
    readme, index = (ROOT / "README.md").read_text(), doc_pages.page("index.md")
    built = [doc_pages.block(text, "sh", starts="pip install build && python -m build") for text in (readme, index)]
    first, *installs = [shlex.split(line, comments=True) for line in built[0].splitlines()]
    assert [shlex.split(line, comments=True) for line in built[1].splitlines()] == [first, *installs], built
    assert first == ["pip", "install", "build", "&&", "python", "-m", "build"], first
    assert installs == [["pip", "install", f"dist/{made.name}[asgi]"] for made in (wheel, sdist)], installs

    # The clone's lines, as written, with the clone's path for /path/to/healthprobe: README's
    # make an environment of their own (python3 is this interpreter), install the clone by its
    # path (a copy in site-packages), then editable (the clone's source); docs/index.md's
    # editable line then runs from inside the clone, and its other line is README's.
    clone = doc_pages.block(readme, "sh", starts="python3 -m venv .venv && ").splitlines()
    editable, by_path = doc_pages.block(index, "sh", starts="pip install -e '.[asgi]'").splitlines()
    assert shlex.split(by_path, comments=True) == shlex.split(clone[1], comments=True), (by_path, clone)
    where = "python -c 'import healthprobe, healthprobe.asgi; print(\"at\", healthprobe.__file__)'"
    script = ["set -e", f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH"]
    for line in [*clone, editable]:
        here = ROOT if "'.[" in line else tmp_path
        script += [f"cd {shlex.quote(str(here))}", line.replace("/path/to/healthprobe", str(ROOT))]
        if line.startswith("pip install"):
            script.append(where)
    out = _run(["bash", "-c", "\n".join(script)], cwd=tmp_path, timeout=240)
    found = [line.removeprefix("at ") for line in out.splitlines() if line.startswith("at ")]

    def kind(at: str) -> str:
        if at.startswith(str(ROOT / "src" / "healthprobe")):
            return "clone"
        return "copy" if at.startswith(str(tmp_path / ".venv" / "lib")) and "site-packages" in at else at

    assert [kind(at) for at in found] == ["copy", "clone", "clone"], found
