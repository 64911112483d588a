"""Training and evaluation speed and memory of every method, written to benchmarks/RESULTS.md.

    python benchmarks/suite.py                                   # CPU, 2 and 3 stages, all methods
    python benchmarks/suite.py --device cuda --requests 6000000 --days 23
    python benchmarks/suite.py --methods lcron,bce --settings recflow-2stage --repeats 1
    python benchmarks/suite.py --data-dir CACHE                  # a RecFlow cache, not a world
    python benchmarks/suite.py --compile                         # torch.compile models and losses

Data: by default a synthetic world with RecFlow's shapes (behaviour sequences of 50, N = 40 or 50,
1M videos drawn) written once per setting as a cache, day by day (`write_world_cache`: memory
holds one day, so 6M requests fit an ordinary machine), that every case memory-maps; the stage
models' id tables get RecFlow's vocabulary sizes (`RECFLOW_VOCABULARY`: about 9M videos,
so each model's tables and their Adam state are GBs, as in the paper), whatever the world draws.
`--data-dir` reads a prepared RecFlow cache (`cascbench data prepare`) instead, with its own sizes.

Each (setting, method) runs in a fresh process (`suite_case.py`), so that its peak host memory is
its own. The table, the machine and this command go into one section of RESULTS.md per device
kind (CPU, GPU, each eager or compiled), replacing that section's previous numbers and keeping
everything else.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SETTINGS = ("recflow-2stage", "recflow-3stage")

#: Vocabulary sizes (padding id included) given to the stage models' id tables: RecFlow's where
#: RECFLOW.md gives them (about 42k users, about 9M videos); authors and devices are not given
#: there and are assumed (a quarter of the videos, one device per user).
RECFLOW_VOCABULARY = {
    "user_id": 42_001,
    "device_id": 42_001,
    "video_id": 9_000_001,
    "author_id": 2_250_001,
}

#: World knobs giving RecFlow's shapes: sequences of 50, and enough users, devices and videos
#: that a batch touches a realistic spread of table rows.
WORLD_OPTIONS = {
    "sequence_length": 50,
    "history_size": 100,
    "n_users": 42_000,
    "n_devices": 42_000,
    "n_items": 1_000_000,
    "n_authors": 250_000,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated")
    parser.add_argument("--methods", default="all", help="comma-separated, or all (default)")
    parser.add_argument("--requests", type=int, default=20_480, help="synthetic world size")
    parser.add_argument("--days", type=int, default=4, help="world days; the last is the test day")
    parser.add_argument("--world", default="small", help="synthetic world preset")
    parser.add_argument(
        "--world-as-is",
        action="store_true",
        help="the preset's own shapes and vocabulary, without RecFlow's (WORLD_OPTIONS, "
        "RECFLOW_VOCABULARY)",
    )
    parser.add_argument("--data-dir", help="a RecFlow cache folder instead of a synthetic world")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--eval-batch-size", type=int, default=4096)
    parser.add_argument("--placement", default="auto", help="auto, whole, day or stream")
    parser.add_argument("--compile", action="store_true", help="torch.compile models and losses")
    parser.add_argument(
        "--optimizer", default="adam", help="adam (the reference) or sparse_adam (lazy, sparse)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed training runs per case")
    parser.add_argument("--split-steps", type=int, default=5, help="steps timed part by part")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each case, wait up to this long for the CPU to be idle (pressure below 10%%)",
    )
    parser.add_argument("--cache-dir", help="keep the generated worlds here (default: temporary)")
    parser.add_argument("--results", default=str(RESULTS), help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a case spec, in a child process
    parser.add_argument("--prepare", help=argparse.SUPPRESS)  # a world spec, in a child process
    return parser.parse_args(argv)


def method_names(requested: str) -> list[str]:
    import cascbench as cb

    names = sorted(cb.list_methods())
    if requested == "all":
        return names
    chosen = [m.strip() for m in requested.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in names]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {', '.join(names)}")
    return chosen


def prepare_world(spec: dict[str, Any]) -> None:
    """Write a world for one setting as a cache, day by day (in a child process: its memory is
    freed)."""
    from cascbench.datasets.world_cache import write_world_cache
    from cascbench.settings import get_setting

    vocabulary = RECFLOW_VOCABULARY if spec["recflow_vocabulary"] else None
    write_world_cache(get_setting(spec["setting"]), world_config(spec), spec["folder"],
                      world_name=spec["world"], vocabulary=vocabulary)  # fmt: skip


def world_config(spec: dict[str, Any]) -> Any:
    """The world preset with the spec's options."""
    from cascbench.datasets.synthetic import WorldConfig, get_world_config

    return WorldConfig(**{**get_world_config(spec["world"]).model_dump(), **spec["options"]})


def _child(flag: str, spec: dict[str, Any]) -> str:
    """Run this script with `flag spec` in a fresh process; its stdout, or exit on failure."""
    command = [sys.executable, str(Path(__file__)), flag, json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"{flag} {spec.get('method', '')} {spec['setting']} failed")
    return done.stdout


def wait_for_idle_cpu(limit_seconds: float) -> None:
    """Wait until no process waited for a CPU in 90% of the last 10 s, or `limit_seconds` pass."""
    pressure = Path("/proc/pressure/cpu")
    deadline = time.monotonic() + limit_seconds
    while pressure.exists() and time.monotonic() < deadline:
        some = pressure.read_text().split()  # "some avg10=... ..."
        if float(some[1].split("=")[1]) < 10.0:
            return
        time.sleep(5)


def machine(device: str) -> str:
    """One line describing the machine: CPU, cores, memory, torch, GPU."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parts = [
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    ]
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        parts.append(
            f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
        )
    return "; ".join(parts)


def format_table(rows: list[dict[str, Any]], gpu: bool) -> str:
    header = [
        "setting",
        "method",
        "train req/s",
        "step ms: data / model / loss / optimizer",
        "eval req/s: evaluator / +inference",
        "peak RSS MB",
    ]
    header += ["peak GPU MB", "train s (requests)"] if gpu else ["CPU stall %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        split = " / ".join(f"{r[f'{p}_ms']:.1f}" for p in ("data", "model", "loss", "optimizer"))
        cells = [
            r["setting"],
            r["method"],
            f"{r['train_rps']:,.0f}",
            split,
            f"{r['evaluator_rps']:,.0f} / {r['predict_eval_rps']:,.0f}",
            f"{r['peak_rss_mb']:,.0f}",
        ]
        if gpu:
            cells += [
                f"{r['peak_gpu_mb']:,.0f}",
                f"{r['train_seconds']:.1f} ({r['train_requests']:,})",
            ]
        else:
            stall = r.get("cpu_stall_percent")
            cells.append("-" if stall is None else f"{stall:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(path: Path, kind: str, body: str) -> None:
    """Replace the `kind` section (between its markers) of `path`, or append it; atomically."""
    from cascbench.io import atomic_write_bytes

    begin, end = f"<!-- suite:{kind}:begin -->", f"<!-- suite:{kind}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results (`benchmarks/suite.py`)\n"
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_bytes(path, text.encode())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one:
        from suite_case import run_case

        print(json.dumps(run_case(json.loads(args.one))))
        return
    if args.prepare:
        prepare_world(json.loads(args.prepare))
        return

    from cascbench.datasets.world_cache import world_day_names
    from cascbench.placement import resolve_device

    device = str(resolve_device(args.device))  # refuses cuda without a GPU, with the reason
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = method_names(args.methods)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    command = "python benchmarks/suite.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    load = os.getloadavg()[0]
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cascbench-suite-") as scratch:
        cache = Path(args.cache_dir or scratch)
        for setting in settings:
            data = {"kind": "recflow", "path": args.data_dir} if args.data_dir else None
            if data is None:
                options = {} if args.world_as_is else dict(WORLD_OPTIONS)
                options.update(days=args.days, requests_per_day=args.requests // args.days)
                folder = cache / f"{setting}-{args.world}-{args.requests}-{args.days}"
                world = {
                    "setting": setting,
                    "world": args.world,
                    "options": options,
                    "recflow_vocabulary": not args.world_as_is,
                    "folder": str(folder),
                }
                print(f"writing the {setting} world ...", file=sys.stderr, flush=True)
                _child("--prepare", world)  # resumes: days already written are kept
                days = list(world_day_names(world_config(world)))
                data = {"kind": "recflow", "path": str(folder), "days": days}
            for method in methods:
                spec = {
                    "setting": setting,
                    "method": method,
                    "data": data,
                    "threads": args.threads,
                    "repeats": args.repeats,
                    "split_steps": args.split_steps,
                    "train": {
                        "device": device,
                        "batch_size": args.batch_size,
                        "eval_batch_size": args.eval_batch_size,
                        "data_placement": args.placement,
                        "compile": args.compile,
                        "optimizer": args.optimizer,
                    },
                }
                wait_for_idle_cpu(args.wait_idle)
                result = json.loads(_child("--one", spec).strip().splitlines()[-1])
                rows.append({"setting": setting, "method": method, **result})
                print(
                    f"{setting} {method}: {result['train_rps']:,.0f} train req/s, "
                    f"evaluator {result['evaluator_rps']:,.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
    gpu = device.startswith("cuda")
    table = format_table(rows, gpu)
    print(table)
    if args.no_write:
        return
    sparse = args.optimizer != "adam"
    kind = ("gpu" if gpu else "cpu") + ("-compiled" if args.compile else "")
    kind += f"-{args.optimizer}" if sparse else ""
    first = rows[0]
    timed = "one timed run" if args.repeats == 1 else f"median of {args.repeats} runs"
    body = "\n".join(
        [
            f"## {'GPU' if gpu else 'CPU'}{', compiled' if args.compile else ''}: {machine(device)}",
            "",
            f"`{command}`, {datetime.date.today().isoformat()}, {time.perf_counter() - started:.0f} s;"
            f" load average {load:.1f} when it started{' (a shared machine)' if load > 0.5 else ''}.",
            f"Training: {first['train_requests']:,} requests per run ({timed} "
            f"after a warm-up), batch {args.batch_size}, data placement {first['data_placement']}"
            f"{', compiled' if args.compile else ''}{f', {args.optimizer}' if sparse else ''}; "
            f"evaluation: {first['test_requests']:,} test "
            "requests, the evaluator alone on random scores, then inference + evaluator.",
            "",
            table,
        ]
    )
    write_section(Path(args.results), kind, body)


if __name__ == "__main__":
    main()
