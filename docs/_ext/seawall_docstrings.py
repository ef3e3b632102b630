"""A Griffe extension: read seawall's reST-flavoured docstrings as Markdown.

seawall's docstrings follow the Google style (``Args:``, ``Raises:``) with a
few reStructuredText habits, which the API reference (mkdocstrings, Markdown)
would otherwise print as they are. This extension rewrites them when Griffe
loads the package, before any docstring is parsed:

* roles -- ``:class:`~seawall.errors.CircuitOpenError``` -- become links to the
  API reference when the target is a seawall object, and code otherwise; a
  role whose target does not exist is a warning, so ``mkdocs build --strict``
  fails on a broken reference in a docstring as it does on one in a page;
* ``text::`` followed by an indented block, and ``.. code-block:: lang``,
  become fenced code blocks (Python when the block parses as Python);
* ``.. versionadded:: X`` becomes a line of its own;
* reST simple tables (``=====  =====``) become Markdown tables;
* ``#:`` comments above an assignment become the docstring of a constant or
  attribute that has none (Sphinx's convention, used in seawall's sources).

``tests/test_docs.py`` loads the package through this extension too, so the
check that every public name is documented sees what the reference shows.
"""

# ruff: noqa: INP001 - loaded by path (mkdocs.yml, tests/test_docs.py), not a package
from __future__ import annotations

import ast
import builtins
import re
from typing import TYPE_CHECKING, Any

import griffe

if TYPE_CHECKING:
    from griffe import GriffeLoader, Object

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj|const):`(?P<body>[^`]+)`")
_EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^>]+)>$")
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. (?P<name>[a-z-]+)::\s*(?P<arg>.*)$")
_TABLE_BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")
_BUILTINS = frozenset(dir(builtins))


class SeawallDocstrings(griffe.Extension):
    """Rewrite the docstrings of every object once the package is loaded."""

    def on_object(self, *, obj: Object, loader: GriffeLoader, **kwargs: Any) -> None:  # noqa: ARG002
        """Adopt ``#:`` comments, then turn reST markup into Markdown."""
        if obj.is_attribute and obj.docstring is None:
            comment = _doc_comment(obj)
            if comment:
                obj.docstring = griffe.Docstring(comment, lineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value, obj, loader)


def _doc_comment(obj: Object) -> str:
    lineno = obj.lineno
    try:
        lines = obj.module.lines
    except Exception:  # an object without source has no comment
        return ""
    if not lineno or not lines:
        return ""
    found: list[str] = []
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return " ".join(found)


def to_markdown(text: str, obj: Object, loader: GriffeLoader) -> str:
    """Return ``text`` (a docstring of ``obj``) with its reST markup turned into Markdown."""
    lines = _blocks(text.splitlines())
    lines = _tables(lines)
    out = "\n".join(lines).replace("\\ ", "")
    return _ROLE.sub(lambda m: _role(m["body"], obj, loader), out)


# -- literal blocks, code blocks, directives --------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _take_block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """Return the lines indented deeper than ``base`` from ``start``, and where they end."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    block: list[str] = []
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
        block.append(lines[i])
        i += 1
    while block and not block[-1].strip():
        block.pop()
        i -= 1
    depth = min((_indent(b) for b in block if b.strip()), default=0)
    return [b[depth:] if b.strip() else "" for b in block], i


def _language(block: list[str]) -> str:
    try:
        ast.parse("\n".join(block))
    except SyntaxError:
        return "text"
    return "python"


def _fence(block: list[str], language: str, pad: str) -> list[str]:
    return ["", f"{pad}```{language}", *(pad + b if b else "" for b in block), f"{pad}```", ""]


def _blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        pad = " " * _indent(line)
        directive = _DIRECTIVE.match(line)
        if directive is not None:
            name, arg = directive["name"], directive["arg"].strip()
            if name == "versionadded":
                out.append(f"{pad}*Added in version {arg}.*")
                i += 1
                continue
            if name in {"code-block", "code"}:
                block, i = _take_block(lines, i + 1, _indent(line))
                out.extend(_fence(block, arg or "text", pad))
                continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            block, end = _take_block(lines, i + 1, _indent(line))
            if block:
                stripped = line.rstrip()[:-2].rstrip()
                if stripped.strip():
                    out.append(stripped if stripped.endswith(":") else stripped + ":")
                out.extend(_fence(block, _language(block), pad))
                i = end
                continue
        out.append(line)
        i += 1
    return out


# -- simple tables --------------------------------------------------------------------


def _columns(border: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", border)]


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str]:
    starts = [start for start, _ in spans]
    ends = [*starts[1:], len(line)]
    return [line[start:end].strip() for start, end in zip(starts, ends, strict=True)]


def _tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _TABLE_BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        spans = _columns(lines[i])
        borders = [i]
        j = i + 1
        while j < len(lines) and len(borders) < 3:  # noqa: PLR2004 - top, under the head, bottom
            if _TABLE_BORDER.match(lines[j]):
                borders.append(j)
            j += 1
        if len(borders) < 3:  # noqa: PLR2004 - not a table after all
            out.append(lines[i])
            i += 1
            continue
        head = [_cells(x, spans) for x in lines[borders[0] + 1 : borders[1]] if x.strip()]
        rows: list[list[str]] = []
        for x in lines[borders[1] + 1 : borders[2]]:
            if not x.strip():
                continue
            cells = _cells(x, spans)
            if rows and not cells[0]:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
            else:
                rows.append(cells)
        header = [" ".join(parts).strip() for parts in zip(*head, strict=True)] if head else []
        out.append("")
        out.append(_row(header or [""] * len(spans)))
        out.append(_row(["---"] * len(spans)))
        out.extend(_row(r) for r in rows)
        out.append("")
        i = borders[2] + 1
    return out


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


# -- cross-references ----------------------------------------------------------------


def _role(body: str, obj: Object, loader: GriffeLoader) -> str:
    explicit = _EXPLICIT.match(body)
    if explicit is not None:
        title, target = explicit["title"], explicit["target"]
    else:
        target = body.lstrip("~")
        title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    path = _resolve(target.removesuffix("()"), obj, loader)
    code = f"<code>{title}</code>"
    if path is None:
        return code
    return f'<autoref identifier="{path}" optional>{code}</autoref>'


def _member(path: str, loader: GriffeLoader) -> Any:
    """Return the object at ``path``, or ``None`` (KeyError, alias resolution errors...)."""
    try:
        return loader.modules_collection.get_member(path)
    except Exception:  # not there, or an alias to something outside
        return None


def _exists(path: str, loader: GriffeLoader) -> bool:
    """Return whether ``path`` names an object, inherited class members included."""
    if _member(path, loader) is not None:
        return True
    owner, _, name = path.rpartition(".")
    parent = _member(owner, loader)
    return parent is not None and parent.is_class and name in parent.all_members


def _rendered(obj: Object) -> bool:
    """Return whether ``obj``'s docstring shows in the API reference (so its links must work).

    The reference renders the public modules, and the objects of ``seawall.core``
    and private modules that they re-export; the other docstrings of the core
    and of private modules are for maintainers and are not checked.
    """
    current: Object | None = obj
    while current is not None:
        parts = current.path.split(".")
        if not any(p.startswith("_") and not p.startswith("__") for p in parts) and (
            parts[:2] != ["seawall", "core"]
        ):
            return True
        if any(not a.startswith("seawall.core") for a in current.aliases):
            return True
        current = current.parent if not current.is_module else None
    return False


def _broken(obj: Object, target: str) -> None:
    if _rendered(obj):
        griffe.logger.warning("%s: broken reference %r in its docstring", obj.path, target)


def _resolve(target: str, obj: Object, loader: GriffeLoader) -> str | None:
    """Return the seawall path ``target`` names from ``obj``; ``None`` for an outside name.

    Warns (which fails a strict build) when ``target`` names nothing at all.
    """
    first, _, rest = target.partition(".")
    if first == "seawall":
        path = target
    else:
        try:
            base = obj.resolve(first)
        except griffe.NameResolutionError:
            if first in _BUILTINS or rest:
                return None  # a builtin, or a dotted outside name (``time.monotonic``)
            base = ""
        path = f"{base}.{rest}" if base and rest else base
        if base and not path.startswith("seawall"):
            return None  # resolved to another library's name
    if path and _exists(path, loader):
        return path
    _broken(obj, target)
    return None
