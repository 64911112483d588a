"""Before/after check for refactors that must change no run id and no number.

    python scripts/refactor_parity.py record parity.json   # on the code before the refactor
    python scripts/refactor_parity.py check parity.json    # after it: exit 1 on any difference
    python scripts/refactor_parity.py check scripts/parity/refactor-baseline.json \
        --set model=clean --set train.drop_last=false      # options that must reproduce it

It runs a fixed set of `cascbench` commands (the demo, every method in two and three stages on the
tiny world under both evaluation protocols, the streaming split, LCRON's ablations and the
RecFlow-format path: export, prepare, run on the cache) into a temporary results folder, then
fingerprints every run folder: its run id, the exact metrics of `metrics.json`, and a hash of the
values of `per_request.parquet`, `curve.parquet` and `per_day.parquet`. Timings and the
environment are left out (they differ on every run). Bit-identical means: the same machine and
software; across CPUs the numbers move by about 1e-3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ALL_METHODS = "bce,icc,rankflow,fs_ranknet,fs_lambdaloss,arf,arf_v2,lcron,neuralsort_ce,softsort_ce,dftopk,cloes"
TINY = ["--world", "tiny", "--batch-size", "64", "--seeds", "0-1", "--device", "cpu"]

# name -> cascbench arguments (`{res}` is the results folder, `{tmp}` a scratch folder).
COMMANDS: dict[str, list[str]] = {
    "demo": ["run", "--preset", "demo"],
    "two-stage-clean": ["run", "--methods", ALL_METHODS, *TINY],
    "two-stage-release": ["run", "--methods", ALL_METHODS, *TINY, "--eval-protocol", "release"],
    "three-stage": ["run", "--methods", ALL_METHODS, "--setting", "recflow-3stage", *TINY],
    "three-stage-release": [
        *["run", "--methods", "lcron,rankflow,bce,icc", "--setting", "recflow-3stage", *TINY],
        *["--eval-protocol", "release"],
    ],
    "streaming": ["run", "--methods", "lcron,bce", *TINY, "--split", "streaming"],
    "table3": ["run", "--preset", "paper-table3", "--world", "tiny", "--set", "seeds=0-1"],
    "export": ["data", "export-recflow", "--world", "tiny", "--out", "{tmp}/rf"],
    "prepare": [
        *["data", "prepare", "recflow", "--src", "{tmp}/rf", "--setting", "recflow-2stage"],
        *["--days", "all", "--out", "{tmp}/cache"],
    ],
    "recflow-cache": [
        *["run", "--dataset", "recflow", "--data-dir", "{tmp}/cache", "--methods", "lcron,bce"],
        *["--days", "2024-01-13..2024-01-15", "--batch-size", "64", "--seeds", "0"],
        *["--device", "cpu"],
    ],
}
RUN_FILES = ("per_request.parquet", "curve.parquet", "per_day.parquet")


def run_commands(results: Path, scratch: Path, assignments: list[str]) -> None:
    for name, args in COMMANDS.items():
        filled = [a.format(res=results, tmp=scratch) for a in args]
        if filled[0] == "run":
            filled += ["--results-dir", str(results)]
            filled += [part for a in assignments for part in ("--set", a)]
        print(f"[parity] {name}: cascbench {' '.join(filled)}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "cascbench", *filled], check=True)


def _expand(assignment: str) -> list[str]:
    """ "model=clean" -> one --set per clean stage-model option; anything else as given."""
    if assignment != "model=clean":
        return [assignment]
    from cascbench.models.config import CLEAN_MODEL

    return [f"model.{name}={value}" for name, value in CLEAN_MODEL.items()]


def frame_hash(path: Path) -> str:
    frame = pd.read_parquet(path)
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def fingerprint(results: Path) -> dict[str, dict]:
    runs = {}
    for folder in sorted((results / "runs").iterdir()):
        metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
        hashes = {f: frame_hash(folder / f) for f in RUN_FILES if (folder / f).exists()}
        runs[folder.name] = {"metrics": metrics, "files": hashes}
    return runs


def compare(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    problems = [f"run id {i} is gone" for i in sorted(before.keys() - after.keys())]
    problems += [f"new run id {i}" for i in sorted(after.keys() - before.keys())]
    for run_id in sorted(before.keys() & after.keys()):
        for part in ("metrics", "files"):
            if before[run_id][part] != after[run_id][part]:
                problems.append(f"{run_id}: {part} differ")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["record", "check"])
    parser.add_argument("file", type=Path, help="the fingerprint file (JSON)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every `cascbench run` (e.g. the options that reproduce older runs); "
        "model=clean stands for every clean option of the stage models",
    )
    args = parser.parse_args()
    assignments = [a for item in args.set for a in _expand(item)]
    with tempfile.TemporaryDirectory() as tmp:
        results, scratch = Path(tmp, "results"), Path(tmp, "scratch")
        run_commands(results, scratch, assignments)
        runs = fingerprint(results)
    if args.mode == "record":
        args.file.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(runs)} runs in {args.file}")
        return 0
    problems = compare(json.loads(args.file.read_text()), runs)
    for line in problems:
        print(line)
    print(f"{len(runs)} runs compared: {'identical' if not problems else 'DIFFERENT'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
