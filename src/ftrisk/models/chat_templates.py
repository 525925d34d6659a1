"""Chat templates ftrisk ships, for models that have none (Llama-2 in Meta's original format)
or for the exact prompt format a paper used."""

from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).parent / "templates"


def template_names() -> list[str]:
    """Names of the shipped templates (``llama-2``, ``llama-2-lermen``)."""
    return sorted(p.stem for p in _DIR.glob("*.jinja"))


def resolve_chat_template(value: str) -> str:
    """The Jinja text of shipped template ``value``, or ``value`` itself (a Jinja string)."""
    path = _DIR / f"{value}.jinja"
    if value in template_names():
        return path.read_text()
    return value
