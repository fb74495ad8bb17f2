"""Instruction-data formats as published, told apart by their fields and converted to mygo's conversation form.

The internal form is a list of `{"role": system | user | assistant | tool, "content": str}` turns. The
formats (`dataset.format`), with the fields that tell them apart:

- `messages`: LESS/Tulu, `messages: [{role: system|user|assistant, content: str}]`.
- `openai`: OpenAI chat, `messages` with `tool` (and legacy `function`) turns, `developer` as system,
  `content` a string, null or a list of `{type: text, text}` parts, and assistant `tool_calls`
  (`[{type: function, function: {name, arguments}}]`, or the legacy `function_call`). A tool call is
  written into its assistant turn as one JSON line `{"name": ..., "arguments": ...}` per call (after any
  text), so an assistant turn that only calls a tool is a turn that teaches the call, not an empty one.
- `sharegpt`: `conversations: [{from, value}]` with an optional top-level `system`; `from` is
  human/user, gpt/assistant/chatgpt/bing/bard, system, function_call (the assistant calling a tool,
  as LLaMA-Factory writes it) or tool/function/observation (a tool's result).
- `alpaca`: `instruction`, optional `input` (joined to the instruction by a blank line), `output`,
  optional `system`.
- `prompt_response`: `prompt`, `response`, optional `system`. Not `question`/`answer`: datasets with
  those names are mostly extractive QA (an answer list, a separate context) rather than instructions.

`auto` tells a record's format by the first of: `messages` (`messages` when every turn fits it, else
`openai`), `conversations`, `instruction` + `output`, `prompt` + `response`.
"""

from __future__ import annotations

import contextlib
import json

FORMATS = ("messages", "alpaca", "sharegpt", "openai", "prompt_response")
FORMAT_CHOICES = ("auto", *FORMATS)
ROLES = ("system", "user", "assistant", "tool")  # the internal form's roles
MESSAGES_ROLES = ("system", "user", "assistant")  # the LESS/Tulu `messages` format's
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
OPENAI_ROLES |= {"tool": "tool", "function": "tool"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "system": "system"}
SHAREGPT_ROLES |= dict.fromkeys(("gpt", "assistant", "chatgpt", "bing", "bard", "function_call"), "assistant")
SHAREGPT_ROLES |= dict.fromkeys(("tool", "function", "observation"), "tool")
# What `auto` looks for, in order, and what an error says each format needs.
SIGNATURES = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_response": ("prompt", "response"),
}


class FormatError(ValueError):
    """A record does not fit a format; the message names the field. The pool adds the file and line."""


def detect_format(record: dict) -> str | None:
    """The format a record's fields say it is in, or None when they fit none."""
    for name, fields in SIGNATURES.items():
        if all(record.get(key) is not None for key in fields):
            if name == "messages":
                return "messages" if _fits_messages(record["messages"]) else "openai"
            return name
    return None


def expected_fields() -> str:
    """What each format needs, for the error that a record fits none."""
    return "; ".join(f"{name}: {' + '.join(fields)}" for name, fields in SIGNATURES.items()) + " (openai: messages)"


def to_messages(record: dict, data_format: str) -> list[dict]:
    """The record's conversation in the internal form; FormatError when it does not fit `data_format`."""
    convert = CONVERTERS.get(data_format)
    if convert is None:
        raise ValueError(f"dataset.format: unknown format {data_format!r}; one of {list(FORMAT_CHOICES)}")
    return convert(record)


def conversation(record: dict) -> list[dict]:
    """A record as written (`mygo.data.pool.records_at`) in the internal form, its format told by its own fields."""
    data_format = detect_format(record)
    if data_format is None:
        raise FormatError(f"the record fits no format (fields: {sorted(record)}); the formats need {expected_fields()}")
    return to_messages(record, data_format)


def _fits_messages(messages: object) -> bool:
    return isinstance(messages, list) and all(
        isinstance(m, dict) and m.get("role") in MESSAGES_ROLES and isinstance(m.get("content"), str) for m in messages
    )


def _turns(record: dict, key: str) -> list:
    turns = record.get(key)
    if not isinstance(turns, list) or not turns:
        raise FormatError(f"field {key!r} must be a non-empty list")
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise FormatError(f"{key}[{number}] must be an object, got {type(turn).__name__}")
    return turns


def _string(record: dict, key: str, where: str | None = None, required: bool = True) -> str:
    """A string field; an absent optional one (or null, as Parquet writes absent values) is ''."""
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise FormatError(f"{where or 'field ' + repr(key)} must be a string, got {value!r:.60}")
    return value


def _from_messages(record: dict) -> list[dict]:
    turns = []
    for number, message in enumerate(_turns(record, "messages")):
        if message.get("role") not in MESSAGES_ROLES:
            raise FormatError(
                f"messages[{number}].role is {message.get('role')!r}; roles are {list(MESSAGES_ROLES)} "
                "(tool turns, content parts and tool calls: dataset.format=openai, which auto picks for them)"
            )
        turns.append({"role": message["role"], "content": _string(message, "content", f"messages[{number}].content")})
    return turns


def _openai_content(content: object, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise FormatError(f"{where} must be a string or a list of text parts, got {content!r:.60}")
    texts = []
    for number, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            seen = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise FormatError(f"{where}[{number}] is not a text part ({seen!r}): only text is read")
        texts.append(part["text"])
    return "".join(texts)


def _tool_call_text(call: object, where: str) -> str:
    """One call as a JSON line; the arguments (a JSON string in OpenAI's format) parsed where they parse."""
    function = call.get("function", call) if isinstance(call, dict) else None  # legacy function_call: no wrapper
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise FormatError(f"{where} must have a function name, got {call!r:.80}")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):  # else kept as the string the record has
            arguments = json.loads(arguments)
    return json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False)


def _from_openai(record: dict) -> list[dict]:
    turns = []
    for number, message in enumerate(_turns(record, "messages")):
        where = f"messages[{number}]"
        role = OPENAI_ROLES.get(message.get("role"))
        if role is None:
            raise FormatError(f"{where}.role is {message.get('role')!r}; roles are {list(OPENAI_ROLES)}")
        content = _openai_content(message.get("content"), f"{where}.content")
        calls = message.get("tool_calls") or []  # null where Parquet unified the turns' fields
        if not isinstance(calls, list):
            raise FormatError(f"{where}.tool_calls must be a list, got {calls!r:.60}")
        if message.get("function_call"):
            calls = [*calls, message["function_call"]]
        if calls and role != "assistant":
            raise FormatError(f"{where} is a {message['role']!r} turn with tool calls; only assistant turns call tools")
        if calls:
            lines = [_tool_call_text(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(calls)]
            content = "\n".join([content, *lines] if content else lines)
        turns.append({"role": role, "content": content})
    return turns


def _from_sharegpt(record: dict) -> list[dict]:
    system = _string(record, "system", required=False)
    turns = [{"role": "system", "content": system}] if system else []
    for number, turn in enumerate(_turns(record, "conversations")):
        speaker = turn.get("from")
        role = SHAREGPT_ROLES.get(speaker.lower() if isinstance(speaker, str) else speaker)
        if role is None:
            raise FormatError(f"conversations[{number}].from is {speaker!r}; known: {sorted(SHAREGPT_ROLES)}")
        turns.append({"role": role, "content": _string(turn, "value", f"conversations[{number}].value")})
    return turns


def _single_turn(record: dict, prompt: str, answer: str) -> list[dict]:
    system = _string(record, "system", required=False)
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _from_alpaca(record: dict) -> list[dict]:
    instruction, extra = _string(record, "instruction"), _string(record, "input", required=False)
    prompt = "\n\n".join(part for part in (instruction, extra) if part.strip())
    return _single_turn(record, prompt, _string(record, "output"))


def _from_prompt_response(record: dict) -> list[dict]:
    return _single_turn(record, _string(record, "prompt"), _string(record, "response"))


CONVERTERS = {
    "messages": _from_messages,
    "openai": _from_openai,
    "sharegpt": _from_sharegpt,
    "alpaca": _from_alpaca,
    "prompt_response": _from_prompt_response,
}
