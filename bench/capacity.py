"""How many status requests per second one emulator process serves (keep-alive, token auth).

A plain aiohttp load generator (no provider code) keeps ``concurrency`` requests in flight over
kept-alive connections for ``seconds``; the emulator's own CPU time (psutil) gives its cost per
request, hence what one core of it can serve. Run: ``python -m bench.capacity --json out.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench._common import EmulatorProcess, emulator_defaults, write_json


async def _load(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    import aiohttp

    d = emulator_defaults()
    headers = {"X-Auth-Token": d["token"], "X-Project-Id": d["project_id"], "workspace": d["workspace"]}
    base = f"{url}/v2/{d['project_id']}/quality/resource/status/"
    done = 0
    errors = 0
    stop_at = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal done, errors
        target = f"{base}success-100000-capacity-{index}"
        while time.monotonic() < stop_at:
            async with session.get(target, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    done += 1
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session, i) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    return {"requests": done, "errors": errors, "seconds": elapsed}


def measure(seconds: float, concurrency: int) -> dict[str, Any]:
    import psutil

    me = psutil.Process()
    with EmulatorProcess() as emu:
        server = psutil.Process(emu.pid)
        asyncio.run(_load(emu.url, min(1.0, seconds), concurrency))  # warm up
        cpu0, own0 = server.cpu_times(), me.cpu_times()
        result = asyncio.run(_load(emu.url, seconds, concurrency))
        cpu1, own1 = server.cpu_times(), me.cpu_times()
    server_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    client_cpu = (own1.user - own0.user) + (own1.system - own0.system)
    rate = result["requests"] / result["seconds"]
    return {
        **result,
        "concurrency": concurrency,
        "requests_per_second": rate,
        "emulator_cpu_seconds": server_cpu,
        "emulator_cpu_utilisation": server_cpu / result["seconds"],
        "emulator_us_per_request": server_cpu / max(result["requests"], 1) * 1e6,
        "emulator_requests_per_cpu_second": result["requests"] / server_cpu if server_cpu else float("nan"),
        "generator_cpu_utilisation": client_cpu / result["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64])
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    runs = [measure(args.seconds, c) for c in args.concurrency]
    write_json(Path(args.json), {"runs": runs})
    for run in runs:
        print(
            f"concurrency {run['concurrency']}: {run['requests_per_second']:.0f} req/s, "
            f"emulator CPU {run['emulator_cpu_utilisation'] * 100:.0f}% "
            f"({run['emulator_us_per_request']:.0f} us/request, "
            f"{run['emulator_requests_per_cpu_second']:.0f} req per CPU-second), "
            f"generator CPU {run['generator_cpu_utilisation'] * 100:.0f}%, errors {run['errors']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
