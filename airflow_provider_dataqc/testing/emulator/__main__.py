"""``python -m airflow_provider_dataqc.testing.emulator``: serve the emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from airflow_provider_dataqc.core.settings import is_loopback_host
from airflow_provider_dataqc.testing.emulator.defaults import (
    DEFAULT_PROJECT_ID,
    DEFAULT_WORKSPACES,
    NOT_FOUND_STATUSES,
)
from airflow_provider_dataqc.testing.emulator.faults import FAULT_KINDS, FaultPlan
from airflow_provider_dataqc.testing.emulator.flow import DOCUMENTED_LIMITS, FlowControl
from airflow_provider_dataqc.testing.emulator.server import Emulator


def _parse_mix(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, _, weight = item.partition("=")
        mix[name.strip()] = float(weight) if weight.strip() else 1.0
    return mix


def _parse_limits(items: Sequence[str]) -> dict[str, tuple[int, int]]:
    limits: dict[str, tuple[int, int]] = {}
    for item in items:
        name, _, numbers = item.partition("=")
        api, _, user = numbers.partition("/")
        try:
            limits[name.strip()] = (int(api), int(user))
        except ValueError:
            raise ValueError(f"--flow-limit {item!r} is not OPERATION=API/USER (e.g. export=1800/20)") from None
    return limits


def run(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_dataqc.testing.emulator --port N``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_dataqc.testing.emulator",
        description="Serve a local DataArts Quality + IAM emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--project-id", default=DEFAULT_PROJECT_ID)
    parser.add_argument("--workspace", action="append", help="known workspace (repeatable)")
    parser.add_argument("--download-size", type=int, default=1024, help="bytes of each downloaded file")
    parser.add_argument("--token-lifetime", type=float, default=86400.0, help="IAM token lifetime in seconds")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="fraction of requests that get a fault")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--fault-mix", help=f"kind=weight,... of {', '.join(FAULT_KINDS)}")
    parser.add_argument("--fault-operations", default="status", help="comma-separated operations to fault")
    parser.add_argument("--slow-seconds", type=float, default=2.0)
    parser.add_argument(
        "--not-found-status",
        type=int,
        choices=NOT_FOUND_STATUSES,
        default=404,
        help="HTTP status of a DQC.1016 'does not exist' answer (500 is the documented form)",
    )
    flow = parser.add_argument_group("flow control (on by default, as the service documents it)")
    flow.add_argument("--no-flow-control", action="store_true", help="answer every request, never 429")
    flow.add_argument("--flow-window", type=float, default=10.0, help="window in seconds (10)")
    flow.add_argument("--flow-per-api", type=int, default=300, help="requests per window per API (300)")
    flow.add_argument("--flow-per-user", type=int, default=40, help="requests per window per API and user (40)")
    flow.add_argument(
        "--flow-limit",
        action="append",
        default=[],
        metavar="OPERATION=API/USER",
        help="other limits for one operation (repeatable; default export=1800/20)",
    )
    flow.add_argument("--flow-retry-after", type=float, default=None, help="send Retry-After with 429s (default: none)")
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error(f"--host {args.host!r} is not a loopback address: the emulator only serves this machine")
    faults = None
    if args.fault_rate > 0:
        try:
            faults = FaultPlan(
                rate=args.fault_rate,
                mix=_parse_mix(args.fault_mix),
                seed=args.fault_seed,
                operations=tuple(op.strip() for op in args.fault_operations.split(",") if op.strip()),
                slow_seconds=args.slow_seconds,
            )
        except ValueError as err:
            parser.error(str(err))
    flow_control = None
    if not args.no_flow_control:
        try:
            flow_control = FlowControl(
                per_api=args.flow_per_api,
                per_user=args.flow_per_user,
                window=args.flow_window,
                limits={**DOCUMENTED_LIMITS, **_parse_limits(args.flow_limit)},
                retry_after=args.flow_retry_after,
            )
        except ValueError as err:
            parser.error(str(err))
    emulator = Emulator(
        host=args.host,
        port=args.port,
        project_id=args.project_id,
        workspaces=tuple(args.workspace or DEFAULT_WORKSPACES),
        token_lifetime=args.token_lifetime,
        download_size=args.download_size,
        faults=faults,
        flow_control=flow_control,
        not_found_status=args.not_found_status,
    )

    async def serve() -> None:
        await emulator.start_async()
        print(f"DataQC emulator listening on {emulator.url}", flush=True)
        if flow_control is not None:
            print(
                f"flow control: {flow_control.per_api}/{flow_control.per_user} requests per"
                f" {flow_control.window:g} s per API/user",
                flush=True,
            )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        try:
            await stopping.wait()
        finally:
            await emulator.stop_async()
            stats = emulator.flow_stats()
            print(
                f"served {stats.served} DataArts requests, answered {stats.throttled} with 429"
                f" ({100 * stats.throttled_share:.1f} %)",
                flush=True,
            )

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(run())
