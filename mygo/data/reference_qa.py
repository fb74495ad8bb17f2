"""Out-of-domain reference tasks: questions about Debian packages, man pages and Perl's diagnostics.

`stdlib_qa` asks about held-out parts of the demo pool's own domain, the Python standard library's
documentation; these three ask about text the pool never shows, to tell a model that learnt the pool's
answer styles (and English) from one that only learnt its domain. Each reads a text source of this machine,
disjoint from the pool and from the other two:

- `debian_qa`: the Debian package descriptions in `/var/lib/dpkg/status`; the question asks what a package
  is for, the answer is its long description.
- `man_qa`: the manual pages of sections 1 and 8, rendered to plain text by groff; the question asks what a
  command does, the answer is its NAME line's description and the opening of its DESCRIPTION. Pages about
  Perl (task 3's source) or Python (the pool's), or shipped by their packages (cpan, pygmentize), are left
  out, and so are gcloud's sub-command pages: 16,000 generated pages of one tool would be nearly all of it.
- `perldiag_qa`: Perl's diagnostics (`perldiag.pod`); the question asks what a message means, the answer is
  its explanation.

Answers are built as stdlib_qa's are: the opening prose paragraphs, cut to 400 characters at a sentence end
(`lead`), at least 40 long. Debian packages and man pages about Python or Perl (by name, by the package that
ships the page, or in the answer) are left out, and so is every record whose source text names numpy, pandas,
scikit-learn, scipy or matplotlib (kept for an independent check). No answer quotes a sentence
(or its first 40 characters) of the default demo pool or of another task, and a task's splits share no question
and no answer. Questions are the pool's own styles (dolly's open questions, FLAN's "Q: ... A:", oasst's chat).
Splits: `dev` (few-shot examples), `validation` and `test`. The sources are the installed packages, so a machine
with other packages builds other files. Rebuild with

    python -m mygo.data.reference_qa --output configs/eval_tasks/reference_qa
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mygo.data.demo_pool.templates import Corpus, lead
from mygo.data.stdlib_corpus import Document, stdlib_documents
from mygo.data.stdlib_mmlu import write_splits
from mygo.data.stdlib_qa import MAX_ANSWER_CHARS, QUOTE_PREFIX_CHARS, pool_text
from mygo.data.stdlib_text import SENTENCE_BREAK, collapse

DPKG_STATUS = Path("/var/lib/dpkg/status")
MAN_DIRS = (Path("/usr/share/man/man1"), Path("/usr/share/man/man8"))
PACKAGE_LISTS = Path("/var/lib/dpkg/info")  # <package>.list: the files each installed package shipped
PERLDIAG_GLOB = "/usr/share/perl/*/pod/perldiag.pod"
TASKS = ("debian_qa", "man_qa", "perldiag_qa")
SPLIT_SIZES = {"dev": 5, "validation": 200, "test": 200}
MIN_ANSWER_CHARS = 40
# Reserved for an independent check: no record may name them.
RESERVED = re.compile(r"numpy|pandas|sklearn|scikit|scipy|matplotlib", re.IGNORECASE)
# The pool's domain (Python) and perldiag_qa's (Perl): Debian and man answers about them are not out of domain.
OTHER_DOMAINS = re.compile(r"python|pydoc|\bpip\d*\b|perl", re.IGNORECASE)
# A line length no paragraph reaches, so that groff never breaks (or hyphenates) one.
GROFF = ("groff", "-k", "-t", "-T", "utf8", "-mandoc", "-rLL=4000n", "-rHY=0", "-P", "-cbou")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_LIST_LINE = re.compile(r"(?:[-*+o\u2022\u00b7]|\d+[.)])\s")
# groff's typographic quotes and URL brackets, as the plain characters the other sources write.
_TYPOGRAPHY = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u27e8": "<", "\u27e9": ">", "\u00b4": "'"}
)
BOILERPLATE_COUNT = 3


@dataclass(frozen=True)
class Item:
    source: str  # where it came from: dpkg:bash, man1:ls, perldiag:<message>
    name: str  # what the question asks about: the package, the command, the message
    detail: str  # more for the question: the package's synopsis, the kind of command, the kind of message
    answer: str


# ------------------------------------------------------------------------------------------------ answers
def whole_sentences(text: str) -> str:
    """`text` without its trailing unfinished sentence (one cut off, or one that leads into a list: "...:")."""
    text = text.strip()
    while text and not _SENTENCE_END.search(text):
        breaks = [m.start() for m in SENTENCE_BREAK.finditer(text)]
        text = text[: breaks[-1]].strip() if breaks else ""
    return text


def answer_from(name: str, paragraphs: Iterable[str]) -> str:
    """The opening prose paragraphs, as the pool's open questions answer: `lead`, then cut at a sentence end."""
    kept = [p for p in map(whole_sentences, map(collapse, paragraphs)) if p]
    docs = Corpus([Document("module_doc", name, "\n\n".join(kept))]).docs
    return whole_sentences(lead(docs[0], MAX_ANSWER_CHARS)) if docs else ""


def sentences(answer: str) -> list[str]:
    return [s for paragraph in answer.split("\n\n") for s in SENTENCE_BREAK.split(paragraph) if s]


def quotes(answer: str, text: str) -> bool:
    """Whether `text` holds any sentence of the answer, or its first 40 characters (a sentence in it implies them)."""
    return any(s[:QUOTE_PREFIX_CHARS] in text for s in sentences(answer))


def _item(
    source: str, name: str, detail: str, paragraphs: Iterable[str], text: str, *, other_domains: bool
) -> Item | None:
    """The item, or None where its answer is short or it names what it must not: the reserved libraries anywhere
    in its source `text` (the whole description, page or explanation), Python or Perl where `other_domains`."""
    answer = answer_from(name, paragraphs)
    if len(answer) < MIN_ANSWER_CHARS or RESERVED.search(" ".join([name, detail, text])):
        return None
    if other_domains and OTHER_DOMAINS.search(" ".join([name, detail, answer])):
        return None
    return Item(source, name, detail, answer)


def _leading_prose(blocks: Iterable[list[str]], is_prose: Callable[[list[str]], bool]) -> Iterator[str]:
    """The blocks up to the first that is not prose (a list, code, an option table), each as one line."""
    for block in blocks:
        if not is_prose(block):
            return
        yield " ".join(line.strip() for line in block)


# --------------------------------------------------------------------------------------------------- dpkg
def _description_paragraphs(lines: list[str]) -> list[list[str]]:
    """A Description field's continuation lines (leading space removed) split at its " ." lines."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip() == ".":
            paragraphs.append([])
        else:
            paragraphs[-1].append(line[1:])
    return [p for p in paragraphs if p]


def _dpkg_prose(block: list[str]) -> bool:
    # Lines indented further are shown verbatim (Debian policy 5.6.13); lines starting with a bullet are a list.
    return not any(line.startswith((" ", "\t")) or _LIST_LINE.match(line) for line in block)


def parse_dpkg_status(text: str) -> Iterator[Item]:
    """One item per package stanza with a long description: (package, synopsis, description)."""
    for stanza in re.split(r"\n\s*\n", text):
        package, synopsis, continuation, in_description = "", "", [], False
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")):
                if in_description:
                    continuation.append(line)
                continue
            field, _, value = line.partition(":")
            in_description = field == "Description"
            if field == "Package":
                package = value.strip()
            elif in_description:
                synopsis = value.strip()
        if package and continuation:
            prose = _leading_prose(_description_paragraphs(continuation), _dpkg_prose)
            item = _item(f"dpkg:{package}", package, synopsis, prose, "\n".join(continuation), other_domains=True)
            if item is not None:
                yield item


def debian_items(path: Path = DPKG_STATUS) -> list[Item]:
    return list(parse_dpkg_status(path.read_text(encoding="utf-8", errors="replace")))


# ---------------------------------------------------------------------------------------------------- man
def render_man(roff: bytes) -> str:
    """The page as plain text: groff with a fixed line length and environment, so every build reads the same."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    done = subprocess.run(GROFF, input=roff, capture_output=True, env=env, check=False, timeout=60)
    return done.stdout.decode("utf-8", errors="replace").translate(_TYPOGRAPHY)


def _man_sections(text: str) -> dict[str, list[str]]:
    """Rendered lines by section heading (the lines flush left); the page's header line comes before any."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(line.rstrip())
    return sections


def _man_blocks(lines: list[str]) -> Iterator[list[str]]:
    block: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []


def _name_line(lines: list[str]) -> tuple[str, str]:
    """("gzip, zcat", "compress or expand files") out of the NAME section's "gzip, zcat - compress or expand files"."""
    match = re.match(r"(.*?)\s+(?:\\?-|\u2013|\u2014)\s+(.*)", collapse(" ".join(lines)))
    return (match.group(1), match.group(2)) if match else ("", "")


def _summary(names: str, description: str) -> str:
    """The NAME line's description as a sentence, capitalised unless it starts with a name ("tc connection ...")."""
    first = description.split()[0]
    if first.islower() and first not in re.split(r"[\s,._-]+", names.lower()):
        description = description[0].upper() + description[1:]
    return f"{description.rstrip('.')}."


def _words(text: str) -> set[str]:
    return set(re.findall(r"[\w'-]+", text.lower()))


def _man_prose(base: int) -> Callable[[list[str]], bool]:
    """Whether a DESCRIPTION block is a paragraph: one line (the line is long enough) at the body's indentation,
    not an option or a list item (whose tag is padded up to its text), nor a table's row, nor a copyright notice."""

    def is_prose(block: list[str]) -> bool:
        text = block[0].lstrip()
        if len(block) > 1 or len(block[0]) - len(text) != base or re.search(r"\S {3,}\S", text):
            return False
        if "Copyright" in text:  # a version banner
            return False
        return not (text.startswith("-") or _LIST_LINE.match(text))

    return is_prose


def parse_man_page(name: str, section: str, roff: bytes) -> Item | None:
    """(command, kind of command, NAME description plus DESCRIPTION's opening paragraphs) of one page.

    The NAME description is left out where DESCRIPTION's first sentence says it again (has all its words)."""
    page = render_man(roff)
    sections = _man_sections(page)
    names, description = _name_line(sections.get("NAME", []))
    if not description:
        return None
    body = sections.get("DESCRIPTION", [])
    base = min((len(line) - len(line.lstrip()) for line in body if line.strip()), default=0)
    paragraphs = list(_leading_prose(_man_blocks(body), _man_prose(base)))
    summary = _summary(names, description)
    if not paragraphs or not _words(summary) <= _words(SENTENCE_BREAK.split(paragraphs[0])[0]):
        paragraphs.insert(0, summary)
    what = "system administration command" if section.startswith("8") else "command"
    return _item(f"man{section[:1]}:{name}", name, what, paragraphs, page, other_domains=True)


def _man_page_name(path: Path) -> tuple[str, str]:
    """("ls", "1") for ls.1.gz, ("ca", "1ssl") for ca.1ssl.gz."""
    name, _, section = path.name.removesuffix(".gz").rpartition(".")
    return name, section


def _man_page_owners(lists: Path = PACKAGE_LISTS) -> dict[str, str]:
    """{path of a man page: the package that shipped it}, from dpkg's file lists."""
    owners = {}
    for path in sorted(lists.glob("*.list")):
        package = path.stem.partition(":")[0]
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("/usr/share/man/man"):
                owners[line] = package
    return owners


def _wanted_page(path: Path, owner: str) -> bool:
    """A page of its own (not a link or a `.so` alias), not a gcloud sub-command, not about Perl or Python:
    by its name, or by the package that shipped it (perl's cpan, python3-pygments' pygmentize)."""
    name, _ = _man_page_name(path)
    if path.is_symlink() or not path.name.endswith(".gz") or name.startswith("gcloud_"):
        return False
    return not (OTHER_DOMAINS.search(f"{name} {owner}") or name.endswith(".pl") or RESERVED.search(f"{name} {owner}"))


def _read_page(path: Path) -> Item | None:
    roff = gzip.decompress(path.read_bytes())
    if roff.lstrip().startswith(b".so "):
        return None
    name, section = _man_page_name(path)
    return parse_man_page(name, section, roff)


def man_items(directories: Sequence[Path] = MAN_DIRS, workers: int = 2) -> list[Item]:
    owners = _man_page_owners()
    paths = sorted(
        p for directory in directories for p in directory.iterdir() if _wanted_page(p, owners.get(str(p), ""))
    )
    with ThreadPoolExecutor(workers) as pool:  # groff runs in its own process: threads are enough
        return [item for item in pool.map(_read_page, paths) if item is not None]


# ----------------------------------------------------------------------------------------------- perldiag
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}
# Stand-ins for angle brackets that are text, not formatting codes, while the codes are taken out.
_LT, _GT = "\ue000", "\ue001"
_NOT_PROSE = "=over"
_CLASS = re.compile(r"^(?:\(([WDSFPXA])\b[^)]*\)\s*)+")
# "(F) (only under use re 'strict' or within (?[...]))": when the message is given, not what it means.
_ONLY_UNDER = re.compile(r"^\(only under [^()]*(?:\([^()]*\)[^()]*)*\)\s*")
_CLASS_NAMES = {
    "W": "warning",
    "D": "deprecation",
    "S": "severe warning",
    "F": "fatal error",
    "P": "internal error",
    "X": "fatal error",
    "A": "error",
}


def _escape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.lower().startswith("0x"):
        character = chr(int(code, 16))
    else:
        character = chr(int(code)) if code.isdigit() else _POD_ESCAPES.get(code, "")
    return {"<": _LT, ">": _GT}.get(character, character)


def _link(text: str) -> str:
    """L<...> as pod2text writes it: the text of `text|target`, `"section" in page`, or the page."""
    if "|" in text:
        return text.partition("|")[0]
    if "://" in text:
        return text
    page, _, section = text.partition("/")
    section = section.strip('"')
    if not section:
        return page
    return f'"{section}" in {page}' if page else f'"{section}"'


def pod_text(text: str) -> str:
    """POD's formatting codes taken out (C<...>, B<< ... >>, L<...>, E<gt>, X<...>): the plain text they mark."""
    text = re.sub(r"E<([^<>]+)>", _escape, text)
    for angles in (4, 3, 2):  # C<< a <=> b >>: the brackets inside are text
        pattern = rf"([A-Z])<{{{angles}}}\s+(.*?)\s+>{{{angles}}}"
        text = re.sub(pattern, lambda m: f"{m.group(1)}<{m.group(2).replace('<', _LT).replace('>', _GT)}>", text)
    text = re.sub(r"(?<![A-Z])<", _LT, text)  # S<<-- HERE>: a bracket that opens no code is text
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"([A-Z])<([^<>]*)>", lambda m: _code(m.group(1), m.group(2)), text)
    return text.replace(_LT, "<").replace(_GT, ">")


def _code(code: str, content: str) -> str:
    if code in "XZ":
        return ""
    return _link(content) if code == "L" else content


def _pod_paragraphs(pod: str) -> Iterator[str]:
    yield from (p for p in re.split(r"\n[ \t]*\n", pod) if p.strip())


def _diagnostics(pod: str) -> Iterator[tuple[list[str], list[str]]]:
    """(messages, paragraphs) of the top-level list: consecutive =items share the explanation that follows.

    A list inside an explanation (its =over, =items and paragraphs) stands as one `_NOT_PROSE` paragraph."""
    depth, messages, body = 0, [], []
    for paragraph in _pod_paragraphs(pod):
        command = paragraph.split(None, 1)[0] if paragraph.startswith("=") else ""
        if command == "=item" and depth == 1:
            if body:
                yield messages, body
                messages, body = [], []
            messages.append(collapse(paragraph[len("=item") :]))
        elif command in ("=over", "=back"):
            depth += 1 if command == "=over" else -1
            if messages and depth > 1:
                body.append(_NOT_PROSE)
        elif messages and depth >= 1 and not command:
            body.append(paragraph if depth == 1 else _NOT_PROSE)
    if messages and body:
        yield messages, body


def _pod_prose(block: list[str]) -> bool:
    return block[0] != _NOT_PROSE and not block[0][:1].isspace()  # verbatim paragraphs (code) are indented


def parse_perldiag(pod: str) -> Iterator[Item]:
    """One item per message: (message, kind of message, explanation without its classification code)."""
    for messages, body in _diagnostics(pod):
        message = pod_text(messages[0])
        first = pod_text(body[0])
        found = _CLASS.match(first.lstrip())
        kind = _CLASS_NAMES[found.group(1)] if found else "message"
        paragraphs = [_ONLY_UNDER.sub("", _CLASS.sub("", first.lstrip())), *map(pod_text, body[1:])]
        prose = _leading_prose(([p] for p in paragraphs), _pod_prose)
        item = _item(f"perldiag:{message}", message, kind, prose, "\n\n".join(body), other_domains=False)
        if item is not None:
            yield item


def perldiag_path() -> Path:
    found = sorted(Path("/").glob(PERLDIAG_GLOB.lstrip("/")))
    if not found:
        raise FileNotFoundError(f"no {PERLDIAG_GLOB}: install perl-doc or perl's modules")
    return found[-1]


def perldiag_items(path: Path | None = None) -> list[Item]:
    return list(parse_perldiag((path or perldiag_path()).read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------------- splits
# (style, template): the demo pool's ways of asking (`mygo.data.demo_pool.templates`): dolly's open questions,
# FLAN's "Q: ... A:", oasst's chat. {name} is the item's name, {detail} its detail.
QUESTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "debian_qa": (
        ("dolly", "What is the Debian package `{name}` for?"),
        ("dolly", "What can I do with the `{name}` package in Debian?"),
        ("dolly", 'Tell me about the Debian package `{name}` ("{detail}").'),
        ("flan_v2", "Q: What does the Debian package `{name}` provide?\nA:"),
        ("oasst1", "I found `{name}` in my list of installed Debian packages. What is it for?"),
    ),
    "man_qa": (
        ("dolly", "What does the {detail} `{name}` do?"),
        ("dolly", "What is `{name}` used for on Linux?"),
        ("dolly", "Explain what the {detail} `{name}` does."),
        ("flan_v2", "Q: What is the purpose of the {detail} `{name}`?\nA:"),
        ("oasst1", "Can you explain what `{name}` does when I run it?"),
    ),
    "perldiag_qa": (
        ("dolly", 'What does the Perl {detail} "{name}" mean?'),
        ("dolly", 'Explain this Perl diagnostic: "{name}"'),
        ("dolly", 'Perl printed "{name}". What does it mean?'),
        ("flan_v2", 'Q: What does Perl mean by the {detail} "{name}"?\nA:'),
        ("oasst1", 'My Perl program says "{name}". Can you explain why?'),
    ),
}


def drop_boilerplate(items: Sequence[Item], count: int = BOILERPLATE_COUNT) -> list[Item]:
    """The items without the sentences that `count` or more answers share ("Mandatory arguments to long options
    are mandatory for short options too."): they say nothing about the package, command or message.

    An answer that opens with such a sentence ("GnuPG is GNU's tool for secure communication and data storage.")
    is one of a family of near-copies, and the rest would start mid-thought ("It can be used to ..."): only the
    first item of each family is kept, its opening with it."""
    seen = Counter(s for answer in {item.answer for item in items} for s in set(sentences(answer)))
    kept, openings = [], set()
    for item in items:
        paragraphs = [SENTENCE_BREAK.split(p) for p in item.answer.split("\n\n")]
        opening = paragraphs[0][0]
        if seen[opening] >= count:
            if opening in openings:
                continue
            openings.add(opening)
        texts = (" ".join(s for s in p if s is opening or seen[s] < count) for p in paragraphs)
        answer = "\n\n".join(text for text in texts if text)
        if len(answer) >= MIN_ANSWER_CHARS:
            kept.append(Item(item.source, item.name, item.detail, answer))
    return kept


def disjoint(tasks: dict[str, list[Item]], pool: str) -> dict[str, list[Item]]:
    """Each task's items without those whose answer quotes the pool's text or another task's answers."""
    answers = {task: "\n".join(item.answer for item in items) for task, items in tasks.items()}
    kept = {}
    for task, items in tasks.items():
        others = "\n".join([pool, *(text for other, text in answers.items() if other != task)])
        kept[task] = [item for item in items if not quotes(item.answer, others)]
    return kept


def build_splits(
    task: str, items: Sequence[Item], sizes: dict[str, int] = SPLIT_SIZES, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """{"dev", "validation", "test"}: shuffled records, one question in a seeded pool style per item.

    An item whose question or answer an earlier record already has is skipped, so no split shares either."""
    rng = random.Random(seed)
    shuffled = sorted(items, key=lambda item: item.source)
    rng.shuffle(shuffled)
    records, questions, answers = [], set(), set()
    for item in shuffled:
        kind, template = rng.choice(QUESTIONS[task])
        question = template.format(name=item.name, detail=item.detail)
        if question in questions or item.answer in answers:
            continue
        questions.add(question)
        answers.add(item.answer)
        record = {"id": f"{task}/{len(records)}", "kind": kind, "source": item.source, "question": question}
        records.append({**record, "answer": item.answer})
    if len(records) < sum(sizes.values()):
        raise ValueError(f"{task}: {len(records)} distinct records, {sum(sizes.values())} wanted")
    splits, start = {}, 0
    for split, size in sizes.items():
        splits[split] = records[start : start + size]
        start += size
    return splits


def source_items() -> dict[str, list[Item]]:
    return {"debian_qa": debian_items(), "man_qa": man_items(), "perldiag_qa": perldiag_items()}


def build_tasks(seed: int = 0) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every task's splits, from this machine's sources, kept apart from each other and the default pool."""
    cleaned = {task: drop_boilerplate(items) for task, items in source_items().items()}
    items = disjoint(cleaned, pool_text(stdlib_documents()))
    return {task: build_splits(task, items[task], seed=seed) for task in TASKS}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="directory for <task>/<split>.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tasks = build_tasks(args.seed)
    for task, splits in tasks.items():
        for split, path in write_splits(splits, args.output / task).items():
            print(f"{path}: {len(splits[split])} records {dict(Counter(r['kind'] for r in splits[split]))}")
    print(f"built in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
