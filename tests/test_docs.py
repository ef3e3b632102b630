"""The documentation: its examples run, its public names are documented, its site builds.

* Every fenced ``python`` block of ``docs/**/*.md`` and ``README.md`` is executed.
  Each block runs in a fresh namespace, unless the line before its fence says
  ``<!-- continue -->``: then it runs after the block before it on the same
  page, in that block's namespace. Top-level ``await`` is allowed (the block
  then runs with :func:`asyncio.run`, as ``python -m asyncio`` would run it).
  Other markers, on the line before a fence:

  ``<!-- skip: reason -->``  not run (the reason says why; keep these rare);
  ``<!-- peer: name -->``    another library's code, for the migration notes:
                             compiled here, and run by
                             :func:`test_peer_examples_run_against_the_real_peers`
                             in a process of its own (the peers are in the dev lock);
  ``<!-- needs: redis -->``  run against a real Redis, whose URL is in the
                             ``REDIS_URL`` environment variable.

* :func:`test_every_public_name_is_documented` reads the public modules the way
  the API reference does (Griffe, with the docs' extension) and lists every
  public name without a docstring.
* :func:`test_docs_site_builds_strict` builds the site with ``--strict``: a broken
  link, anchor or cross-reference (in a page or a rendered docstring) fails it.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import seawall
import seawall.events

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
EXTENSION = DOCS / "_ext" / "seawall_docstrings.py"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>[a-z]+)(?::\s*(?P<arg>.*?))?\s*-->\s*$")
_MARKERS = {"skip", "continue", "peer", "needs"}
_PYTHON = {"python", "py", "python3"}


# -- finding the examples ----------------------------------------------------------------


@dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str | None = None
    arg: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass
class Chain:
    """Blocks that run one after another in one namespace (a block and its continuations)."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def where(self) -> str:
        return self.blocks[0].where


def blocks_of(page: Path) -> list[Block]:
    """Return the fenced blocks of ``page``, with the marker on the line before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip().lstrip("{").lstrip(".")
        language = re.split(r"[\s}]", info, maxsplit=1)[0].lower() if info else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j].removeprefix(indent))
            j += 1
        marker = arg = None
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and (m := _MARKER.match(lines[k])) is not None:
            marker, arg = m["kind"], (m["arg"] or "")
        found.append(Block(page, i + 1, language, "\n".join(body) + "\n", marker, arg or ""))
        i = j + 1
    return found


def python_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks_of(page) if b.language in _PYTHON]


def chains() -> list[Chain]:
    result: list[Chain] = []
    for block in python_blocks():
        if block.marker in {"skip", "peer"}:
            continue
        if block.marker == "continue":
            assert result, f"{block.where}: <!-- continue --> with nothing before it"
            assert result[-1].blocks[0].page == block.page, f"{block.where}: continues another page"
            result[-1].blocks.append(block)
        else:
            result.append(Chain([block]))
    return result


# -- running them ------------------------------------------------------------------------


def _run(block: Block, namespace: dict[str, Any]) -> None:
    code = compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))  # noqa: S307 - the documentation's own examples
    else:
        exec(code, namespace)  # noqa: S102 - the documentation's own examples


@pytest.fixture
def isolated_listeners() -> Any:
    """Leave the process-wide listeners as they were, whatever an example registered."""
    listeners = seawall.events.LISTENERS
    saved = listeners._registrations
    yield
    with listeners._lock:
        listeners._registrations = saved
        listeners._by_type = {}


@pytest.mark.parametrize("chain", chains(), ids=lambda c: c.where)
def test_example(
    chain: Chain,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    isolated_listeners: Any,
) -> None:
    """Every Python example in the docs and the README runs, and its assertions hold."""
    needs = {b.arg for b in chain.blocks if b.marker == "needs"}
    if "redis" in needs:
        try:
            server = request.getfixturevalue("redis_server")
        except RuntimeError as exc:  # redis-server is not installed
            pytest.skip(str(exc))
        monkeypatch.setenv("REDIS_URL", server.url)
    assert needs <= {"redis"}, f"{chain.where}: unknown needs {needs}"
    monkeypatch.chdir(ROOT)  # examples name files from the repository's root
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in chain.blocks:
        _run(block, namespace)


def test_markers_are_known_and_skips_say_why() -> None:
    """A misspelt marker would silently change what runs: every marker is one we know."""
    for page in PAGES:
        for block in blocks_of(page):
            if block.marker is None:
                continue
            assert block.marker in _MARKERS, f"{block.where}: unknown marker {block.marker!r}"
            if block.marker in {"skip", "peer", "needs"}:
                assert block.arg.strip(), (
                    f"{block.where}: <!-- {block.marker}: ... --> needs a reason"
                )
            if block.marker != "skip":
                assert block.language in _PYTHON, f"{block.where}: a marker on a non-Python block"
    skips = [b.where for b in python_blocks() if b.marker == "skip"]
    assert len(skips) <= 5, f"keep skipped examples rare: {skips}"


def peer_blocks() -> list[Block]:
    return [b for b in python_blocks() if b.marker == "peer"]


@pytest.mark.parametrize("block", peer_blocks(), ids=lambda b: b.where)
def test_peer_example_compiles(block: Block) -> None:
    """The other libraries' side of the migration notes is at least valid Python."""
    compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_peer_examples_run_against_the_real_peers(tmp_path: Path) -> None:
    """The peer side of every migration note runs, with its assertions, on the real library."""
    failures = []
    for n, block in enumerate(peer_blocks()):
        script = tmp_path / f"peer_{n}.py"
        script.write_text(
            "import asyncio, ast, inspect\n"
            f"source = {block.code!r}\n"
            f"code = compile(source, {block.where!r}, 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)\n"
            "ns = {'__name__': '__docs__'}\n"
            "if code.co_flags & inspect.CO_COROUTINE:\n"
            "    asyncio.run(eval(code, ns))\n"
            "else:\n"
            "    exec(code, ns)\n"
        )
        done = subprocess.run(
            # The peers are in the dev lock: each example runs in a process of
            # its own, so one library's imports cannot leak into another's.
            [sys.executable, "-W", "ignore", str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        if done.returncode != 0:
            failures.append(f"{block.where} ({block.arg}):\n{done.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)


# -- every public name is documented ------------------------------------------------------

#: The modules whose ``__all__`` is public API (see docs/versioning.md), besides
#: the integrations, which are found on disk (and kept if they import).
PUBLIC_MODULES = [
    "seawall",
    "seawall.breaker",
    "seawall.retry",
    "seawall.bulkhead",
    "seawall.adaptive",
    "seawall.throttle",
    "seawall.waits",
    "seawall.core.limit",
    "seawall.core.throttle",
    "seawall.timeouts",
    "seawall.dependency",
    "seawall.fallback",
    "seawall.outbox",
    "seawall.registry",
    "seawall.health",
    "seawall.events",
    "seawall.errors",
    "seawall.testing",
    "seawall.chaos",
]

#: Public names that had no docstring when this test was written (constants: a
#: docstring under the assignment, or a ``#:`` comment above it, fixes each).
#: The list may only shrink: a name documented since must be removed from it
#: (the test says so), and a new undocumented name fails the test.
KNOWN_UNDOCUMENTED: set[str] = set()


def public_modules() -> list[str]:
    """Return the public modules, with the integrations whose imports are installed."""
    names = list(PUBLIC_MODULES)
    for path in sorted((ROOT / "src" / "seawall" / "integrations").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        name = f"seawall.integrations.{path.stem}"
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        names.append(name)
    return names


def _griffe_package() -> Any:
    griffe = pytest.importorskip("griffe")
    loader = griffe.GriffeLoader(
        extensions=griffe.load_extensions(str(EXTENSION)), search_paths=[str(ROOT / "src")]
    )
    package = loader.load("seawall")
    loader.resolve_aliases(implicit=False, external=False)
    return package


def _has_doc(obj: Any) -> bool:
    return obj.docstring is not None and bool(obj.docstring.value.strip())


def undocumented(package: Any) -> list[str]:
    """Return every public name (and public method or property of a public class) with no docstring."""
    missing: list[str] = []
    for module_name in public_modules():
        module = (
            package if module_name == "seawall" else package[module_name.removeprefix("seawall.")]
        )
        exported = importlib.import_module(module_name).__all__
        for name in exported:
            obj = module[name]
            target = obj.final_target if obj.is_alias else obj
            if not _has_doc(target):
                missing.append(f"{module_name}.{name}")
            if not target.is_class:
                continue
            for member_name, member in target.members.items():
                member_target = member.final_target if member.is_alias else member
                plain_attribute = (
                    member_target.is_attribute and "property" not in member_target.labels
                )
                if member_name.startswith("_") or plain_attribute:
                    continue  # attributes are documented in the class's docstring
                if not _has_doc(member_target):
                    missing.append(f"{module_name}.{name}.{member_name}")
    return sorted(set(missing))


def test_every_public_name_is_documented() -> None:
    """Every public name, and every public method and property of a public class, has a docstring.

    A constant is documented by a docstring under it or a ``#:`` comment above it.
    """
    missing = set(undocumented(_griffe_package()))
    new = sorted(missing - KNOWN_UNDOCUMENTED)
    fixed = sorted(KNOWN_UNDOCUMENTED - missing)
    assert not new, "public names without a docstring:\n  " + "\n  ".join(new)
    assert not fixed, "documented now, remove from KNOWN_UNDOCUMENTED:\n  " + "\n  ".join(fixed)


def test_reference_renders_every_public_module_and_name() -> None:
    """Each public module has a ``::: module`` page, and every name of ``seawall.__all__`` shows."""
    directives = {
        m.group(1)
        for page in (DOCS / "reference").rglob("*.md")
        for m in re.finditer(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.MULTILINE)
    }
    modules = [m for m in public_modules() if m != "seawall"]
    assert not [m for m in modules if m not in directives], "modules without a reference page"
    shown = {f"seawall.{n}" for n in seawall.__all__ if f"seawall.{n}" in directives}
    for module in modules:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            for top in seawall.__all__:
                if getattr(seawall, top) is getattr(mod, name):
                    shown.add(f"seawall.{top}")
    missing = sorted(f"seawall.{n}" for n in seawall.__all__ if f"seawall.{n}" not in shown)
    assert not missing, f"public names the API reference does not render: {missing}"


def test_a_broken_reference_in_a_rendered_docstring_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The docs' extension warns (so a strict build fails) on a role naming nothing."""
    griffe = pytest.importorskip("griffe")
    sys.path.insert(0, str(EXTENSION.parent))
    try:
        extension = importlib.import_module(EXTENSION.stem)
    finally:
        sys.path.remove(str(EXTENSION.parent))
    loader = griffe.GriffeLoader(search_paths=[str(ROOT / "src")])
    package = loader.load("seawall")
    with caplog.at_level(logging.WARNING):
        text = extension.to_markdown(
            ":class:`CircuitBreaker`, :func:`time.monotonic`, :meth:`NoSuchThing.call`, :class:`Nope`",
            package["breaker"],
            loader,
        )
    assert 'identifier="seawall.breaker.CircuitBreaker"' in text
    assert "<code>time.monotonic</code>" in text
    assert "Nope" in caplog.text
    assert "NoSuchThing" not in caplog.text  # dotted and unknown: another library's name


# -- the site -----------------------------------------------------------------------------


@pytest.mark.slow
def test_docs_site_builds_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` passes: no broken link, anchor, nav entry or cross-reference."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed in this environment")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    problems = [line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert done.returncode == 0, "\n".join(problems) or done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()


def test_changelog_names_the_version_being_built() -> None:
    """The CHANGELOG's top section is the version in ``seawall/_version.py`` (or Unreleased)."""
    from seawall._version import __version__

    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    release = __version__.split(".dev")[0]
    heading = re.search(r"^## \[(?P<version>[^\]]+)\]", text, re.MULTILINE)
    assert heading is not None, "CHANGELOG.md has no '## [version]' section"
    assert heading["version"] in {release, f"{release} - Unreleased", "Unreleased"}
    assert release in text
