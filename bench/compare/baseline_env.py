# SPDX-License-Identifier: MIT
"""What the PyTorch comparison scripts of bench/compare/ share: the host CPU's name and the BLAS
library torch runs on (Debian's torch uses whatever libblas.so.3 points to; without an
optimised BLAS a ratio against it means nothing, see ../shared/research/baselines.md).
Imported by memory_pytorch.py and vision_pytorch.py from this folder."""
import ctypes
import json
import os
import subprocess
import time


def cpu_model():
    """The "model name" line of /proc/cpuinfo, or "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def mapped_blas(extra=()):
    """Paths of the BLAS-like shared libraries mapped into this process (plus names in `extra`)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    keys = ("blas", "mkl", "blis", "lapack") + tuple(extra)
    return sorted(p for p in paths if ".so" in p and any(x in os.path.basename(p).lower() or x in p.lower() for x in keys))


def set_openblas_threads(n):
    """Sets and reads back OpenBLAS's thread count through the loaded library (torch's
    set_num_threads does not reach it in Debian's build). None when no OpenBLAS is loaded."""
    for path in (p for p in mapped_blas() if "openblas" in p.lower()):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_set_num_threads(ctypes.c_int(n))
            return int(lib.openblas_get_num_threads())
        except (OSError, AttributeError):
            continue
    return None


def blas_check(torch, log):
    """Best of 5 timings of a 512^3 float32 matmul in seconds, and the BLAS libraries mapped;
    logs a warning when torch looks like it runs on the reference BLAS (about 190 ms here,
    against a few ms with OpenBLAS)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    libs = mapped_blas()
    if best > 0.020 or not any(x in p.lower() for p in libs for x in ("openblas", "mkl", "blis")):
        log(f"WARNING: a 512^3 float32 matmul took {best * 1e3:.1f} ms (BLAS libraries mapped: "
            f"{', '.join(libs) or 'none found'}): torch probably runs on the reference BLAS; install "
            "libopenblas0-pthread (update-alternatives --display libblas.so.3-x86_64-linux-gnu). "
            "The figures below are then not a baseline.")
    return best, libs


def run_benchmark_json(cmd, out_json, log, env=None):
    """Runs a Google Benchmark binary (cmd writes its JSON to out_json through --benchmark_out)
    and returns (parsed JSON or None, the completed process); failures are logged."""
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        log(f"membound: exit status {res.returncode}\n{res.stderr.strip()}")
        return None, res
    try:
        with open(out_json) as f:
            return json.load(f), res
    except (OSError, ValueError) as exc:
        log(f"membound: could not read the benchmark JSON ({exc})")
        return None, res
