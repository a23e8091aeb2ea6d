"""What the DataArts Quality job calls answer: runs (instances), jobs and their sub-rules, rule results.

Pure: no Airflow import, no I/O (the requests are built by :mod:`.jobs_api`). Every reader is
tolerant — the service has been seen by nobody for some of these calls: it accepts each
plausible form (an object under ``data``, IDs as numbers or strings, times as numbers or
digit strings) and skips what it cannot use instead of crashing. IDs are 64-bit: JSON
decoding in Python keeps integers exact, and they are compared as decimal strings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from airflow_provider_dataqc.core.errors import printable

#: Run statuses that end a run.
TERMINAL_STATUSES = frozenset({"SUCCESS", "ALARMING", "FAILED"})
#: Every run status the documentation lists.
KNOWN_STATUSES = TERMINAL_STATUSES | {"RUNNING", "SUSPENDING", "UNKNOWN"}
#: Epoch milliseconds later than this (year 9999) are no time.
_MAX_MS = 253402300799999


class JobAnswerError(ValueError):
    """An answer that does not carry what the call must give (the new run's ID, a job)."""


def id_text(value: Any) -> str | None:
    """An ID as a decimal string: ints kept exact, strings stripped; a float (already rounded
    by whoever wrote it) as its integral value; anything else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        return text if text.isdigit() and text.isascii() else None  # IDs are 64-bit numbers
    return None


def time_of(value: Any) -> datetime | None:
    """An aware UTC datetime from epoch milliseconds (a number or a digit string), else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= _MAX_MS:
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _unwrap(payload: Any) -> Any:
    """The object an answer carries, also when it comes wrapped in ``data``/``result``."""
    for _ in range(2):
        if isinstance(payload, Mapping):
            inner = payload.get("data")
            if isinstance(inner, Mapping) and not ({"resources", "instance_id", "id"} & payload.keys()):
                payload = inner
    return payload


@dataclass(frozen=True)
class JobInstance:
    """One run of a quality or comparison job, as the instance list gives it.

    ``run_status`` is upper-cased and kept whatever it says (``None`` when missing);
    ``start_time``/``end_time`` are aware UTC datetimes (``None`` when missing or
    unreadable), ``start_time_raw``/``end_time_raw`` what the service sent.
    """

    id: str
    name: str | None = None
    task_id: str | None = None
    task_type: str | None = None
    run_status: str | None = None
    notify_status: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    start_time_raw: Any = None
    end_time_raw: Any = None
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @classmethod
    def from_api(cls, item: Any) -> JobInstance:
        """Read one entry of the instance list.

        :raises JobAnswerError: the entry is not an object with an ``id``.
        """
        if not isinstance(item, Mapping):
            raise JobAnswerError(f"an instance entry is a {type(item).__name__}, not an object")
        ident = id_text(item.get("id", item.get("instance_id")))
        if ident is None:
            raise JobAnswerError("an instance entry has no id")
        status = _text(item.get("run_status", item.get("status")))
        return cls(
            id=ident,
            name=_text(item.get("name")),
            task_id=id_text(item.get("task_id")),
            task_type=_text(item.get("task_type")),
            run_status=status.strip().upper() if status else None,
            notify_status=_text(item.get("notify_status")),
            start_time=time_of(item.get("start_time")),
            end_time=time_of(item.get("end_time")),
            start_time_raw=item.get("start_time"),
            end_time_raw=item.get("end_time"),
            raw=MappingProxyType(dict(item)),
        )

    @classmethod
    def from_record(cls, record: Any) -> JobInstance:
        """The instance a :meth:`to_dict` record stands for (an event or XCom read back).

        :raises JobAnswerError: the record has no ``instance_id``.
        """
        if not isinstance(record, Mapping):
            raise JobAnswerError("a run record must be an object")
        api_form = {
            "id": record.get("instance_id"),
            "name": record.get("name"),
            "task_id": record.get("job_id"),
            "task_type": record.get("task_type"),
            "run_status": record.get("run_status"),
            "notify_status": record.get("notify_status"),
            "start_time": record.get("start_time_ms"),
            "end_time": record.get("end_time_ms"),
        }
        return cls.from_api(api_form)

    @property
    def is_terminal(self) -> bool:
        return self.run_status in TERMINAL_STATUSES

    @property
    def is_success(self) -> bool:
        """All rules passed."""
        return self.run_status == "SUCCESS"

    @property
    def is_alarm(self) -> bool:
        """The run finished and alarm conditions fired: data quality failed."""
        return self.run_status == "ALARMING"

    @property
    def is_failure(self) -> bool:
        """The run itself failed."""
        return self.run_status == "FAILED"

    @property
    def is_known_status(self) -> bool:
        return self.run_status in KNOWN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: IDs as strings, times in ISO-8601 and as the epoch ms the service sent."""
        return {
            "instance_id": self.id,
            "job_id": self.task_id,
            "name": self.name,
            "task_type": self.task_type,
            "run_status": self.run_status,
            "notify_status": self.notify_status,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "start_time_ms": self.start_time_raw if _jsonable(self.start_time_raw) else None,
            "end_time_ms": self.end_time_raw if _jsonable(self.end_time_raw) else None,
        }


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int)) or (isinstance(value, float) and math.isfinite(value))


@dataclass(frozen=True)
class Page:
    """One page of a list: the entries it could read, ``count`` (the total the service
    announced, ``None`` when it did not say) and how many entries it had to skip."""

    count: int | None
    items: tuple[Any, ...]
    skipped: int = 0
    #: How many entries the page had, read or not (paging moves on by this).
    size: int = 0


def _entries(payload: Any, *names: str) -> tuple[int | None, list[Any]]:
    payload = _unwrap(payload)
    if isinstance(payload, list):
        return None, payload
    if not isinstance(payload, Mapping):
        return None, []
    entries: Any = []
    for name in names:
        if isinstance(payload.get(name), list):
            entries = payload[name]
            break
    count = payload.get("count", payload.get("total"))
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    return (count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None), entries


def read_instance_page(payload: Any) -> Page:
    """A page of the instance list (``{"count", "resources": [...]}``); entries without an ``id`` are skipped."""
    count, entries = _entries(payload, "resources", "instances", "records", "data")
    found: list[JobInstance] = []
    for entry in entries:
        try:
            found.append(JobInstance.from_api(entry))
        except JobAnswerError:
            continue
    return Page(count, tuple(found), len(entries) - len(found), len(entries))


def read_result_page(payload: Any) -> Page:
    """A page of a run's rule results (``{"count", "resources": [{"sub_rule_id", "results", ...}]}``),
    each entry a plain dict as the service gave it; entries that are not objects are skipped."""
    count, entries = _entries(payload, "resources", "results", "records", "data")
    found = tuple(dict(entry) for entry in entries if isinstance(entry, Mapping))
    return Page(count, found, len(entries) - len(found), len(entries))


def read_instance_id(payload: Any) -> str:
    """The new run's ``instance_id`` from the run call's answer.

    :raises JobAnswerError: the answer names no run.
    """
    inner = _unwrap(payload)
    for candidate in (payload, inner):
        if isinstance(candidate, Mapping):
            for key in ("instance_id", "instanceId", "id"):
                ident = id_text(candidate.get(key))
                if ident:
                    return ident
    raise JobAnswerError("the run call's answer names no instance_id")


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        return tuple(str(part).strip() for part in value if part is not None and str(part).strip())
    return ()


@dataclass(frozen=True)
class SubRule:
    """One check of a job: what it looks at (comma-separated lists read as tuples)."""

    id: str | None
    name: str | None
    type: str | None = None
    connection: str | None = None
    connection_type: str | None = None
    databases: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> SubRule:
        return cls(
            id=id_text(item.get("id", item.get("sub_rule_id"))),
            name=_text(item.get("sub_rule_name", item.get("name"))),
            type=_text(item.get("type")),
            connection=_text(item.get("connection")),
            connection_type=_text(item.get("connection_type")),
            databases=_names(item.get("databases")),
            tables=_names(item.get("tables")),
            columns=_names(item.get("columns")),
        )

    @property
    def target(self) -> str:
        """``database.table.column`` (as far as the rule names them), for the rule table."""
        table = ",".join(self.tables)
        if self.databases and table and "." not in table:
            table = f"{','.join(self.databases)}.{table}"
        where = table or ",".join(self.databases)
        if self.columns:
            where = f"{where}.{','.join(self.columns)}" if where else ",".join(self.columns)
        return where


@dataclass(frozen=True)
class JobDetail:
    """A job as its detail call gives it: ``sub_rules`` flattened (comparison jobs nest them)."""

    id: str | None
    name: str | None
    sub_rules: tuple[SubRule, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @classmethod
    def from_api(cls, payload: Any) -> JobDetail:
        """:raises JobAnswerError: the answer is not a job object."""
        payload = _unwrap(payload)
        if not isinstance(payload, Mapping):
            raise JobAnswerError(f"the job detail is a {type(payload).__name__}, not an object")
        rules: list[SubRule] = []
        pending = list(payload.get("sub_rules") or []) if isinstance(payload.get("sub_rules"), list) else []
        while pending:
            item = pending.pop(0)
            if isinstance(item, list):
                pending[:0] = item
            elif isinstance(item, Mapping):
                rules.append(SubRule.from_api(item))
        return cls(
            id_text(payload.get("id")), _text(payload.get("name")), tuple(rules), MappingProxyType(dict(payload))
        )

    def rule(self, sub_rule_id: Any) -> SubRule | None:
        wanted = id_text(sub_rule_id)
        return next((rule for rule in self.sub_rules if wanted is not None and rule.id == wanted), None)


_ALARM_KEYS = ("alarm", "is_alarm", "alarming", "alarm_status", "alarmed")
_PASS_KEYS = ("status", "result", "pass", "passed", "success", "check_result")
_FALSE_WORDS = frozenset({"false", "0", "failed", "fail", "alarm", "alarming", "abnormal", "no", "error"})
_TRUE_WORDS = frozenset({"true", "1", "success", "succeeded", "pass", "passed", "normal", "yes", "ok"})


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in _TRUE_WORDS else False if word in _FALSE_WORDS else None


def result_alarmed(values: Iterable[Any]) -> bool | None:
    """Whether one rule's result objects say it alarmed: an ``alarm``-like key that is true,
    or a ``Status``-like key that is false/failed; ``None`` when they do not say (the keys
    may be localised)."""
    verdict: bool | None = None
    for value in values:
        if not isinstance(value, Mapping):
            continue
        lowered = {str(key).strip().lower(): item for key, item in value.items()}
        for key in _ALARM_KEYS:
            if key in lowered and _truth(lowered[key]) is not None:
                verdict = bool(verdict) or bool(_truth(lowered[key]))
        for key in _PASS_KEYS:
            if key in lowered and _truth(lowered[key]) is not None:
                verdict = bool(verdict) or not _truth(lowered[key])
    return verdict


@dataclass(frozen=True)
class RuleRow:
    """One rule's line in the rule table."""

    rule: str
    target: str
    values: str
    alarmed: bool | None
    sub_rule_id: str | None = None
    column: str | None = None


def _values(results: Any) -> str:
    parts: list[str] = []
    for value in results if isinstance(results, list) else [results] if results is not None else []:
        if isinstance(value, Mapping):
            parts.append(", ".join(f"{key}={item}" for key, item in value.items()))
        else:
            parts.append(str(value))
    return "; ".join(parts)


def rule_rows(results: Iterable[Any], detail: JobDetail | None = None) -> list[RuleRow]:
    """One row per rule result, named from the job's sub-rules when they are known."""
    rows: list[RuleRow] = []
    for entry in results:
        if not isinstance(entry, Mapping):
            continue
        sub_rule_id = id_text(entry.get("sub_rule_id"))
        rule = detail.rule(sub_rule_id) if detail else None
        values = entry.get("results")
        rows.append(
            RuleRow(
                rule=(rule.name if rule and rule.name else None) or f"sub-rule {sub_rule_id or '?'}",
                target=rule.target if rule else "",
                values=_values(values),
                alarmed=result_alarmed(values if isinstance(values, list) else [values]),
                sub_rule_id=sub_rule_id,
                column=",".join(rule.columns) if rule and rule.columns else None,
            )
        )
    return rows


def alarmed_rows(rows: list[RuleRow]) -> list[RuleRow]:
    """The rows that say they alarmed; every row when none says either way (better all than none)."""
    said = [row for row in rows if row.alarmed]
    return said or ([row for row in rows if row.alarmed is None] if not any(r.alarmed is False for r in rows) else [])


def _cell(text: str, width: int) -> str:
    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def rule_table(rows: list[RuleRow], *, max_rows: int = 50) -> str:
    """A plain-text table for logs: rule, table/column, result values. Service text is escaped
    (:func:`~airflow_provider_dataqc.core.errors.printable`), so a cell can never start a log line."""
    header = ("rule", "table/column", "result")
    body = [(_cell(r.rule, 40), _cell(r.target or "-", 50), _cell(r.values or "-", 120)) for r in rows[:max_rows]]
    widths = [max([len(header[i])] + [len(line[i]) for line in body]) for i in range(2)]
    lines = [f"{header[0]:<{widths[0]}} | {header[1]:<{widths[1]}} | {header[2]}"]
    lines.append(f"{'-' * widths[0]}-+-{'-' * widths[1]}-+-{'-' * 6}")
    lines += [f"{a:<{widths[0]}} | {b:<{widths[1]}} | {c}" for a, b, c in body]
    if len(rows) > max_rows:
        lines.append(f"… and {len(rows) - max_rows} more rules")
    return "\n".join(lines)
