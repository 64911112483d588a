"""Where a run was computed: package versions, device, git revision and determinism flags.

Collected in the process that trained the run (a pool worker or a Ray task on another machine)
and sent back to the driver with the run's results, which writes it as environment.json.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cascbench.catalogue import EVALUATOR_VERSION

#: Distributions whose versions can change a run's numbers or its files.
_PACKAGES = ("cascbench", "torch", "numpy", "pandas", "pyarrow", "pydantic", "ray")


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@lru_cache(maxsize=1)
def git_revision() -> str:
    """The commit of the cascbench source tree that ran ("unknown" outside a git checkout),
    with "+dirty" when it had uncommitted changes."""
    source = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=source
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=source,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def determinism_flags() -> dict[str, object]:
    """The switches that decide whether the same seed gives bit-identical numbers."""
    import torch  # here: reading the store (cascbench runs, report) does not need torch

    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
        "torch_threads": torch.get_num_threads(),
    }


def cpu_model() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor"): numbers differ across CPUs by about
    1e-3 (issue 15), so reports say when a table mixes machines."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_kind(environment: dict) -> str:
    """What decides a run's last digits: the CPU model and torch's CPU threads (or the GPUs when
    the run was on one) and torch's version; "" for an environment that does not say. The number
    of threads counts because the CPU kernels' partial sums follow it: the same LCRON run gave
    joint recall 0.90603 with one thread and 0.90627 with two."""
    versions = environment.get("versions") or {}
    device = str(environment.get("device", ""))
    on_gpu = device.startswith("cuda")
    hardware = (", ".join(environment.get("gpus") or []) if on_gpu else "") or str(
        environment.get("cpu_model", "")
    )
    if not hardware:
        return ""
    threads = (environment.get("determinism") or {}).get("torch_threads")
    if threads and not on_gpu:
        hardware += f", {threads} thread{'s' if threads != 1 else ''}"
    return f"{hardware}, torch {versions.get('torch', '?')}"


def environment(device: str | None = None) -> dict[str, object]:
    """This process's environment; `device` is the device the run trained on ("cpu", "cuda:0")."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "versions": _package_versions(),
        "evaluator_version": EVALUATOR_VERSION,
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "device": device or ("cuda" if cuda else "cpu"),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "determinism": determinism_flags(),
    }
