"""Griffe extension that reads healthprobe's docstrings the way they are written.

The docstrings follow Google style for their sections (``Args:``, ``Returns:``, ``Raises:``)
and Sphinx conventions inside the text. Before mkdocstrings renders them as Markdown, this
extension, loaded from ``mkdocs.yml``, rewrites:

* cross-reference roles (``:class:`HealthRegistry```, ``:func:`~healthprobe.serve```,
  ``:meth:`install```...) into links to the object's entry in the reference, resolved from
  the scope of the docstring as Python resolves names there; a name that is not part of the
  reference (the standard library, a private module) stays inline code;
* ``#:`` comments above an assignment into the docstring of that attribute (constants such
  as ``DEFAULT_TIMEOUT`` are documented that way);
* ``text::`` before an indented literal block into ``text:`` (the block is indented, hence
  code, in Markdown too);
* an argument entry naming several parameters (``paths, failure_status: as ...``, the names
  possibly wrapped over several lines) into one entry per parameter, each with the same
  description, so that every name is checked against the signature.

With ``filters: public`` (what ``__all__`` lists where a module defines it, else every name
not starting with ``_``), it also keeps out of the reference the special methods of classes
(``__call__``, ``__repr__``...; ``__init__`` is merged into the class) and, unless ``__all__``
lists them, a module's ``logger = logging.getLogger(...)`` and ``T = TypeVar(...)``.

It lives next to the reference pages and is not copied into the site (``exclude_docs``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

# :role:`target`, :role:`~dotted.target`, :role:`title <target>`, with or without the
# ``py:`` domain (Sphinx "Cross-referencing Python objects").
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|const|exc|obj|mod|type):`(?P<body>[^`]+)`")
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
_LITERAL_INTRO = re.compile(r"^(?P<text>.*\S)?\s*::$")
_SECTION = re.compile(
    r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Keyword Args|Keyword Arguments|Other Parameters):\s*$"
)
_NAME = r"\*{0,2}\w+"
_GROUPED = re.compile(rf"^(?P<indent>\s*)(?P<names>{_NAME}(?:\s*,\s*{_NAME})+)\s*:(?P<rest>.*)$")
# A list of names that goes on on the next line (``a, b, c,``).
_NAMES_GO_ON = re.compile(rf"^\s*{_NAME}(?:\s*,\s*{_NAME})*\s*,\s*$")


# Module attributes that are implementation, not API, unless ``__all__`` lists them.
_NOT_API = ("logging.getLogger(", "getLogger(", "TypeVar(", "typing.TypeVar(", "ParamSpec(", "typing.ParamSpec(")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


class HealthprobeDocstrings(griffe.Extension):
    """Rewrite the docstrings of a package once it is loaded, before any of them is parsed."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Visit every object the package defines (not what it imports) and rewrite its docstring.

        Args:
            pkg: the package griffe has just loaded completely.
            loader: the loader that loaded it (gives the docstring parser and its options).
            **kwargs: what later versions of griffe pass.
        """
        self._visit(pkg, loader)

    def _visit(self, obj: griffe.Object, loader: griffe.GriffeLoader) -> None:
        if self._not_api(obj):
            obj.public = False
        if obj.is_class:
            # Special methods are public to griffe, and to "public" filtering: drop them from
            # the model (``__init__`` stays, merged into the class's signature).
            for name in [name for name in obj.members if name.startswith("__") and name != "__init__"]:
                obj.del_member(name)
        if obj.is_attribute and obj.docstring is None:
            self._comment_docstring(obj, loader)
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, loader)  # type: ignore[arg-type]

    @staticmethod
    def _not_api(obj: griffe.Object) -> bool:
        if obj.is_attribute and obj.parent is not None and obj.parent.is_module and not obj.is_exported:
            value = getattr(obj, "value", None)
            return str(value).startswith(_NOT_API) if value is not None else False
        return False

    @staticmethod
    def _comment_docstring(obj: griffe.Object, loader: griffe.GriffeLoader) -> None:
        if obj.lineno is None or isinstance(obj.filepath, list):
            return
        lines = obj.lines_collection[obj.filepath]
        index = obj.lineno - 2  # the line above the assignment, 0-based
        comments: list[str] = []
        while index >= 0 and lines[index].lstrip().startswith("#:"):
            comments.append(lines[index].lstrip()[2:].removeprefix(" "))
            index -= 1
        if comments:
            obj.docstring = griffe.Docstring(
                "\n".join(reversed(comments)),
                lineno=index + 2,
                endlineno=obj.lineno - 1,
                parent=obj,
                parser=loader.docstring_parser,
                parser_options=loader.docstring_options,
            )

    def _rewrite(self, obj: griffe.Object, text: str) -> str:
        lines = self._split_grouped(text.split("\n"))
        out: list[str] = []
        for line in lines:
            literal = _LITERAL_INTRO.match(line)
            if literal and not line.lstrip().startswith((">>>", "...")):
                line = f"{literal['text']}:" if literal["text"] else ""
            out.append(_ROLE.sub(lambda match: self._link(obj, match["body"]), line))
        return "\n".join(out)

    @staticmethod
    def _split_grouped(lines: list[str]) -> list[str]:
        out: list[str] = []
        section: int | None = None  # indentation of the current argument section's header
        i = 0
        while i < len(lines):
            line = lines[i]
            header = _SECTION.match(line)
            if header:
                section = len(header["indent"])
                out.append(line)
                i += 1
                continue
            if section is not None and line.strip() and _indent(line) <= section:
                section = None
            head, first = line, i + 1
            if section is not None:
                # The names may wrap: join their lines up to the one with the colon.
                while _NAMES_GO_ON.match(head) and first < len(lines) and lines[first].strip():
                    head = f"{head.rstrip()} {lines[first].strip()}"
                    first += 1
            grouped = _GROUPED.match(head) if section is not None else None
            if grouped is None:
                out.append(line)
                i += 1
                continue
            # The entry's description goes on on the lines indented deeper than the entry.
            end = first
            while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > _indent(line)):
                end += 1
            while end > first and not lines[end - 1].strip():
                end -= 1
            for name in (part.strip() for part in grouped["names"].split(",")):
                out.append(f"{grouped['indent']}{name}:{grouped['rest']}")
                out.extend(lines[first:end])
            i = end
        return out

    @staticmethod
    def _link(obj: griffe.Object, body: str) -> str:
        titled = _TITLED.match(body)
        if titled:
            title, target = titled["title"], titled["target"]
        else:
            target = body
            title = body.removeprefix("~").rsplit(".", 1)[-1] if body.startswith("~") else body
        target = target.removeprefix("~")
        relative = target.startswith(".")
        target = target.removeprefix(".")
        code = f"<code>{html.escape(title)}</code>"
        head, _, rest = target.partition(".")
        if head == obj.package.name and not relative:
            path = target  # absolute: ``healthprobe.x.y``
        else:
            # Relative (``.name``) or a name in scope: where Python would find it from here.
            try:
                path = obj.resolve(head)
            except griffe.NameResolutionError:
                return code
            if rest:
                path = f"{path}.{rest}"
        # Optional: a target the reference does not render (a private module) stays plain
        # text instead of failing the strict build.
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'
