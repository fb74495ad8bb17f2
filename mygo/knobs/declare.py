"""How a knob is declared: its default, type, range and help in one place, and what derives from that.

A config (`Declared`) is a tree of `Block`s whose leaves are knobs (`Float(0.05, "of the pool", gt=0, le=1)`).
From it come:
- the YAML Hydra composes (`render`: configs/<name>.yaml, written by scripts/write_configs.py and checked equal to
  it by the tests), with each knob's help as its comment;
- the check of a composed config (`check`): a bad value fails with one line naming the key, what was expected and
  what was given;
- the type of a command-line option and of an MLproject parameter (`type_of`).

Keys a preset brings (configs/model/, target/, dataset/) are declared with `PRESET` as their default: checked, not
written, since each preset has its own value.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any as AnyType

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

PRESET = object()  # the default of a key that a config group's preset provides
_MISSING = object()
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
WIDTH = 120  # the rendered YAML's line length


@dataclass(frozen=True)
class Knob:
    default: AnyType
    help: str = ""
    type: str = "any"  # int | float | bool | str | list | mapping | any
    null: bool = False
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    item: str | None = None  # a list's items' type

    @property
    def expected(self) -> str:
        """What a value must be, as an error says it: `float in (0, 1]`, `int >= 1 or null`, `one of a, b`."""
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.type == "list":
            text = f"list of {self.item}"
        elif self.type in ("int", "float") and self.low > -math.inf and self.high < math.inf:
            text = (
                f"{self.type} in {'(' if self.low_open else '['}{_number(self.low)}, "
                f"{_number(self.high)}{')' if self.high_open else ']'}"
            )
        elif self.type in ("int", "float") and self.low > -math.inf:
            text = f"{self.type} {'>' if self.low_open else '>='} {_number(self.low)}"
        elif self.type in ("int", "float") and self.high < math.inf:
            text = f"{self.type} {'<' if self.high_open else '<='} {_number(self.high)}"
        else:
            text = self.type
        return f"{text} or null" if self.null else text

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.null
        if self.type == "any":
            return True
        if self.type == "mapping":
            return isinstance(value, dict)
        if self.type == "list":
            return isinstance(value, list | tuple) and all(_is_type(item, self.item) for item in value)
        if not _is_type(value, self.type):
            return False
        if self.choices:
            return value in self.choices
        if self.type in ("int", "float"):
            above = value > self.low if self.low_open else value >= self.low
            below = value < self.high if self.high_open else value <= self.high
            return above and below
        return True


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_type(value: object, kind: str | None) -> bool:
    if kind is None:
        return True
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "float":
        return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))
    return isinstance(value, _TYPES[kind])


def _bounds(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> dict:
    bounds = {}
    if gt is not None or ge is not None:
        bounds |= {"low": gt if gt is not None else ge, "low_open": gt is not None}
    if lt is not None or le is not None:
        bounds |= {"high": lt if lt is not None else le, "high_open": lt is not None}
    return bounds


# ------------------------------------------------------------------------------------------ the declarations
def Float(default, help="", *, gt=None, ge=None, lt=None, le=None, null=False) -> Knob:  # noqa: N802, A002
    return Knob(default, help, "float", null, **_bounds(gt, ge, lt, le))


def Int(default, help="", *, gt=None, ge=None, lt=None, le=None, null=False) -> Knob:  # noqa: N802, A002
    return Knob(default, help, "int", null, **_bounds(gt, ge, lt, le))


def Bool(default, help="") -> Knob:  # noqa: N802, A002
    return Knob(default, help, "bool")


def Str(default, help="", *, null=False) -> Knob:  # noqa: N802, A002
    return Knob(default, help, "str", null)


def Choice(default, choices, help="", *, null=False) -> Knob:  # noqa: N802, A002
    return Knob(default, help, "str", null, choices=tuple(choices))


def List(item: type, default, help="", *, null=False) -> Knob:  # noqa: N802, A002
    return Knob(default, help, "list", null, item=item.__name__)


def Mapping(default, help="") -> Knob:  # noqa: N802, A002
    """A mapping (or null) whose keys and values the stage checks (source caps, tolerances by dtype)."""
    return Knob(default, help, "mapping", True)


def Any(default, help="") -> Knob:  # noqa: N802, A002
    """A value of more than one type (`auto` or a number), checked where it is used."""
    return Knob(default, help, "any", True)


@dataclass(frozen=True)
class Block:
    doc: str
    knobs: dict[str, Knob | Block]


@dataclass(frozen=True)
class Declared:
    """One config: `configs/<name>.yaml`'s header comment, its Hydra defaults list (its lines as written: entries and
    comments) and its knobs; `groups` are the blocks its defaults list brings (their keys checked under their name:
    `tracking.uri`)."""

    name: str
    header: str
    defaults: tuple[str, ...]
    body: dict[str, Knob | Block]
    groups: dict[str, Block] = field(default_factory=dict)

    def knobs(self) -> dict[str, Knob]:
        """Every knob by its dotted key, the groups' included."""
        found = {}
        for name, block in self.groups.items():
            found |= _flatten(block.knobs, f"{name}.")
        return found | _flatten(self.body, "")


def _flatten(knobs: dict[str, Knob | Block], prefix: str) -> dict[str, Knob]:
    found = {}
    for name, entry in knobs.items():
        if isinstance(entry, Block):
            found |= _flatten(entry.knobs, f"{prefix}{name}.")
        else:
            found[f"{prefix}{name}"] = entry
    return found


# ------------------------------------------------------------------------------------------------ checking
def check(declared: Declared, cfg: DictConfig) -> None:
    """Every declared knob the composed config has, against its declaration (a key a config lacks is not checked:
    a run's logged config from before the key existed still composes)."""
    for key, knob in declared.knobs().items():
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING:
            continue
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if not knob.accepts(value):
            shown = "null" if value is None else repr(value)
            raise ValueError(f"{key}: expected {knob.expected}, got {shown}")


# ----------------------------------------------------------------------------------------------- rendering
def render(declared: Declared) -> str:
    """configs/<name>.yaml: the header, the defaults list, then each block (its doc as a comment above it) with each
    knob's default and its help as a comment, aligned within the block and wrapped at WIDTH."""
    lines = [
        *_written_from(declared.name),
        *_comment(declared.header, ""),
        *(["defaults:", *(f"  {line}" for line in declared.defaults)] if declared.defaults else []),
    ]
    lines += _render_entries(declared.body, 0, top=True)
    return "\n".join(lines).strip("\n") + "\n"


def render_group(block: Block) -> str:
    """A group's file (configs/tracking/default.yaml), declared in mygo/knobs/groups.py: its doc, then its knobs at
    the top level."""
    lines = [*_written_from("groups"), *_comment(block.doc, ""), *_render_entries(block.knobs, 0)]
    return "\n".join(lines).strip("\n") + "\n"


def _written_from(module: str) -> list[str]:
    return _comment(f"Written by scripts/write_configs.py from mygo/knobs/{module}.py: change a knob there.", "")


def _render_entries(entries: dict[str, Knob | Block], depth: int, top: bool = False) -> list[str]:
    indent = "  " * depth
    knobs = {name: knob for name, knob in entries.items() if isinstance(knob, Knob) and knob.default is not PRESET}
    column = max((len(f"{indent}{name}: {_value(knob.default)}") for name, knob in knobs.items()), default=0) + 2
    column = min(max(column, 26), 30)  # longer lines take their comment two spaces after them
    lines: list[str] = []
    after_block = True
    for name, entry in entries.items():
        if isinstance(entry, Block) and not _written(entry):
            continue
        if isinstance(entry, Block):
            if top:
                lines.append("")
            lines += _comment(entry.doc, indent)
            lines.append(f"{indent}{name}:")
            lines += _render_entries(entry.knobs, depth + 1)
            after_block = True
        elif entry.default is not PRESET:
            if top and after_block:
                lines.append("")
            lines += _with_help(f"{indent}{name}: {_value(entry.default)}", entry.help, column)
            after_block = False
    return lines


def _written(block: Block) -> bool:
    """Whether a block has a knob with a default of its own (a block of preset keys alone is not written)."""
    return any(
        _written(entry) if isinstance(entry, Block) else entry.default is not PRESET for entry in block.knobs.values()
    )


def _value(value: object) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip()


def _comment(text: str, indent: str) -> list[str]:
    if not text:
        return []
    lines = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, WIDTH - len(indent) - 2) or [""]
    return [f"{indent}# {line}".rstrip() for line in lines]


def _with_help(line: str, help_: str, column: int) -> list[str]:
    if not help_:
        return [line]
    start = max(column, len(line) + 2)
    wrapped = textwrap.wrap(help_, max(WIDTH - start - 2, 30))
    first = f"{line.ljust(start)}# {wrapped[0]}"
    return [first, *(f"{' ' * start}# {rest}" for rest in wrapped[1:])]
