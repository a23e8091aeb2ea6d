"""Peak memory while downloading a large export file.

One process per (size, variant), so RSS figures start clean. The emulator (a separate process,
``--download-size B``) serves the file; psutil samples this process's RSS every 5 ms while
the download runs, and ``ru_maxrss`` gives the kernel's own peak. Variants:

* ``dataqc``: ``DataQCHook.download_resource_file`` (streams to a temporary file, then renames);
* ``http``: ``HttpHook.run()`` as ``HttpOperator`` uses it (the body read whole), then written.

Run: ``python -m bench.download --size-mb 50 --variant dataqc --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import EmulatorProcess, emulator_defaults, ensure_airflow_home, use_connection, write_json


def _download(variant: str, url: str, destination: Path) -> int:
    d = emulator_defaults()
    if variant == "dataqc":
        from airflow_provider_dataqc.hooks.dataqc import DataQCHook

        result = DataQCHook().download_resource_file("success-0-download", destination)
        return result.size
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="GET", http_conn_id="http_download")
    response = hook.run(
        f"/v2/{d['project_id']}/quality/resource/download",
        data={"resource_id": "success-0-download"},
        headers={"X-Auth-Token": d["token"], "X-Project-Id": d["project_id"], "workspace": d["workspace"]},
    )
    destination.write_bytes(response.content)
    return len(response.content)


def measure(size_mb: int, variant: str) -> dict[str, Any]:
    import psutil

    me = psutil.Process()
    size = size_mb * 1024 * 1024
    with EmulatorProcess("--download-size", str(size)) as emu:
        use_connection("dataqc_default", emu.url, "token")
        host, port = emu.url.split("://", 1)[1].rsplit(":", 1)
        os.environ["AIRFLOW_CONN_HTTP_DOWNLOAD"] = json.dumps(
            {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
        )
        from airflow_provider_dataqc.hooks.dataqc import DataQCHook

        DataQCHook().get_resource_status("success-0-download")  # warm up; the export is now SUCCESS
        import airflow.providers.http.hooks.http  # noqa: F401  (imported before the baseline)

        with tempfile.TemporaryDirectory(prefix="dataqc-bench-download-") as folder:
            destination = Path(folder) / "export.zip"
            base = me.memory_info().rss
            peak = [base]
            running = threading.Event()
            running.set()

            def sample() -> None:
                while running.is_set():
                    peak[0] = max(peak[0], me.memory_info().rss)
                    time.sleep(0.005)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            written = _download(variant, emu.url, destination)
            elapsed = time.perf_counter() - started
            running.clear()
            sampler.join()
            on_disk = destination.stat().st_size
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    above = max(peak[0], maxrss) - base
    return {
        "variant": variant,
        "size_mb": size_mb,
        "bytes_written": written,
        "bytes_on_disk": on_disk,
        "complete": on_disk == size,
        "seconds": elapsed,
        "mb_per_s": size / 2**20 / elapsed if elapsed else 0.0,
        "rss_base_mb": base / 2**20,
        "rss_peak_sampled_mb": peak[0] / 2**20,
        "ru_maxrss_mb": maxrss / 2**20,
        "peak_above_base_mb": above / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, required=True)
    parser.add_argument("--variant", choices=("dataqc", "http"), default="dataqc")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    ensure_airflow_home()
    result = measure(args.size_mb, args.variant)
    write_json(Path(args.json), result)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
