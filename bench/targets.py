"""The benchmark targets, declared once as data.

Each :class:`Target` says what is measured, where its figures come from in the raw results
(a source in :data:`SOURCES` and a dotted path inside each item it selects), the target and how
the figure is compared with it. The report's target table (label, target, measured figure,
verdict) and the plot's target lines are derived from :data:`TARGETS`; why each target is what
it is, is written in ``docs/performance.md``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.tables import fmt, met, ok, scale_runs, span, table

Item = dict[str, Any]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "is": lambda value, limit: bool(value) is limit,
}
_SIGN = {"<=": "≤ ", "<": "< ", "==": "", "is": ""}


@dataclass(frozen=True)
class Check:
    """One comparison of the figure at ``figure`` (a dotted path inside one item) with ``limit``.

    A figure that is a ``{median, min, max}`` summary is compared by its median and shown as
    ``median (min-max)``. ``target`` is the target as written when it is not ``op limit unit``
    (``""`` leaves it out of the row); ``shown`` is the measured text for one item, from the
    item's fields, ``{fig}`` (the figure with its unit) and ``{num}`` (without); ``""`` hides it.
    """

    figure: str
    op: str
    limit: float | bool
    unit: str = ""
    digits: int | None = 2  # None: shown as it came (counts)
    target: str | None = None
    shown: str = "{fig}"

    @property
    def text(self) -> str:
        return self.target if self.target is not None else f"{_SIGN[self.op]}{self.limit}{self.unit}"

    def value(self, item: Item) -> Any:
        value: Any = item
        for key in self.figure.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def passes(self, item: Item) -> bool | None:
        value = self.value(item)
        if isinstance(value, dict):
            value = value.get("median")
        return None if value is None else _COMPARE[self.op](value, self.limit)

    def measured(self, item: Item) -> str:
        value = self.value(item)
        if isinstance(value, dict):
            num = fig = span(value, self.digits or 0, self.unit)
        else:
            num = str(value) if self.digits is None else fmt(value, self.digits)
            fig = num + self.unit
        return self.shown.format_map({**item, "fig": fig, "num": num})


@dataclass(frozen=True)
class Target:
    """A row of the target table (one per item with ``per_item``, else one for all the items)."""

    what: str  # the label: fields of the (first) item, and {each}: the items' ``each`` labels joined
    source: str  # a key of SOURCES
    checks: tuple[Check, ...]
    per_item: bool = False
    join: str = " / "  # between the items' figures (and ``each`` labels) in one row
    each: str = ""

    def rows(self, sections: dict[str, Any]) -> list[list[str]]:
        items = SOURCES[self.source](sections)
        if not items:
            return []
        groups = [[item] for item in items] if self.per_item else [items]
        return [self._row(group) for group in groups]

    def _row(self, items: list[Item]) -> list[str]:
        labels = self.join.join(self.each.format_map(item) for item in items)
        verdicts = [check.passes(item) for item in items for check in self.checks]
        verdict = False if False in verdicts else None if None in verdicts else True
        return [
            self.what.format_map({**items[0], "each": labels}),
            " / ".join(check.text for check in self.checks if check.text),
            self.join.join(" / ".join(c.measured(item) for c in self.checks if c.shown) for item in items),
            met(verdict),
        ]


# --------------------------------------------------------------------------- where figures come from
def _poke(sections: dict[str, Any]) -> list[Item]:
    poke = sections.get("poke")
    return [poke] if poke is not None and ok(poke) else []


def _poke_counts(sections: dict[str, Any]) -> list[Item]:
    return [poke["counts"][f"poke/{auth}"] for poke in _poke(sections) for auth in ("token", "aksk", "password")]


def _password_pokes(sections: dict[str, Any]) -> list[Item]:
    return [{**poke["counts"]["poke/password"], "pokes": poke["counts"]["pokes"]} for poke in _poke(sections)]


def _parsing(sections: dict[str, Any]) -> list[Item]:
    parsing = sections.get("parsing")
    return [parsing] if parsing is not None and ok(parsing) else []


def _parse_proof(sections: dict[str, Any]) -> list[Item]:
    """Network calls and connection look-ups counted while a real DagBag parsed the DAG file."""
    out = []
    for parsing in _parsing(sections):
        proof, calls = parsing["parse_proof"], parsing["parse_proof"]["calls"]
        network = sum(v for k, v in calls.items() if k.startswith("socket"))
        lookups = calls.get("BaseHook.get_connection", 0) + calls.get("Connection.get", 0)
        parsed = proof["tasks"] == proof["dag_tasks_written"]
        out.append({"tasks": proof["tasks"], "network": network, "lookups": lookups, "all_tasks_parsed": parsed})
    return out


def _scale(sections: dict[str, Any], interval: float) -> list[Item]:
    runs = scale_runs(sections.get("scale"), interval=interval)
    return [{"stagger_s": 0, **r, "succeeded": r["events"].get("success", 0)} for r in runs]


def _largest(items: list[Item]) -> list[Item]:
    return [max(items, key=lambda r: r["n"])] if items else []


def _downloads(sections: dict[str, Any]) -> list[Item]:
    download = sections.get("download")
    return [d for d in download if ok(d) and d.get("variant") == "dataqc"] if isinstance(download, list) else []


def _flow(sections: dict[str, Any]) -> list[Item]:
    flow = sections.get("flow")
    return [r for r in flow if ok(r) and r.get("limiter")] if isinstance(flow, list) else []


SOURCES: dict[str, Callable[[dict[str, Any]], list[Item]]] = {
    "poke": _poke,  # bench/poke.py: timing ratios within each round
    "poke counts per auth": _poke_counts,  # requests counted by an in-process emulator (token, AK/SK, password)
    "password pokes": _password_pokes,
    "parsing": _parsing,  # bench/parsing.py: fresh interpreters, sensor construction
    "parse proof": _parse_proof,
    "1 s scale runs": lambda s: _scale(s, 1.0),  # bench/scale.py, plain trigger runs
    "largest 1 s scale run": lambda s: _largest(_scale(s, 1.0)),
    "10 s scale runs": lambda s: _scale(s, 10.0),
    "our downloads": _downloads,  # bench/download.py, DataQCHook.download_resource_file
    "flow runs with the limiter": _flow,  # bench/flow.py, rate_limit 40 against a 40 / 10 s quota
}

# --------------------------------------------------------------------------- the targets
_LAG_P99 = Check("lag_ms.p99", "<", 50, " ms", 1)
_LAG_MAX = Check("lag_ms.max", "<", 250, " ms", 1)
_RSS_PER_WAIT = Check("rss_per_wait_kb", "<", 10, " KB", 1)
_ALL_EVENTS = Check("all_reached_event", "is", True, target="all", shown="{succeeded:,} of {n:,}")

TARGETS: tuple[Target, ...] = (
    Target(
        "poke() vs raw `requests` GET (token)", "poke", (Check("timing.ratios.token: dataqc/raw", "<=", 1.15, "x", 3),)
    ),
    Target(
        "poke() vs raw `requests` GET (aksk)", "poke", (Check("timing.ratios.aksk: dataqc/raw", "<=", 1.15, "x", 3),)
    ),
    Target(
        "poke() vs `HttpSensor.poke()` (token)", "poke", (Check("timing.ratios.token: dataqc/http", "<=", 1.0, "x", 3),)
    ),
    Target(
        "poke() vs `HttpSensor.poke()` (aksk)", "poke", (Check("timing.ratios.aksk: dataqc/http", "<=", 1.0, "x", 3),)
    ),
    Target(
        "HTTP requests to DataArts per poke (token, AK/SK, password)",
        "poke counts per auth",
        (Check("status_requests_per_poke", "==", 1.0, target="exactly 1"),),
    ),
    Target(
        "IAM token requests per {pokes} pokes (password auth)",
        "password pokes",
        (Check("iam_calls", "==", 1, digits=None),),
    ),
    Target(
        "import added on top of `import airflow.sdk`",
        "parsing",
        (Check("imports.added_ms.dataqc", "<=", 20, " ms", 1),),
    ),
    Target(
        "construct {construction[tasks]:,} sensors vs plain BaseSensorOperator subclasses",
        "parsing",
        (Check("construction.ratio_dataqc_over_plain", "<=", 1.2, "x", 3),),
    ),
    Target(
        "parsing a DAG of {tasks:,} sensors: network calls / connection look-ups",
        "parse proof",
        (
            Check("network", "==", 0, digits=None),
            Check("lookups", "==", 0, digits=None),
            Check("all_tasks_parsed", "is", True, target="", shown=""),
        ),
    ),
    Target(
        "trigger CPU per poll (every N, 1 s polls)",
        "1 s scale runs",
        (Check("cpu_ms_per_poll", "<=", 0.5, " ms", 3, shown="N={n:,}: {num}"),),
        join=", ",
    ),
    Target("{n:,} waits (1 s polls) all reach their event", "largest 1 s scale run", (_ALL_EVENTS,)),
    Target("{n:,} waits (1 s polls): loop lag p99", "largest 1 s scale run", (_LAG_P99,)),
    Target("{n:,} waits (1 s polls): loop lag max", "largest 1 s scale run", (_LAG_MAX,)),
    Target("{n:,} waits (1 s polls): RSS per wait", "largest 1 s scale run", (_RSS_PER_WAIT,)),
    Target(
        "{n:,} waits, {interval_s:g} s polls, starts spread over {stagger_s:g} s (CPU not saturated): "
        "events / lag p99 / max / RSS per wait",
        "10 s scale runs",
        (
            Check("all_reached_event", "is", True, target="all", shown="{succeeded:,}"),
            _LAG_P99,
            _LAG_MAX,
            _RSS_PER_WAIT,
        ),
        per_item=True,
    ),
    Target(
        "download: peak RSS above baseline, {each}",
        "our downloads",
        (
            Check("peak_above_base_mb", "<", 50, " MB", 1, target="flat, < 50 MB"),
            Check("complete", "is", True, target="", shown=""),
        ),
        each="{size_mb} MB",
    ),
    Target(
        "under flow control, {n:,} waits: wrong ends / 429 share / delay median and p90 over the ideal",
        "flow runs with the limiter",
        (
            Check("wrong_ends", "==", 0, digits=None),
            Check("throttled_share", "<", 0.01, digits=4),
            Check("delay_over_ideal.median", "<=", 1.25, "x"),
            Check("delay_over_ideal.p90", "<=", 1.25, "x"),
        ),
        per_item=True,
    ),
)


def limit(figure: str) -> float:
    """The limit of the first target on ``figure`` (the plot draws it as a line)."""
    return next(float(c.limit) for t in TARGETS for c in t.checks if c.figure == figure)


def target_table(sections: dict[str, Any]) -> list[str]:
    rows = [row for target in TARGETS for row in target.rows(sections)]
    if not rows:
        return []
    return ["## Targets", "", *table(["what", "target", "measured: median (min-max)", "verdict"], rows), ""]
