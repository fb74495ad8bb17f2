"""Prose out of the standard library's documentation text: paragraphs, sentences, topic headings.

Shared by the demo pool's templates and the stdlib_mmlu questions, which read the same documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mygo.data.stdlib_corpus import Document

UNDERLINE = re.compile(r"([-=*~^#+])\1{2,}")
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'`(*])")


def collapse(text: str) -> str:
    return " ".join(text.split())


def blocks(text: str) -> Iterator[list[str]]:
    """Blank-line separated blocks, without reST/pydoc headings (a line over an underline) and rules."""
    lines = text.splitlines()
    block: list[str] = []
    for i, line in enumerate(lines):
        is_heading = i + 1 < len(lines) and UNDERLINE.fullmatch(lines[i + 1].strip()) is not None
        if not line.strip() or is_heading or UNDERLINE.fullmatch(line.strip()):
            if block:
                yield block
            block = []
        else:
            block.append(line)
    if block:
        yield block


def prose(block: list[str], first: bool) -> str | None:
    """The block as one line of prose, or None for code, grammar, nested lists and fragments."""
    text = collapse(" ".join(block))
    if len({len(line) - len(line.lstrip()) for line in block}) > 1 or ">>>" in text or "::=" in text:
        return None
    if len(text.split()) < 4:
        return None
    # A docstring's summary line often has no full stop; anywhere else that marks a signature or a label.
    return text if first or text.endswith((".", "!", "?", ":")) else None


def prose_paragraphs(text: str) -> tuple[str, ...]:
    found = []
    for index, block in enumerate(blocks(text)):
        if (paragraph := prose(block, first=index == 0)) is not None:
            found.append(paragraph)
    return tuple(found)


def topic_heading(document: Document) -> str:
    lines = document.text.splitlines()
    if len(lines) > 1 and UNDERLINE.fullmatch(lines[1].strip()):
        return lines[0].strip()
    return document.title
