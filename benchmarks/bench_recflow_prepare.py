"""Time `data check` and `data prepare` on a RecFlow-format export of a synthetic world.

Exports days x requests_per_day requests (default: the paper's 23 days, 2024-01-13 … 2024-02-04,
x 5,000) of the `small` world with RecFlow's 50-row sequences, pickled as the real files probably
are (--legacy-pickles), then runs the check and the preparation each in its own process, so that
the peak memory reported (VmHWM, imports included) is that step's alone.

Usage: python benchmarks/bench_recflow_prepare.py [--days 23] [--requests-per-day 5000]
       [--setting recflow-2stage] [--workdir DIR] [--plain-pickles] [--jobs 1,2]
Target (issue 4): prepare >= 20,000 requests/s on 2 CPU cores, peak memory < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_memory_mb(pid: str = "self") -> float:
    """Peak resident memory of a process (VmHWM; ru_maxrss would include the parent's, since a
    child starts as a fork of it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: peak memory is measured on Linux only")


def measure(step: str, src: Path, out: Path, setting: str, jobs: int) -> None:
    """Run one step in this process and print its time and peak memory as JSON (with jobs > 1,
    also the largest worker's peak, which counts the pages it shares with this process)."""
    from cascbench.datasets.cache import prepare_recflow
    from cascbench.datasets.recflow_check import check_recflow

    started = time.perf_counter()
    if step == "check":
        report = check_recflow(src, settings=(setting,))
        requests = sum(d.requests or 0 for d in report.days)
        extra = {"errors": report.n_errors, "warnings": report.n_warnings}
    else:
        summary = prepare_recflow(src, setting, _days(src), out, force=True, jobs=jobs)
        requests, extra = summary.requests, {"days": len(summary.prepared), "jobs": jobs}
    seconds = time.perf_counter() - started
    extra["peak_rss_mb"] = peak_memory_mb()
    if jobs > 1:  # reaped workers' peaks come back through ru_maxrss of the children
        extra["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"step": step, "requests": requests, "seconds": seconds, **extra}))


def _days(src: Path) -> list[str]:
    from cascbench.datasets.cache import available_days

    return available_days(src)


def export(src: Path, days: int, per_day: int, setting_name: str, legacy: bool) -> int:
    from cascbench.datasets.recflow_writer import export_recflow
    from cascbench.datasets.synthetic import WorldConfig, generate_world, get_world_config
    from cascbench.settings import get_setting

    setting = get_setting(setting_name)
    options = {"days": days, "requests_per_day": per_day, "sequence_length": 50, "history_size": 60}
    config = WorldConfig(**{**get_world_config("small").model_dump(), **options})
    started = time.perf_counter()
    world = generate_world(setting, config, seed=0)
    generated = time.perf_counter()
    export_recflow(world, setting, src, legacy_pickles=legacy)
    done = time.perf_counter()
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    print(
        f"world: {world.n_requests:,} requests generated in {generated - started:.1f} s, "
        f"exported in {done - generated:.1f} s ({size / 2**20:.0f} MiB on disk)"
    )
    return world.n_requests


def run_step(step: str, src: Path, out: Path, setting: str, jobs: int) -> dict:
    command = [sys.executable, __file__, "--measure", step, "--src", str(src), "--out", str(out),
               "--setting", setting, "--jobs", str(jobs)]  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=23)
    parser.add_argument("--requests-per-day", type=int, default=5_000)
    parser.add_argument("--setting", default="recflow-2stage")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--plain-pickles", action="store_true", help="plain dicts, protocol 4")
    parser.add_argument("--jobs", default="1,2", help="prepare runs: comma-separated job counts")
    parser.add_argument("--measure", choices=["check", "prepare"], help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.src, args.out, args.setting, int(args.jobs))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        src, out = work / "recflow", work / "cache"
        if not (src / "others" / "id_cnt.pkl").is_file():
            export(src, args.days, args.requests_per_day, args.setting, not args.plain_pickles)
        steps = [("check", 1)] + [("prepare", int(j)) for j in args.jobs.split(",")]
        for step, jobs in steps:
            result = run_step(step, src, out, args.setting, jobs)
            rate = result["requests"] / result["seconds"]
            keys = ("errors", "warnings", "days", "jobs", "worker_peak_rss_mb")
            details = {k: v for k, v in result.items() if k in keys}
            print(
                f"{step}: {result['requests']:,} requests in {result['seconds']:.2f} s "
                f"({rate:,.0f} requests/s), peak RSS {result['peak_rss_mb']:.0f} MiB, process "
                f"{result['process_seconds']:.1f} s {details}"
            )


if __name__ == "__main__":
    main()
