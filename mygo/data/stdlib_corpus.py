"""Offline real text for the embedded default: the Python standard library's own documentation.

The tiny base model has to be pretrained on machines with no model or dataset hub, so its text must
already be on disk. Every Python install carries some: the pydoc topic pages and the docstrings of the
stdlib's modules, classes and functions. Docstrings are read with `ast` from the source files, never
imported, so building the corpus has no side effects and does not depend on optional C extensions.
"""

from __future__ import annotations

import ast
import inspect
import pydoc_data.topics
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Shorter docstrings are mostly one-liners ("Return self.") that teach the model little English.
MIN_CHARS = 80
# Test suites, GUI tools and installers: little prose, or prose about things the model never sees.
SKIPPED_PARTS = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "site-packages"}
)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_Documented = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Document:
    source: str  # pydoc_topic | module_doc | class_doc | function_doc
    title: str  # the topic name or the dotted name, e.g. "json.dumps"
    text: str


def _is_public_module(parts: tuple[str, ...]) -> bool:
    if parts[0] not in sys.stdlib_module_names:
        return False
    return not any(part in SKIPPED_PARTS or (part.startswith("_") and part != "__init__") for part in parts)


def _stdlib_source_files() -> list[tuple[str, Path]]:
    """(dotted module name, path) of every public pure-Python stdlib module, in sorted path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    # Walk only stdlib top-level entries: a recursive glob of the root would also crawl site-packages.
    for entry in sorted(root.iterdir()):
        if entry.suffix not in ("", ".py") or entry.stem not in sys.stdlib_module_names:
            continue
        for path in sorted(entry.rglob("*.py")) if entry.is_dir() else [entry]:
            parts = path.relative_to(root).with_suffix("").parts
            if _is_public_module(parts):
                dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                files.append((dotted, path))
    return files


def _definitions(module: str, tree: ast.Module) -> Iterator[tuple[str, str, _Documented]]:
    """(source, dotted name, node) for the module, its public functions and classes, and their methods."""
    yield "module_doc", module, tree
    for node in tree.body:
        if isinstance(node, _FUNCTIONS) and not node.name.startswith("_"):
            yield "function_doc", f"{module}.{node.name}", node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield "class_doc", f"{module}.{node.name}", node
            for method in node.body:
                if isinstance(method, _FUNCTIONS) and not method.name.startswith("_"):
                    yield "function_doc", f"{module}.{node.name}.{method.name}", method


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None  # unreadable or newer-syntax files are simply left out


def stdlib_documents() -> list[Document]:
    """pydoc topics, then module/class/function docstrings; cleaned, de-duplicated, in a fixed order."""
    raw = [Document("pydoc_topic", key, text) for key, text in sorted(pydoc_data.topics.topics.items())]
    for module, path in _stdlib_source_files():
        if (tree := _parse(path)) is None:
            continue
        for source, title, node in _definitions(module, tree):
            if doc := ast.get_docstring(node, clean=False):
                raw.append(Document(source, title, doc))

    seen: set[str] = set()
    documents = []
    for document in raw:
        # cleandoc strips the source indentation, so a docstring reads the same wherever it was defined.
        text = inspect.cleandoc(document.text).strip()
        if len(text) >= MIN_CHARS and text not in seen:
            seen.add(text)
            documents.append(Document(document.source, document.title, text))
    return documents
