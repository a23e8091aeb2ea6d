"""Per-poke cost: our sensor vs a raw ``requests`` GET vs ``HttpSensor``, side by side.

Every variant asks the same emulator (a separate process) for the status of a task that keeps
RUNNING, with the same headers. Variants run interleaved in rounds (rotating order), so every
ratio is taken within one round on the same machine state. Run:
``python -m bench.poke --json out.json [--rounds R --pokes P]``.

Variants, per auth (``token``, ``aksk``):

* ``dataqc``: ``DataQCResourceStatusSensor`` built once, ``poke()`` repeated (the hook and its
  ``requests.Session`` reused, as in poke mode); connection from ``AIRFLOW_CONN_DATAQC_DEFAULT``;
* ``raw``: one ``requests.Session`` built once; ``session.get(url, headers=...)`` then
  ``response.json()``; for AK/SK each request is signed with ``core.signer.sign``;
* ``raw-notrust`` (token): as ``raw`` with ``trust_env=False`` (as our hook's session), so the
  difference to ours is our own code;
* ``raw-send`` (token): the leanest ``requests`` path, ``Session.send()`` of a
  ``requests.Request(...).prepare()`` with ``trust_env=False`` (skips ``Session.request``'s
  setting merges): a floor for what a ``requests`` transport can do;
* ``http``: ``HttpSensor`` (apache-airflow-providers-http) built once with a ``response_check``
  judging the status as ours does; headers (token, project, workspace) from the HTTP connection's
  extra; for AK/SK a ``SignedHttpSensor`` (see :mod:`bench.alternatives`).

and "reschedule-like" (token): a new sensor (so a new hook and session) per poke, and for raw a
new ``requests.Session`` per GET.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import json
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import EmulatorProcess, emulator_defaults, ensure_airflow_home, summary, use_connection, write_json

RUNNING_ID = "success-100000"  # answers RUNNING for 100,000 polls


def _http_conn(url: str, extra: dict[str, str], login: str | None = None, password: str | None = None) -> str:
    parts = url.split("://", 1)[1]
    host, port = parts.rsplit(":", 1)
    conn: dict[str, Any] = {"conn_type": "http", "host": host, "port": int(port), "schema": "http", "extra": extra}
    if login:
        conn["login"], conn["password"] = login, password
    return json.dumps(conn)


def build_variants(url: str) -> dict[str, Callable[[], Any]]:
    """name -> a zero-argument callable doing one poke."""
    import requests
    from airflow.providers.http.sensors.http import HttpSensor

    from airflow_provider_dataqc import __version__
    from airflow_provider_dataqc.core import signer
    from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor
    from bench.alternatives import SignedHttpSensor, status_check

    d = emulator_defaults()
    project, workspace = d["project_id"], d["workspace"]
    ak, sk = d["aksk"]
    host = url.split("://", 1)[1]
    context: dict[str, Any] = {}

    use_connection("dataqc_default", url, "token")
    use_connection("dataqc_aksk", url, "aksk")
    os.environ["AIRFLOW_CONN_HTTP_DQC"] = _http_conn(
        url, {"X-Auth-Token": d["token"], "X-Project-Id": project, "workspace": workspace}
    )
    os.environ["AIRFLOW_CONN_HTTP_DQC_AKSK"] = _http_conn(url, {"workspace": workspace}, ak, sk)

    def path(rid: str) -> str:
        return f"/v2/{project}/quality/resource/status/{rid}"

    base_headers = {"User-Agent": f"airflow-provider-dataqc/{__version__}", "Content-Type": "application/json"}
    token_headers = {**base_headers, "workspace": workspace, "X-Project-Id": project, "X-Auth-Token": d["token"]}

    ours_token = DataQCResourceStatusSensor(task_id="dq_token", resource_id=f"{RUNNING_ID}-dq-token")
    ours_aksk = DataQCResourceStatusSensor(
        task_id="dq_aksk", resource_id=f"{RUNNING_ID}-dq-aksk", dataqc_conn_id="dataqc_aksk"
    )
    raw_session = requests.Session()
    raw_token_url = url + path(f"{RUNNING_ID}-raw-token")
    raw_aksk_path = path(f"{RUNNING_ID}-raw-aksk")

    def raw_token() -> Any:
        return raw_session.get(raw_token_url, headers=token_headers).json()

    lean_session = requests.Session()
    lean_session.trust_env = False
    lean_url = url + path(f"{RUNNING_ID}-raw-send")

    notrust_url = url + path(f"{RUNNING_ID}-raw-notrust")

    def raw_notrust() -> Any:
        return lean_session.get(notrust_url, headers=token_headers).json()

    def raw_send() -> Any:
        prepared = requests.Request("GET", lean_url, headers=token_headers).prepare()
        return lean_session.send(prepared, timeout=(10, 30), allow_redirects=False).json()

    def raw_aksk() -> Any:
        headers = {**base_headers, "workspace": workspace}
        headers.update(
            signer.sign(
                method="GET",
                host=host,
                path=raw_aksk_path,
                query=(),
                headers=headers,
                body=None,
                access_key=ak,
                secret_key=sk,
                project_id=project,
            )
        )
        return raw_session.get(url + raw_aksk_path, headers=headers).json()

    http_token = HttpSensor(
        task_id="http_token",
        http_conn_id="http_dqc",
        endpoint=path(f"{RUNNING_ID}-http-token"),
        response_check=status_check,
    )
    http_aksk = SignedHttpSensor(
        task_id="http_aksk",
        http_conn_id="http_dqc_aksk",
        endpoint=path(f"{RUNNING_ID}-http-aksk"),
        response_check=status_check,
        project_id=project,
    )

    counter = iter(range(10**9))

    def ours_new() -> Any:
        sensor = DataQCResourceStatusSensor(task_id=f"dq_new_{next(counter)}", resource_id=f"{RUNNING_ID}-dq-new")
        return sensor.poke(context)

    raw_new_url = url + path(f"{RUNNING_ID}-raw-new")

    def raw_new() -> Any:
        with requests.Session() as session:
            return session.get(raw_new_url, headers=token_headers).json()

    def http_new() -> Any:
        sensor = HttpSensor(
            task_id=f"http_new_{next(counter)}",
            http_conn_id="http_dqc",
            endpoint=path(f"{RUNNING_ID}-http-new"),
            response_check=status_check,
        )
        return sensor.poke(context)

    return {
        "token/dataqc": functools.partial(ours_token.poke, context),
        "token/raw": raw_token,
        "token/raw-notrust": raw_notrust,
        "token/raw-send": raw_send,
        "token/http": functools.partial(http_token.poke, context),
        "aksk/dataqc": functools.partial(ours_aksk.poke, context),
        "aksk/raw": raw_aksk,
        "aksk/http": functools.partial(http_aksk.poke, context),
        "reschedule/dataqc": ours_new,
        "reschedule/raw": raw_new,
        "reschedule/http": http_new,
    }


def time_variants(variants: dict[str, Callable[[], Any]], rounds: int, pokes: int) -> dict[str, Any]:
    names = list(variants)
    for name in names:  # warm up: connections opened, caches filled, code paths imported
        for _ in range(10):
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    round_medians: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            fn = variants[name]
            times = []
            for _ in range(pokes):
                start = clock()
                fn()
                times.append(clock() - start)
            samples[name].extend(times)
            times.sort()
            round_medians[name].append(times[len(times) // 2])
    result: dict[str, Any] = {"rounds": rounds, "pokes_per_round": pokes, "variants": {}, "ratios": {}}
    for name in names:
        result["variants"][name] = {
            "median_ms": summary(samples[name])["median"] * 1e3,
            "round_medians_ms": summary([v * 1e3 for v in round_medians[name]]),
        }
    for group in ("token", "aksk", "reschedule"):
        ours = round_medians[f"{group}/dataqc"]
        for other in ("raw", "http", "raw-notrust", "raw-send"):
            if f"{group}/{other}" not in round_medians:
                continue
            ratios = [a / b for a, b in zip(ours, round_medians[f"{group}/{other}"], strict=True)]
            result["ratios"][f"{group}: dataqc/{other}"] = summary(ratios)
    return result


def count_requests(pokes: int) -> dict[str, Any]:
    """Requests per poke and IAM calls per ``pokes`` pokes, counted by an in-process emulator."""
    from airflow.providers.http.sensors.http import HttpSensor

    from airflow_provider_dataqc.core.auth import TOKEN_CACHE
    from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor
    from airflow_provider_dataqc.testing.emulator import Emulator
    from bench.alternatives import status_check

    out: dict[str, Any] = {"pokes": pokes}
    d = emulator_defaults()
    with Emulator() as emu:
        for auth in ("token", "aksk", "password"):
            TOKEN_CACHE.clear()
            emu.reset_counts()
            conn_id = use_connection(f"dataqc_count_{auth}", emu.url, auth)
            sensor = DataQCResourceStatusSensor(
                task_id=f"count_{auth}", resource_id=f"{RUNNING_ID}-count-{auth}", dataqc_conn_id=conn_id
            )
            for _ in range(pokes):
                sensor.poke({})
            out[f"poke/{auth}"] = {
                "status_requests_per_poke": emu.count("status") / pokes,
                "requests_per_poke": emu.count() / pokes,
                "iam_calls": emu.iam_calls,
            }
        # Reschedule-like with password auth: a new sensor and hook per poke, same process.
        TOKEN_CACHE.clear()
        emu.reset_counts()
        for i in range(pokes):
            DataQCResourceStatusSensor(
                task_id=f"count_new_{i}", resource_id=f"{RUNNING_ID}-count-new", dataqc_conn_id="dataqc_count_password"
            ).poke({})
        out["reschedule/password"] = {
            "status_requests_per_poke": emu.count("status") / pokes,
            "requests_per_poke": emu.count() / pokes,
            "iam_calls": emu.iam_calls,
        }
        emu.reset_counts()
        os.environ["AIRFLOW_CONN_HTTP_DQC_COUNT"] = _http_conn(
            emu.url, {"X-Auth-Token": d["token"], "X-Project-Id": d["project_id"], "workspace": d["workspace"]}
        )
        http = HttpSensor(
            task_id="count_http",
            http_conn_id="http_dqc_count",
            endpoint=f"/v2/{d['project_id']}/quality/resource/status/{RUNNING_ID}-count-http",
            response_check=status_check,
        )
        for _ in range(pokes):
            http.poke({})
        out["poke/http-token"] = {"requests_per_poke": emu.count() / pokes}
    return out


def profile_pokes(url: str, pokes: int, out_dir: Path) -> dict[str, Any]:
    """cProfile of ``poke()`` (token and AK/SK): the top of the table by own time and by cumulative time."""
    from airflow_provider_dataqc.sensors.dataqc import DataQCResourceStatusSensor

    tables: dict[str, Any] = {}
    counter = iter(range(10**9))

    def reschedule_like() -> None:
        sensor = DataQCResourceStatusSensor(task_id=f"prof_new_{next(counter)}", resource_id=f"{RUNNING_ID}-prof-new")
        sensor.poke({})

    for _ in range(20):
        reschedule_like()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(pokes // 4 or 1):
        reschedule_like()
    profiler.disable()
    profiler.dump_stats(str(out_dir / "poke-reschedule.prof"))
    tables["reschedule"] = render_profile(profiler, pokes // 4 or 1)
    tables["reschedule/components"] = components(profiler, pokes // 4 or 1)
    (out_dir / "poke-reschedule.txt").write_text(tables["reschedule"])
    for auth, conn_id in (("token", "dataqc_default"), ("aksk", "dataqc_aksk")):
        sensor = DataQCResourceStatusSensor(
            task_id=f"prof_{auth}", resource_id=f"{RUNNING_ID}-prof-{auth}", dataqc_conn_id=conn_id
        )
        for _ in range(20):
            sensor.poke({})
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(pokes):
            sensor.poke({})
        profiler.disable()
        profiler.dump_stats(str(out_dir / f"poke-{auth}.prof"))
        tables[auth] = render_profile(profiler, pokes)
        tables[f"{auth}/components"] = components(profiler, pokes)  # type: ignore[assignment]
        (out_dir / f"poke-{auth}.txt").write_text(tables[auth])
    return tables


#: Where a poke or poll spends its time: (label, path fragment, function name), cumulative.
COMPONENTS = (
    ("log line (structlog)", "structlog/_base.py", "_proxy_to_logger"),
    ("connection lookup", "airflow/sdk/definitions/connection.py", "async_get"),
    ("connection lookup", "airflow/sdk/bases/hook.py", "get_connection"),
    ("sensor construction (BaseOperator.__init__)", "airflow/sdk/bases/operator.py", "apply_defaults"),
    (
        "connection settings (settings_from_connection)",
        "airflow_provider_dataqc/hooks/connection.py",
        "settings_from_connection",
    ),
    ("new requests.Session", "requests/sessions.py", "__init__"),
    ("call plan (core.calls.call)", "airflow_provider_dataqc/core/calls.py", "call"),
    ("prepare: URL, headers, auth (core.prepare)", "airflow_provider_dataqc/core/prepare.py", "prepare"),
    ("AK/SK signing (core.signer.sign)", "airflow_provider_dataqc/core/signer.py", "sign"),
    ("status record parsing", "airflow_provider_dataqc/core/answers.py", "read_status"),
    ("verdict (core.status.assess)", "airflow_provider_dataqc/core/status.py", "assess"),
    ("requests Session.request", "requests/sessions.py", "request"),
    ("  of which prepare_request (setting merges)", "requests/sessions.py", "prepare_request"),
    ("aiohttp ClientSession._request", "aiohttp/client.py", "_request"),
    ("transport send (hook/trigger _send)", "airflow_provider_dataqc/hooks/transport.py", "send"),
    ("transport send (hook/trigger _send)", "airflow_provider_dataqc/hooks/dataqc_async.py", "_send"),
)


def components(profiler: cProfile.Profile, calls: int) -> list[dict[str, Any]]:
    """Cumulative microseconds per operation of the functions in :data:`COMPONENTS`."""
    stats = pstats.Stats(profiler)
    # Share of the time spent working: the event loop's idle wait in epoll is left out.
    total = sum(
        tt
        for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        if "poll' of 'select.epoll" not in func
    )
    total = total or 1.0
    found: dict[str, float] = {}
    for label, fragment, name in COMPONENTS:
        for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if func == name and fragment in file.replace("\\", "/"):
                found[label] = max(found.get(label, 0.0), ct)
    return [
        {"component": label, "us_per_op": value / calls * 1e6, "share": value / total} for label, value in found.items()
    ]


def render_profile(profiler: cProfile.Profile, calls: int, top: int = 18) -> str:
    """Top functions by own time and by cumulative time, per call of the profiled operation."""
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, _short_location(file, line, func)))
    total = sum(r[0] for r in rows)
    lines = [f"{'own us/op':>10} {'cum us/op':>10} {'calls/op':>9}  function   (total {total / calls * 1e6:.0f} us/op)"]
    lines.append("-- by own time")
    for tt, ct, nc, where in sorted(rows, key=lambda r: -r[0])[:top]:
        lines.append(f"{tt / calls * 1e6:10.1f} {ct / calls * 1e6:10.1f} {nc / calls:9.2f}  {where}")
    lines.append("-- by cumulative time")
    for tt, ct, nc, where in sorted(rows, key=lambda r: -r[1])[:top]:
        lines.append(f"{tt / calls * 1e6:10.1f} {ct / calls * 1e6:10.1f} {nc / calls:9.2f}  {where}")
    return "\n".join(lines)


def _short_location(file: str, line: int, func: str) -> str:
    if file == "~":
        return func
    for marker in ("site-packages/", "airflow_provider_dataqc/", "bench/", "lib/python3"):
        if marker in file:
            file = (
                file.split(marker, 1)[1]
                if marker != "airflow_provider_dataqc/"
                else "dataqc/" + file.split(marker, 1)[1]
            )
            break
    return f"{file}:{line}({func})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pokes", type=int, default=100)
    parser.add_argument("--count-pokes", type=int, default=100)
    parser.add_argument("--profile-pokes", type=int, default=2000)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    ensure_airflow_home()
    out_dir = Path(args.json).parent / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    with EmulatorProcess() as emu:
        variants = build_variants(emu.url)
        gc.collect()
        result["timing"] = time_variants(variants, args.rounds, args.pokes)
        result["profiles"] = profile_pokes(emu.url, args.profile_pokes, out_dir)
    result["counts"] = count_requests(args.count_pokes)
    write_json(Path(args.json), result)
    for name, row in result["timing"]["variants"].items():
        print(f"{name:20s} median {row['median_ms']:.3f} ms")
    for name, row in result["timing"]["ratios"].items():
        print(f"{name:28s} {row['median']:.3f} ({row['min']:.3f}-{row['max']:.3f})")
    print(json.dumps(result["counts"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
