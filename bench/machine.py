"""The machine side of every benchmark: timing helpers, peak memory, how busy the other processes kept the
cores while we measured, a plain sgemm (the machine's limit), and where the results go."""

import lazarus_nb  # noqa: F401, I001  (first: preloads the optimized BLAS before anything imports mlx)

import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "runs" / "bench"
LOAD_AT_START = list(os.getloadavg())  # before this process adds its own 2 BLAS threads to the load


def timed(fn: Callable[..., Any], *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def peak_mb(fn: Callable[..., Any], *args: Any) -> float:
    mx.reset_peak_memory()
    fn(*args)
    return mx.get_peak_memory() / 2**20


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat), for the contamination check."""
    try:
        fields_ = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    except OSError:
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq = (int(x) for x in fields_)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class Contamination:
    """How much CPU other processes used while we measured: (machine busy - our own CPU) / (wall x cores)."""

    def __init__(self) -> None:
        self.t, self.busy, self.own = time.perf_counter(), busy_cpu_seconds(), sum(os.times()[:2])

    def fraction(self) -> float:
        wall = time.perf_counter() - self.t
        other = (busy_cpu_seconds() - self.busy) - (sum(os.times()[:2]) - self.own)
        return max(0.0, other / (wall * (os.cpu_count() or 1)))


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def sgemm_fn(m: int, k: int, n: int) -> tuple[Callable[[], None], int]:
    """(a call that runs fp32 (m x k) @ (k x n) products, the FLOPs of one call)."""
    a, b = mx.random.normal((m, k)), mx.random.normal((k, n))
    mx.eval(a, b)
    reps = max(1, int(2e9 // (2 * m * k * n)))  # ~2 GFLOP per timed call, so tiny shapes are not all overhead

    def run() -> None:
        for _ in range(reps):
            mx.eval(a @ b)

    return run, 2 * m * k * n * reps


def write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
