"""Waits under flow control: N deferred waits of one user against a gateway limiting calls per user.

One run = one fresh process = one N and one ``rate_limit``. An in-process ``Emulator`` enforces
the documented per-user quota (40 calls per window, 429 ``APIGW.0308`` without ``Retry-After``);
N ``DataQCResourceStatusTrigger`` run in one event loop, as a triggerer runs them, polling every
``--interval`` with the trigger's defaults (``max_consecutive_errors=3``, no deadline).

Time-based life cycles: every resource answers RUNNING until its task's end time, then SUCCESS.
The benchmark itself re-scripts each resource to SUCCESS at that time (``Emulator.script``
restarts a resource on new steps), so the end of a task is a known instant, not a poll count.
End times are spread evenly from one quota round (N / quota-rate) after the start over the
next two rounds, assigned to the waits in a shuffled (seeded) order.

Time is scaled: with ``--time-scale 10`` the gateway's window is 1 s instead of 10 s, the poll
interval 0.5 s instead of 5 s and the connection's ``rate_limit`` is 10x (calls per 10 s), so the
run is 10x shorter with the same shape; every duration in the JSON (``*_s``) is converted back
to real seconds (multiplied by the scale).

Figures:

* ``wrong_ends``: waits whose first event is not ``success`` (or that had none by the deadline).
* ``throttled_share``: 429s as a share of all requests the gateway judged (retries included).
* ``delay_s``: from a task's end to its wait's event, median and p90.
* ``ideal_s``: the best any client can do under the quota, as the target states it: N waits share
  the quota, so each is polled every ``I = max(interval, N / rate)`` seconds (``rate`` = quota per
  window / window; N / 4 s for the documented 40 per 10 s) and its delay is uniform on ``[0, I]``:
  median ``I / 2``, p90 ``0.9 I``. The targets compare with this.
* ``round_robin_s``: the best a client can do that cannot know which tasks have ended: the same
  end times, every call at the full quota, first come first served, each wait polling again
  ``interval`` after its last poll, no latency (:func:`round_robin`, computed, not run).
* ``bound_s``: a per-task reference, tighter than the ideal: when a task ends, ``m`` waits are still
  polling; were each polled every ``I = max(interval, m / rate)`` seconds, its delay would be
  uniform on ``[0, I]``; the quantiles of the mixture of those uniforms over all tasks. No client
  reaches it for sure: the poll round a task ends in began when more waits were polling.

Run: ``python -m bench.flow --n 100 --rate-limit 40 --json out.json`` (``--rate-limit 0``: limiter off).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import ensure_airflow_home, median, percentile, use_connection, write_json

QUOTA = 40  # calls per window per user, as documented for the status call
REAL_WINDOW = 10.0


def mixture_quantile(widths: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an equal mixture of uniforms on ``[0, w]`` for ``w`` in ``widths``."""
    lo, hi = 0.0, max(widths)
    for _ in range(60):
        mid = (lo + hi) / 2
        share = sum(min(mid / w, 1.0) for w in widths) / len(widths)
        lo, hi = (mid, hi) if share < q else (lo, mid)
    return (lo + hi) / 2


def spread(delays: list[float]) -> dict[str, float]:
    """The median and p90 of ``delays``, the two figures every reference is compared on."""
    return {"median": median(delays), "p90": percentile(delays, 90)}


def round_robin(ends: list[float], rate: float, interval: float) -> list[float]:
    """When each wait notices its task's end (``ends``, seconds after the start) under the best
    client that cannot know which tasks have ended: calls spaced at exactly the quota's ``rate``
    (calls per second), granted in the order they were asked for, each wait asking again
    ``interval`` after its last poll, every answer instant. All waits ask at the start."""
    spacing, next_free = 1 / rate, 0.0
    asks = [(0.0, i) for i in range(len(ends))]
    heapq.heapify(asks)
    noticed = [0.0] * len(ends)
    while asks:
        asked, i = heapq.heappop(asks)
        start = max(asked, next_free)
        next_free = start + spacing
        if start >= ends[i]:
            noticed[i] = start
        else:
            heapq.heappush(asks, (start + interval, i))
    return noticed


def end_times(n: int, rate: float, seed: int) -> list[float]:
    """Seconds after the start at which each wait's task ends: over rounds 1 to 3 of the quota."""
    round_s = n / rate
    times = [round_s + 2 * round_s * i / max(n - 1, 1) for i in range(n)]
    random.Random(seed).shuffle(times)
    return times


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_provider_dataqc.testing.emulator import FlowControl, running_emulator_async
    from airflow_provider_dataqc.triggers.dataqc import DataQCResourceStatusTrigger

    scale = args.time_scale
    window = REAL_WINDOW / scale
    rate = QUOTA / window  # calls per (scaled) second the gateway allows one user
    interval = args.interval / scale
    control = FlowControl(per_api=100_000, per_user=QUOTA, window=window, retry_after=None)
    async with running_emulator_async(flow_control=control) as emu:
        conn_id = use_connection("dataqc_flow", emu.url, "token", rate_limit=args.rate_limit * scale)
        ids = [f"flow-{args.n}-{i}" for i in range(args.n)]
        for resource_id in ids:
            emu.script(resource_id, ["RUNNING"])
        ends = end_times(args.n, rate, args.seed)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        ended_at: dict[int, float] = {}
        noticed_at: dict[int, float] = {}

        def finish(i: int) -> None:
            emu.script(ids[i], ["SUCCESS"])
            ended_at[i] = loop.time()

        for i, end in enumerate(ends):
            loop.call_at(t0 + end, finish, i)

        async def wait(i: int) -> Any:
            trigger: Any = DataQCResourceStatusTrigger(
                resource_id=ids[i], dataqc_conn_id=conn_id, poll_interval=interval
            )
            events = trigger.run()
            try:
                event = await events.__anext__()
            finally:
                await events.aclose()
            noticed_at[i] = loop.time()
            return event.payload

        cpu0, wall0 = time.process_time(), time.perf_counter()
        tasks = [asyncio.create_task(wait(i)) for i in range(args.n)]
        deadline = max(ends) + 3 * args.n / rate + 10 * interval + 5
        done, pending = await asyncio.wait(tasks, timeout=deadline)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
        stats = emu.flow_stats()
    events: Counter[str] = Counter()
    for task in done:
        if task.exception() is not None:
            events[f"exception:{type(task.exception()).__name__}"] += 1
        else:
            payload = task.result()
            events[str(payload.get("status")) if isinstance(payload, dict) else repr(payload)] += 1
    if pending:
        events["no event before the deadline"] = len(pending)
    delays, widths = [], []
    for i in noticed_at.keys() & ended_at.keys():
        delays.append((noticed_at[i] - ended_at[i]) * scale)
        still = sum(1 for j in range(args.n) if noticed_at.get(j, float("inf")) > ended_at[i])
        widths.append(max(interval, still / rate) * scale)
    delay = {**spread(delays), "max": max(delays, default=float("nan"))}
    every = max(interval, args.n / rate) * scale
    ideal = {"median": every / 2, "p90": 0.9 * every}
    robin = spread([(t - e) * scale for t, e in zip(round_robin(ends, rate, interval), ends, strict=True)])
    bound = {"median": mixture_quantile(widths, 0.5), "p90": mixture_quantile(widths, 0.9)} if widths else {}

    def over(reference: dict[str, float]) -> dict[str, float]:
        return {k: delay[k] / reference[k] for k in ("median", "p90")} if delays and reference else {}

    return {
        "label": args.label or f"N={args.n}, rate_limit {args.rate_limit:g}",
        "n": args.n,
        "rate_limit": args.rate_limit,
        "limiter": args.rate_limit > 0,
        "time_scale": scale,
        "interval_s": args.interval,
        "quota": f"{QUOTA} per {REAL_WINDOW:g} s per user, no Retry-After",
        "events": dict(events),
        "succeeded": events.get("success", 0),
        "wrong_ends": args.n - events.get("success", 0),
        "requests": stats.served + stats.throttled,
        "served": stats.served,
        "throttled": stats.throttled,
        "throttled_share": stats.throttled_share,
        "delay_s": delay,
        "ideal_s": ideal,
        "round_robin_s": robin,
        "bound_s": bound,
        "delay_over_ideal": over(ideal),
        "delay_over_round_robin": over(robin),
        "delay_over_bound": over(bound),
        "last_end_s": max(ends) * scale,
        "duration_s": wall * scale,
        "wall_s": wall,
        "cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--rate-limit", type=float, default=40, help="connection extra rate_limit (real calls/10 s)")
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval in real seconds")
    parser.add_argument("--time-scale", type=float, default=10.0, help="run this many times faster than real")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--label")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    ensure_airflow_home()
    result = asyncio.run(_run(args))
    write_json(Path(args.json), result)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
