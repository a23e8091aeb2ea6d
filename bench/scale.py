"""Deferrable scale: N concurrent status triggers in one event loop, as a triggerer runs them.

One run = one fresh process (clean RSS) = one N. The triggers are created together, each
``trigger.run()`` runs as a task and its first event is consumed (then the generator is closed,
as the triggerer does). Each trigger waits for ``success-K-<run>-<i>``: the emulator (separate
process) answers RUNNING K times, then SUCCESS, so every trigger polls exactly K+1 times and then
must yield a ``success`` event; nothing is cancelled, so "every trigger reached its event" is
checked, not assumed. A heartbeat task sleeping 10 ms records the event-loop lag; psutil samples
RSS every 100 ms. Run: ``python -m bench.scale --n 1000 --json out.json``.

``--stagger S`` spreads the starts evenly over S seconds, as waits deferred one after another
arrive on a running triggerer (by default all start at once, as after a triggerer restart).

``--kind threads`` runs the comparison trigger instead: the sync ``DataQCHook`` called in the
loop's default thread pool (``run_in_executor``), see :mod:`bench.alternatives`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import resource
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import EmulatorProcess, ensure_airflow_home, percentile, use_connection, write_json


class _Counters:
    """HTTP requests sent by the client, by operation (``status`` requests are the polls)."""

    by_operation: Counter[str] = Counter()

    @classmethod
    def read(cls) -> tuple[int, int]:
        return cls.by_operation["status"], sum(cls.by_operation.values())


def _instrument(kind: str) -> None:
    """Count requests where they leave the transport: one counter increment each."""
    counts = _Counters.by_operation
    if kind == "dataqc":
        from airflow_provider_dataqc.triggers.dataqc import AsyncDataQCClient

        send = AsyncDataQCClient._send

        async def counted_send(self: Any, prepared: Any, *args: Any, **kwargs: Any) -> Any:
            counts[prepared.operation] += 1
            return await send(self, prepared, *args, **kwargs)

        AsyncDataQCClient._send = counted_send  # type: ignore[method-assign]
    else:
        from airflow_provider_dataqc.hooks.transport import RequestsTransport

        sync_send = RequestsTransport.send

        def counted_sync_send(self: Any, prepared: Any, *args: Any, **kwargs: Any) -> Any:
            counts[prepared.operation] += 1  # Counter += is not atomic across threads: close enough
            return sync_send(self, prepared, *args, **kwargs)

        RequestsTransport.send = counted_sync_send  # type: ignore[method-assign]


def _make_trigger(kind: str, resource_id: str, conn_id: str, interval: float) -> Any:
    if kind == "dataqc":
        from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

        return DataQCResourceStatusTrigger(resource_id=resource_id, dataqc_conn_id=conn_id, poll_interval=interval)
    from bench.alternatives import SyncHookInThreadTrigger

    return SyncHookInThreadTrigger(resource_id=resource_id, dataqc_conn_id=conn_id, poll_interval=interval)


def _memory_attribution(before: Any, after: Any, waits: int, top: int = 14) -> list[dict[str, Any]]:
    """Bytes per wait still allocated at steady state, by the source line that allocated them."""
    rows: list[dict[str, Any]] = []
    by_line = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in by_line)
    rows.append({"where": "total traced", "bytes_per_wait": total / waits})
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        where = frame.filename
        for marker in ("site-packages/", "airflow_provider_dataqc/", "lib/python3.11/"):
            if marker in where:
                where = (
                    where.split(marker, 1)[1]
                    if marker != "airflow_provider_dataqc/"
                    else "dataqc/" + where.split(marker, 1)[1]
                )
                break
        rows.append({"where": f"{where}:{frame.lineno}", "bytes_per_wait": stat.size_diff / waits})
    return rows


async def _first_event(trigger: Any) -> Any:
    events = trigger.run()
    try:
        event = await events.__anext__()
        return event.payload
    finally:
        await events.aclose()


async def _run(args: argparse.Namespace, conn_ids: list[str], emulator_pids: list[int]) -> dict[str, Any]:
    import psutil

    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else ""
    loop = asyncio.get_running_loop()
    me = psutil.Process()
    servers = [psutil.Process(pid) for pid in emulator_pids]
    tag = f"{os.getpid()}"
    # Warm up: one wait per connection to its end (imports, code paths, connection parsing).
    for i, conn_id in enumerate(conn_ids):
        await _first_event(_make_trigger(args.kind, f"success-1-warm-{tag}-{i}", conn_id, 0.01))
    gc.collect()
    if args.gc_freeze:
        gc.freeze()  # what-if: everything alive after start-up moved out of the collector's sight
    if args.gc_threshold0:
        gc.set_threshold(args.gc_threshold0, *gc.get_threshold()[1:])  # what-if: fewer young collections
    objects_base = len(gc.get_objects())
    if args.tracemalloc:
        tracemalloc.start(4)
        traced_base = tracemalloc.take_snapshot()
    rss_base = me.memory_info().rss
    lags: list[float] = []
    rss_samples: list[int] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        tick, count = 0.01, 0
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(tick)
            lags.append(loop.time() - before - tick)
            count += 1
            if count % 10 == 0:
                rss_samples.append(me.memory_info().rss)

    gc_pauses: list[tuple[int, float, float]] = []  # generation, wall s, CPU s
    gc_started = [0.0, 0.0]
    gc_found: list[int] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0], gc_started[1] = time.perf_counter(), time.process_time()
        else:
            gc_pauses.append(
                (
                    int(info.get("generation", 0)),
                    time.perf_counter() - gc_started[0],
                    time.process_time() - gc_started[1],
                )
            )
            gc_found.append(int(info.get("collected", 0)))

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.2)  # the heartbeat's idle lag is not part of the run
    idle_lags = len(lags)
    server_cpu0 = [sum(s.cpu_times()[:2]) for s in servers]
    polls0, sends0 = _Counters.read()
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    gc.callbacks.append(on_gc)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    triggers = [
        _make_trigger(args.kind, f"success-{args.polls}-{tag}-{i}", conn_ids[i % len(conn_ids)], args.interval)
        for i in range(args.n)
    ]

    async def start(delay: float, trigger: Any) -> Any:
        if delay:
            await asyncio.sleep(delay)
        return await _first_event(trigger)

    spread = args.stagger / args.n
    tasks = [asyncio.create_task(start(i * spread, trigger)) for i, trigger in enumerate(triggers)]
    created = time.perf_counter() - wall0
    memory: list[dict[str, Any]] = []
    if args.tracemalloc:
        # Every wait has started and polled at least once and is asleep between polls: a steady state.
        await asyncio.sleep(args.stagger + args.interval * 1.5)
        gc.collect()
        memory = _memory_attribution(traced_base, tracemalloc.take_snapshot(), args.n)
        tracemalloc.stop()
    done, pending = await asyncio.wait(tasks, timeout=args.deadline)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    gc.callbacks.remove(on_gc)
    if profiler is not None:
        profiler.disable()
    polls1, sends1 = _Counters.read()
    server_cpu1 = [sum(s.cpu_times()[:2]) for s in servers]
    peak_rss = max([*rss_samples, me.memory_info().rss])
    stop.set()
    await beat
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=10)
    statuses: Counter[str] = Counter()
    for task in done:
        if task.exception() is not None:
            statuses[f"exception:{type(task.exception()).__name__}"] += 1
        else:
            payload = task.result()
            statuses[str(payload.get("status")) if isinstance(payload, dict) else repr(payload)] += 1
    if pending:
        statuses["no event before the deadline"] = len(pending)
    run_lags = lags[idle_lags:]
    polls, sends = polls1 - polls0, sends1 - sends0
    duration = wall1 - wall0
    result = {
        "kind": args.kind,
        "label": args.label or f"{args.kind} N={args.n}",
        "loadavg_at_start": loadavg,
        "what_if": bool(args.gc_freeze or args.gc_threshold0),
        "gc_freeze": args.gc_freeze,
        "gc_threshold": list(gc.get_threshold()),
        "n": args.n,
        "polls_per_wait": args.polls + 1,
        "interval_s": args.interval,
        "emulators": len(conn_ids),
        "duration_s": duration,
        "ideal_duration_s": args.polls * args.interval + args.stagger,
        "stagger_s": args.stagger,
        "create_s": created,
        "polls": polls,
        "http_requests": sends,
        "expected_polls": args.n * (args.polls + 1),
        "polls_per_s": polls / duration if duration else 0.0,
        "demanded_polls_per_s": args.n / args.interval,
        "cpu_s": cpu1 - cpu0,
        "cpu_ms_per_poll": (cpu1 - cpu0) / polls * 1e3 if polls else float("nan"),
        "client_cpu_utilisation": (cpu1 - cpu0) / duration if duration else 0.0,
        "emulator_cpu_utilisation": [(b - a) / duration for a, b in zip(server_cpu0, server_cpu1, strict=True)],
        "lag_ms": {
            "p50": percentile(run_lags, 50) * 1e3,
            "p99": percentile(run_lags, 99) * 1e3,
            "max": max(run_lags) * 1e3 if run_lags else float("nan"),
            "samples": len(run_lags),
        },
        "idle_lag_ms_max": max(lags[:idle_lags]) * 1e3 if idle_lags else float("nan"),
        "gc": {
            **{
                f"gen{g}": {
                    "collections": sum(1 for gen, _, _ in gc_pauses if gen == g),
                    "cpu_ms": sum(c for gen, _, c in gc_pauses if gen == g) * 1e3,
                    "max_pause_ms": max((w for gen, w, _ in gc_pauses if gen == g), default=0.0) * 1e3,
                }
                for g in (0, 1, 2)
            },
            "cpu_ms": sum(c for _, _, c in gc_pauses) * 1e3,
            "share_of_cpu": sum(c for _, _, c in gc_pauses) / (cpu1 - cpu0) if cpu1 > cpu0 else 0.0,
            "objects_tracked_at_start": objects_base,
            "garbage_found": sum(found for found in gc_found),
            "frozen": gc.get_freeze_count(),
        },
        "rss_base_mb": rss_base / 2**20,
        "rss_peak_mb": peak_rss / 2**20,
        "rss_per_wait_kb": (peak_rss - rss_base) / args.n / 1024,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "events": dict(statuses),
        "all_reached_event": statuses.get("success", 0) == args.n,
    }
    if memory:
        result["memory_per_wait"] = memory
    if profiler is not None:
        from bench.poke import components, render_profile

        profiler.dump_stats(args.profile)
        result["profile"] = render_profile(profiler, max(polls, 1), top=22)
        result["profile_components"] = components(profiler, max(polls, 1))
        Path(args.profile).with_suffix(".txt").write_text(result["profile"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--polls", type=int, default=30, help="RUNNING answers before SUCCESS (K)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--kind", choices=("dataqc", "threads"), default="dataqc")
    parser.add_argument(
        "--stagger", type=float, default=0.0, help="spread the starts evenly over this many seconds (0: all at once)"
    )
    parser.add_argument("--emulators", type=int, default=1, help="emulator processes to spread the waits over")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds before unfinished waits count as missed")
    parser.add_argument("--profile", help="write a cProfile of the run here")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="attribute the memory held per wait at steady state (slows the run)"
    )
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after start-up (what-if)")
    parser.add_argument("--gc-threshold0", type=int, default=0, help="gc.set_threshold(N, ...) (what-if)")
    parser.add_argument("--label", help="name of the run in the report")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    ensure_airflow_home()
    emus = [EmulatorProcess().start() for _ in range(args.emulators)]
    try:
        conn_ids = [use_connection(f"dataqc_scale_{i}", emu.url, "token") for i, emu in enumerate(emus)]
        _instrument(args.kind)
        result = asyncio.run(_run(args, conn_ids, [emu.pid for emu in emus]))
    finally:
        for emu in emus:
            emu.stop()
    write_json(Path(args.json), result)
    shown = {k: v for k, v in result.items() if k != "profile"}
    print(shown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
