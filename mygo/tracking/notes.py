"""A run's description on its MLflow page (`mlflow.note.content`, rendered as Markdown by `mlflow ui`).

The pipeline and sweep runs carry the summary their entry points print, so the run page reads as a report.
"""

from __future__ import annotations

import mlflow

NOTE_TAG = "mlflow.note.content"  # what the run page shows as its description
MAX_NOTE_CHARS = 7500  # MLflow's tag values hold 8000 characters (SQL stores)


def code_block(text: str) -> str:
    """Fixed-width tables as printed: Markdown would reflow them otherwise."""
    return f"```text\n{text.strip(chr(10))}\n```"


def report(title: str, sections: list[tuple[str, str]], footer: str = "") -> str:
    """A Markdown note: a title, then (heading, fixed-width text) sections, then a free line."""
    parts = [f"### {title}"]
    for heading, text in sections:
        if text:
            parts += [f"**{heading}**" if heading else "", code_block(text)]
    if footer:
        parts.append(footer)
    note = "\n\n".join(part for part in parts if part)
    if len(note) > MAX_NOTE_CHARS:
        note = note[: MAX_NOTE_CHARS - 20].rsplit("\n", 1)[0]
        if note.count("```") % 2:  # cut inside a code block: close it
            note += "\n```"
        note += "\n\n(cut short)"
    return note


def set_note(note: str, run_id: str | None = None) -> None:
    """Set the description of the run (the active one when `run_id` is None)."""
    if run_id is None:
        mlflow.set_tag(NOTE_TAG, note)
    else:
        mlflow.MlflowClient().set_tag(run_id, NOTE_TAG, note)
