"""``results.png``: loop lag, CPU per poll and RSS per wait of the scale runs against N, with the
target lines taken from :mod:`bench.targets`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.tables import ok, scale_runs
from bench.targets import limit


def plot(results: dict[str, Any], png_path: Path) -> bool:
    scale = results.get("sections", {}).get("scale")
    if not isinstance(scale, list):
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = {
        "DataQC trigger (aiohttp), 1 s polls": scale_runs(scale, "dataqc", 1.0),
        "sync hook in thread pool, 1 s polls": scale_runs(scale, "threads", 1.0),
        "DataQC trigger, 10 s polls": scale_runs(scale, "dataqc", 10.0),
        "same, GC tuned (what-if)": [r for r in scale if ok(r) and r.get("what_if")],
    }
    series = {k: sorted(v, key=lambda r: r["n"]) for k, v in series.items() if v}
    if not series:
        return False
    styles = {
        "DataQC trigger (aiohttp), 1 s polls": ("tab:blue", "o", "-"),
        "sync hook in thread pool, 1 s polls": ("tab:red", "s", "--"),
        "DataQC trigger, 10 s polls": ("tab:green", "D", ""),
        "same, GC tuned (what-if)": ("tab:purple", "^", ""),
    }
    p99, lag_max, cpu, rss = (limit(f) for f in ("lag_ms.p99", "lag_ms.max", "cpu_ms_per_poll", "rss_per_wait_kb"))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax_lag, ax_cpu, ax_rss = axes
    for name, runs in series.items():
        color, marker, line = styles[name]
        n = [r["n"] for r in runs]
        ax_lag.plot(
            n,
            [r["lag_ms"]["p99"] for r in runs],
            color=color,
            marker=marker,
            linestyle=line or "none",
            label=f"{name}: p99",
        )
        ax_lag.plot(
            n,
            [r["lag_ms"]["max"] for r in runs],
            color=color,
            marker=marker,
            linestyle=":" if line else "none",
            alpha=0.5,
            fillstyle="none",
            label=f"{name}: max",
        )
        ax_cpu.plot(
            n, [r["cpu_ms_per_poll"] for r in runs], color=color, marker=marker, linestyle=line or "none", label=name
        )
        ax_rss.plot(
            n, [r["rss_per_wait_kb"] for r in runs], color=color, marker=marker, linestyle=line or "none", label=name
        )
    ax_lag.axhline(p99, color="grey", linewidth=0.8, linestyle="--")
    ax_lag.axhline(lag_max, color="grey", linewidth=0.8, linestyle=":")
    ax_cpu.axhline(cpu, color="grey", linewidth=0.8, linestyle="--")
    ax_rss.axhline(rss, color="grey", linewidth=0.8, linestyle="--")
    ax_lag.set(
        title=f"event-loop lag (targets: p99 {p99:g} ms, max {lag_max:g} ms)",
        xlabel="concurrent waits N",
        ylabel="ms",
        xscale="log",
        yscale="log",
    )
    ax_cpu.set(title=f"client CPU per poll (target {cpu:g} ms)", xlabel="concurrent waits N", ylabel="ms", xscale="log")
    ax_rss.set(title=f"RSS per wait (target {rss:g} KB)", xlabel="concurrent waits N", ylabel="KB", xscale="log")
    ax_cpu.set_ylim(bottom=0)
    ax_rss.set_ylim(bottom=0)
    ax_lag.legend(fontsize=6.5, loc="upper left")
    ax_cpu.legend(fontsize=7)
    m = results.get("machine", {})
    fig.suptitle(
        f"DataQCResourceStatusTrigger scale — {m.get('cores', '?')} cores {m.get('cpu_model', '')}, "
        f"Python {m.get('python', '?')}, Airflow {m.get('versions', {}).get('apache-airflow', '?')}, "
        f"{m.get('date', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return True
