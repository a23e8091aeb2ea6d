"""This run's figures behind the profile findings of ``docs/performance.md``.

The findings (what the profiles showed, and what was changed because of them) are prose in
the docs; the report re-measures the figures they rest on, one table row per finding.
"""

from __future__ import annotations

from typing import Any

from bench.tables import fmt, ok, scale_runs, span, table


def findings(sections: dict[str, Any], doc: str) -> list[str]:
    """This run's figures behind each finding; the findings themselves are in docs/performance.md."""
    rows = _poke_findings(sections.get("poke")) + _scale_findings(sections.get("scale"))
    if not rows:
        return []
    return [
        "## Profile findings: this run's figures",
        "",
        f"What each finding means and what was changed because of it: [docs/performance.md]({doc}#profile-findings).",
        "",
        *table(["finding", "this run"], rows),
        "",
    ]


def _us(value: Any) -> str:
    return f"{fmt(value, 0)} µs"


def _poke_findings(poke: Any) -> list[list[str]]:
    if not ok(poke):
        return []
    rows = []
    v = poke["timing"]["variants"]
    comps = {c["component"]: c for c in poke["profiles"].get("token/components", [])}
    if "token/raw-send" in v and "token/raw-notrust" in v:
        ours, raw = v["token/dataqc"]["median_ms"] * 1000, v["token/raw"]["median_ms"] * 1000
        notrust, lean = v["token/raw-notrust"]["median_ms"] * 1000, v["token/raw-send"]["median_ms"] * 1000
        share = comps.get("requests Session.request", {}).get("share", 0) * 100
        merges = comps.get("  of which prepare_request (setting merges)", {}).get("us_per_op")
        rows.append(
            [
                "Sensor poke: where the time goes (token, medians)",
                f"raw `session.get()` {_us(raw)}; `trust_env=False` {_us(notrust)}; leanest `requests` path "
                f"{_us(lean)}; our `poke()` {_us(ours)}. `Session.request`'s own overhead ≈ {_us(notrust - lean)}, "
                f"our code ≈ {_us(ours - notrust)}; under the profiler `Session.request` is {fmt(share, 0)} % of the "
                f"poke, `prepare_request`'s setting merges {_us(merges)}",
            ]
        )
    log = comps.get("log line (structlog)")
    if log:
        rows.append(
            [
                "Sensor poke: the INFO line per poke",
                f"≈ {_us(log['us_per_op'])} under the profiler ({fmt(log['share'] * 100, 0)} % of the poke)",
            ]
        )
    resched = {c["component"]: c for c in poke["profiles"].get("reschedule/components", [])}
    if resched:
        ratios = poke["timing"]["ratios"]

        def us(name: str) -> str:
            return _us(resched.get(name, {}).get("us_per_op"))

        rows.append(
            [
                "Reschedule-like (a new sensor per poke)",
                f"{span(ratios.get('reschedule: dataqc/raw'), 2, 'x')} raw `requests`, "
                f"{span(ratios.get('reschedule: dataqc/http'), 2, 'x')} HttpSensor; under the profiler: connection "
                f"look-up {us('connection lookup')}, `BaseOperator` construction "
                f"{us('sensor construction (BaseOperator.__init__)')}, settings validation "
                f"{us('connection settings (settings_from_connection)')}, new `requests.Session` "
                f"{us('new requests.Session')}",
            ]
        )
    return rows


def _scale_findings(scale: Any) -> list[list[str]]:
    if not isinstance(scale, list):
        return []
    rows = []
    prof = [r for r in scale if ok(r) and "profile" in r]
    if prof:
        comps = {c["component"]: c for c in prof[0].get("profile_components", [])}
        log = comps.get("log line (structlog)")
        if log:
            rows.append(
                [
                    "Trigger poll: one log line per poll",
                    f"≈ {_us(log['us_per_op'])} per poll under the profiler "
                    f"({fmt(log['share'] * 100, 0)} % of the poll)",
                ]
            )
        plan, prep = comps.get("call plan (core.calls.call)"), comps.get("prepare: URL, headers, auth (core.auth)")
        if plan and prep:
            rows.append(
                [
                    "Trigger poll: call plan and request preparation",
                    f"≈ {_us(plan['us_per_op'])} per poll, of which `prepare` ≈ {_us(prep['us_per_op'])}",
                ]
            )
    runs = scale_runs(scale)
    if runs:
        big = max(runs, key=lambda r: r["n"])
        rows.append(
            [
                "Trigger at saturation: garbage collection",
                f"N={big['n']:,} (1 s polls): GC {fmt(big['gc']['share_of_cpu'] * 100, 0)} % of the client's CPU, "
                f"{big['gc']['gen2']['collections']} full collections of up to "
                f"{fmt(big['gc']['gen2']['max_pause_ms'], 0)} ms each",
            ]
        )
    memory = [r for r in scale if ok(r) and "memory_per_wait" in r]
    if memory:
        held = {m["where"]: m["bytes_per_wait"] for m in memory[0]["memory_per_wait"]}
        record = sum(v for k, v in held.items() if "json/decoder" in k or "core/status" in k)
        rows.append(
            [
                "Trigger: memory held per wait",
                f"{fmt(held.get('total traced'), 0)} bytes traced per sleeping wait, of which {fmt(record, 0)} bytes "
                "allocated by the JSON decoder and `core/status`",
            ]
        )
    slow = scale_runs(scale, interval=10.0)
    tuned = [r for r in scale if ok(r) and r.get("what_if")]
    if slow and tuned:
        a, b = slow[0], tuned[0]
        rows.append(
            [
                f"GC what-if ({b['n']:,} waits, 10 s polls)",
                f"GC share {fmt(a['gc']['share_of_cpu'] * 100, 0)} % → {fmt(b['gc']['share_of_cpu'] * 100, 0)} %, "
                f"CPU per poll {fmt(a['cpu_ms_per_poll'], 3)} → {fmt(b['cpu_ms_per_poll'], 3)} ms, lag p99 "
                f"{fmt(a['lag_ms']['p99'], 0)} → {fmt(b['lag_ms']['p99'], 0)} ms, max {fmt(a['lag_ms']['max'], 0)} → "
                f"{fmt(b['lag_ms']['max'], 0)} ms; garbage found by the collections without tuning: "
                f"{a['gc'].get('garbage_found', '?')} objects",
            ]
        )
    return rows
