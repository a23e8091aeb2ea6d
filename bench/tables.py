"""How the report shows figures: numbers, median (min-max) summaries, verdicts, Markdown tables."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    """A figure as shown: thousands separated, ``—`` when missing, ``yes``/``no`` for booleans."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if value != value:  # NaN
            return "—"
        return f"{value:,.{digits}f}"
    return str(value)


def span(summary: dict[str, Any] | None, digits: int = 2, unit: str = "") -> str:
    """A repeated measurement as ``median (min-max)``."""
    if not summary:
        return "—"
    return f"{fmt(summary['median'], digits)}{unit} ({fmt(summary['min'], digits)}-{fmt(summary['max'], digits)})"


def met(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def ok(section: Any) -> bool:
    """A section (or one run of it) that produced figures rather than an error."""
    return isinstance(section, dict) and "error" not in section


def scale_runs(scale: Any, kind: str = "dataqc", interval: float = 1.0) -> list[dict[str, Any]]:
    """The plain scale runs of one kind and poll interval: no profile, no tracemalloc, no what-if."""
    if not isinstance(scale, list):
        return []
    return [
        r
        for r in scale
        if ok(r)
        and r.get("kind") == kind
        and abs(r.get("interval_s", 0) - interval) < 1e-9
        and "profile" not in r
        and not r.get("label", "").startswith("profile")
        and not r.get("what_if")
    ]
