"""The public API is what each public module's ``__all__`` lists, and the modules keep to each
other's public names.

* Every public module (no part of its dotted name starts with ``_``) defines ``__all__``; each
  name it lists exists, and every attribute of the module not starting with ``_`` is listed or
  is a module: nothing is importable from it by accident (``from healthprobe.asgi import
  Mapping``). The fields of a public dataclass resolve at run time (``typing.get_type_hints``),
  so they do not rest on imports made for type checkers only.
* No module imports a private name (``_x``) from another module of the package, and none reads
  or writes a private attribute of an object another module defines. A private *module*
  (``healthprobe._threads``, ``healthprobe.checks._common``) may be imported anywhere in the
  package: its public names are the package's internal API.
* The core (the value types, the registry and its runner, the renderers, the framework-free
  endpoints, the shutdown coordinator, and the private modules they import) imports no server
  integration and no adapter, not even inside a function or for type checkers, and no optional
  dependency when it is imported.

The rules about imports and attributes are read from the source with :mod:`ast`; the last one
is also checked by importing the core in a new interpreter.
"""

from __future__ import annotations
import __future__

import ast
import dataclasses
import importlib
import json
import pkgutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from healthprobe import _extras

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "healthprobe"


def _walk(path: Path, prefix: str) -> Iterator[str]:
    """The dotted names of the modules under ``path``, without importing any of them."""
    for info in pkgutil.iter_modules([str(path)], prefix):
        yield info.name
        if info.ispkg:
            yield from _walk(path / info.name.rpartition(".")[2], f"{info.name}.")


MODULES = ["healthprobe", *_walk(PACKAGE, "healthprobe.")]
PUBLIC = [name for name in MODULES if not any(part.startswith("_") for part in name.split("."))]

#: What the core is made of; the private modules they import belong to it too (see ``core()``).
CORE = {
    "healthprobe._types",
    "healthprobe.registry",
    "healthprobe._runner",
    "healthprobe.render",
    "healthprobe.http",
    "healthprobe.shutdown",
}
#: What the core must never import: the server integrations and the adapters (``healthprobe.<name>``
#: and the modules under it).
ABOVE_CORE = {"servers", "asgi", "wsgi", "flask", "django", "celery", "grpc"}
#: The top-level packages the extras bring, which the core must not import when imported.
OPTIONAL = sorted({module for modules in _extras.EXTRAS.values() for module in modules})

#: Private attributes of other libraries' objects that healthprobe has no public way to reach, each
#: with whose it is and why it is read; a name here is allowed in every module of the package.
THIRD_PARTY_PRIVATE = {
    # The standard library's own public API that starts with an underscore.
    "_exit": "os._exit: end a process without running cleanup (os documentation)",
    "_getframe": "sys._getframe (sys documentation)",
    "_current_frames": "sys._current_frames: every thread's frame, for the thread dump (sys documentation)",
    "_replace": "NamedTuple._replace, documented API of named tuples",
    "_asdict": "NamedTuple._asdict, likewise",
    "_fields": "NamedTuple._fields, likewise",
    "_make": "NamedTuple._make, likewise",
    # asyncio: a signal handler the loop installed is run at once (loop.add_signal_handler keeps
    # them in loop._signal_handlers, as asyncio.Handle objects whose _run calls the callback).
    "_signal_handlers": "asyncio's unix event loop: the handlers of add_signal_handler",
    "_run": "asyncio.Handle._run: run the callback of a signal handler",
    # waitress: the socket map of a listener, closed when it stops (wasyncore.close_all).
    "_map": "waitress' listener._map",
    # prometheus-client: whether it was imported in multiprocess mode.
    "_multiprocess": "prometheus_client.values.ValueClass._multiprocess",
}


def _load(name: str) -> ModuleType:
    """Import module ``name``; skip the test when an optional dependency it needs is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing and missing != "healthprobe":
            pytest.importorskip(missing)  # skips if it really is missing; else the error stands
        raise


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_module_lists_its_api_in_all(name: str) -> None:
    module = _load(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, (list, tuple)), f"{name} defines no __all__"
    duplicates = sorted({item for item in exported if list(exported).count(item) > 1})
    assert not duplicates, f"{name}.__all__ lists {duplicates} more than once"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ lists names the module does not have: {missing}"
    unlisted = sorted(
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and attribute not in exported
        and not isinstance(value, ModuleType)
        and value is not __future__.annotations
    )
    assert not unlisted, (
        f"{name} has public attributes that its __all__ does not list: {unlisted} "
        "(list them, import them under TYPE_CHECKING, or reach them through their module)"
    )


@pytest.mark.parametrize("name", PUBLIC)
def test_the_fields_of_public_dataclasses_resolve_at_run_time(name: str) -> None:
    # typing.get_type_hints (pydantic, cattrs, hypothesis' builds...) reads a dataclass's field
    # annotations at run time: the names they use cannot be left to TYPE_CHECKING imports.
    module = _load(name)
    unresolved = []
    for attribute in getattr(module, "__all__", ()):
        value = getattr(module, attribute)
        if isinstance(value, type) and (dataclasses.is_dataclass(value) or hasattr(value, "_fields")):
            try:
                typing.get_type_hints(value)
            except NameError as error:
                unresolved.append(f"{attribute}: {error}")
    assert not unresolved, f"field annotations of {name} that do not resolve at run time: {unresolved}"


def test_the_package_walk_finds_public_and_private_modules() -> None:
    assert {"healthprobe", "healthprobe.checks", "healthprobe.django.management.commands.healthprobe"} <= set(PUBLIC)
    assert {"healthprobe._types", "healthprobe.checks._common", "healthprobe.django._wiring"} <= set(MODULES)
    assert not [name for name in PUBLIC if "._" in name]


# ---------------------------------------------------------------------------------------------
# The source, read with ast


class Source:
    """One module of the package: its dotted name, file and syntax tree."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.is_package = path.name == "__init__.py"

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} ({self.name})"

    def resolve(self, node: ast.ImportFrom) -> str:
        """The absolute name of the module ``node`` imports from."""
        if not node.level:
            return node.module or ""
        base = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    def imports(self) -> Iterator[tuple[ast.stmt, list[str], bool, bool]]:
        """Every import statement, with the modules it may import (for ``from m import x``:
        ``m`` and ``m.x``), whether it runs at import time (not inside a function), and
        whether it is only for type checkers (under ``if TYPE_CHECKING:``)."""
        yield from self._imports(self.tree.body, module_level=True, typing_only=False)

    def _imports(
        self, body: list[ast.stmt], *, module_level: bool, typing_only: bool
    ) -> Iterator[tuple[ast.stmt, list[str], bool, bool]]:
        for statement in body:
            if isinstance(statement, ast.Import):
                yield statement, [alias.name for alias in statement.names], module_level, typing_only
            elif isinstance(statement, ast.ImportFrom):
                base = self.resolve(statement)
                names = [base, *(f"{base}.{alias.name}" for alias in statement.names)]
                yield statement, names, module_level, typing_only
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from self._imports(statement.body, module_level=False, typing_only=typing_only)
            elif isinstance(statement, ast.If) and _is_type_checking(statement.test):
                yield from self._imports(statement.body, module_level=module_level, typing_only=True)
                yield from self._imports(statement.orelse, module_level=module_level, typing_only=typing_only)
            else:
                for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                    for child in getattr(statement, field, []):
                        inner = child.body if isinstance(child, (ast.ExceptHandler, ast.match_case)) else [child]
                        yield from self._imports(inner, module_level=module_level, typing_only=typing_only)

    def defined(self) -> set[str]:
        """The names this module defines for itself: functions, classes, names it assigns
        (class attributes, globals), attributes it assigns on ``self`` or ``cls`` (or with
        ``setattr``), and its ``__slots__``."""
        names: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_own(node.value):
                names.add(node.attr)
            elif isinstance(node, ast.Call) and _attribute_call(node) in {"setattr", "__setattr__"}:
                if len(node.args) >= 2 and _is_own(node.args[0]) and isinstance(node.args[1], ast.Constant):
                    names.add(str(node.args[1].value))
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
            ):
                names.update(str(item.value) for item in ast.walk(node.value) if isinstance(item, ast.Constant))
        return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_own(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in {"self", "cls"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _attribute_call(node: ast.Call) -> str:
    """The name of the function a call calls (``getattr``, ``object.__setattr__`` ...)."""
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return ""


def _sources() -> dict[str, Source]:
    sources = {}
    for name in MODULES:
        relative = Path(*name.split(".")[1:])
        path = PACKAGE / relative / "__init__.py"
        if not path.is_file():
            path = (PACKAGE / relative).with_suffix(".py")
        sources[name] = Source(name, path)
    return sources


SOURCES = _sources()


def test_no_module_imports_a_private_name_from_another_module() -> None:
    found = []
    for source in SOURCES.values():
        for statement, _, _, _ in source.imports():
            if not isinstance(statement, ast.ImportFrom):
                continue
            base = source.resolve(statement)
            if base != "healthprobe" and not base.startswith("healthprobe."):
                continue
            for alias in statement.names:
                if _is_private(alias.name) and f"{base}.{alias.name}" not in SOURCES:  # a private module is fine
                    found.append(f"{source.where(statement)} imports the private name {alias.name} from {base}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_no_module_uses_a_private_attribute_of_another_modules_object() -> None:
    found = []
    for source in SOURCES.values():
        allowed = source.defined() | set(THIRD_PARTY_PRIVATE)
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Attribute):
                owner, attribute = node.value, node.attr
            elif (
                isinstance(node, ast.Call)
                and _attribute_call(node) in {"getattr", "setattr", "hasattr", "delattr"}
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                owner, attribute = node.args[0], node.args[1].value
            else:
                continue
            if _is_private(attribute) and not _is_own(owner) and attribute not in allowed:
                found.append(f"{source.where(node)} uses {ast.unparse(owner)}.{attribute}")
    assert not found, (
        "private attributes used outside the module that defines them (give the owner a public name, "
        "or, for another library's object, add it with a comment to THIRD_PARTY_PRIVATE):\n" + "\n".join(found)
    )


def core() -> set[str]:
    """The core modules and, transitively, the private modules of the package they import."""
    modules = set(CORE)
    pending = list(CORE)
    while pending:
        for _, names, _, typing_only in SOURCES[pending.pop()].imports():
            for name in names:
                private = any(part.startswith("_") for part in name.split("."))
                if private and not typing_only and name in SOURCES and name not in modules:
                    modules.add(name)
                    pending.append(name)
    return modules


def _above_core(name: str) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and parts[0] == "healthprobe" and parts[1] in ABOVE_CORE


def test_the_core_imports_no_adapter_server_or_optional_dependency() -> None:
    found = []
    for name in sorted(core()):
        source = SOURCES[name]
        for statement, names, module_level, typing_only in source.imports():
            above = sorted({n for n in names if _above_core(n)})
            if above:
                found.append(f"{source.where(statement)} imports {', '.join(above)}")
            optional = sorted({n.split(".")[0] for n in names} & set(OPTIONAL))
            if optional and module_level and not typing_only:
                found.append(f"{source.where(statement)} imports {', '.join(optional)} at module level")
    assert not found, "the core reaches above itself:\n" + "\n".join(found)


def test_importing_the_core_imports_no_adapter_server_or_optional_dependency() -> None:
    code = f"import json, sys\nfor name in {sorted(CORE)!r}: __import__(name)\nprint(json.dumps(sorted(sys.modules)))\n"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    imported = json.loads(ran.stdout)
    # The package's __init__ imports healthprobe.servers, which registers how the coordinator
    # stops the servers it recognises; that package imports no server module and no server.
    unwanted = [
        name
        for name in imported
        if name.split(".")[0] in OPTIONAL or (_above_core(name) and name != "healthprobe.servers")
    ]
    assert not unwanted, f"importing the core imported {unwanted}"
