#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch CPU baseline for membound's test-time memory (the Titans-style neural-memory step of the
project's PyTorch baseline notes, baselines.md section 4), optionally timed back to back with membound's
bench_memory binary.

Set-up (as in baselines.md section 4):
  memory M_W(x) = W2 silu(W1 x), d = 64, hidden = 256, no biases; per-token loss
  1/2 ||M_W(k_t) - v_t||^2; plain SGD, lr 0.01; read y_t = M_{W_t}(q_t) with the weights after
  token t's update; T = 2048 tokens, batch 1, float32.

Implementations timed:
  (a) token loop, torch.autograd.grad per token (exact recurrence);
  (b) chunk 64, manual batched gradients: inside a chunk every gradient is taken at the chunk-start
      weights W_0 and the read of token t uses W_t = W_0 - lr sum_{i<=t} g_i without materialising
      W_t:  W1_t q_t = W1_0 q_t - lr ((Q K^T) .* causal) dZ  and
            W2_t h_t = W2_0 h_t - lr ((Hq H^T) .* causal) E,  with h_t = silu(W1_t q_t).
Checks before timing: (a) against a manual-gradient token loop, (b) against a token loop whose
gradients are taken (with autograd) at the chunk-start weights.

Usage:
    /usr/bin/python3 bench/compare/memory_pytorch.py [--threads N] [--json] [--membound BIN]

--threads N sets torch.set_num_threads(N) and OPENBLAS_NUM_THREADS=N (and OMP_NUM_THREADS) before
torch is imported (--blas-threads overrides the BLAS count). Like baselines.md ("tuned" malloc),
the script re-executes itself with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:
glibc.malloc.trim_threshold=17179869184 unless GLIBC_TUNABLES is already set or --default-malloc
is given: on the development VM fresh pages cost ~12 us each and dominate otherwise.
--membound BIN runs the Google Benchmark binary BIN with --benchmark_filter=pytorch_config and its
JSON written to a temporary file (under `taskset -c 0` when threads == 1) right after the PyTorch timings and
prints the ratio of each matching benchmark's tokens/s counter (best of 3 repetitions) to both PyTorch figures.
With one thread this process pins itself to CPU 0 as well (--no-pin to skip), so that both sides
run on the same core.
--json prints one JSON object on stdout (human-readable lines go to stderr).
Needs libopenblas0-pthread: Debian's torch links the generic libblas.so.3, and with the reference
BLAS every figure is meaningless (a warning is printed when a 512^3 matmul takes > 20 ms).
"""
import argparse
import json
import os
import shutil
import tempfile
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baseline_env  # noqa: E402
from baseline_env import cpu_model, set_openblas_threads  # noqa: E402

TUNED_MALLOC = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184"

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
ap.add_argument("--blas-threads", type=int, default=None, help="OpenBLAS threads (default: --threads)")
ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
ap.add_argument("--membound", metavar="BIN", default=None, help="membound bench_memory binary to run as well")
ap.add_argument("--tokens", type=int, default=2048)
ap.add_argument("--chunk", type=int, default=64)
ap.add_argument("--reps", type=int, default=7, help="timed repetitions (best is reported)")
ap.add_argument("--min-time", type=float, default=0.3, help="seconds per repetition and for warm-up")
ap.add_argument("--no-pin", action="store_true", help="with 1 thread, do not pin this process to CPU 0")
ap.add_argument("--default-malloc", action="store_true", help="do not re-exec with the tuned GLIBC_TUNABLES")
args = ap.parse_args()
if args.threads < 1:
    ap.error("--threads must be >= 1")
blas_threads = args.blas_threads or args.threads

if not args.default_malloc and "GLIBC_TUNABLES" not in os.environ:
    env = dict(os.environ, GLIBC_TUNABLES=TUNED_MALLOC)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)
os.environ["OMP_NUM_THREADS"] = str(args.threads)


import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
if args.threads == 1 and not args.no_pin and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {0})  # same core as `taskset -c 0` for the membound binary
LOG = sys.stderr if args.json else sys.stdout
D, HID, LR = 64, 256, 0.01


def log(*a):
    print(*a, file=LOG, flush=True)


# ---- environment (bench/compare/baseline_env.py) ---------------------------------------------
def openblas_threads():
    return set_openblas_threads(blas_threads)


def blas_check():
    return baseline_env.blas_check(torch, log)


# ---- the memory --------------------------------------------------------------------------------
def dsilu(z):
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def token_autograd(W1, W2, q, k, v, lr=LR):
    """(a) exact recurrence, gradients by torch.autograd.grad per token."""
    W1, W2 = W1.clone(), W2.clone()
    y = torch.empty_like(v)
    for t in range(q.shape[0]):
        a = W1.detach().requires_grad_(True)
        b = W2.detach().requires_grad_(True)
        loss = 0.5 * (b @ F.silu(a @ k[t]) - v[t]).pow(2).sum()
        g1, g2 = torch.autograd.grad(loss, (a, b))
        with torch.no_grad():
            W1.sub_(g1, alpha=lr)
            W2.sub_(g2, alpha=lr)
            y[t] = W2 @ F.silu(W1 @ q[t])
    return y, W1, W2


@torch.no_grad()
def token_manual(W1, W2, q, k, v, lr=LR):
    """Check for (a): the same recurrence with hand-written gradients."""
    W1, W2 = W1.clone(), W2.clone()
    y = torch.empty_like(v)
    for t in range(q.shape[0]):
        z = W1 @ k[t]
        h = F.silu(z)
        e = W2 @ h - v[t]
        dz = (W2.T @ e) * dsilu(z)
        W2.sub_(torch.outer(e, h), alpha=lr)
        W1.sub_(torch.outer(dz, k[t]), alpha=lr)
        y[t] = W2 @ F.silu(W1 @ q[t])
    return y, W1, W2


@torch.no_grad()
def chunk_manual(W1, W2, q, k, v, chunk, lr=LR):
    """(b) chunked: gradients at the chunk-start weights, reads through masked matmuls."""
    W1, W2 = W1.clone(), W2.clone()
    T = q.shape[0]
    y = torch.empty_like(v)
    causal = torch.ones(chunk, chunk).tril_()
    for s in range(0, T, chunk):
        Q, K, V = q[s:s + chunk], k[s:s + chunk], v[s:s + chunk]
        n = Q.shape[0]
        m = causal[:n, :n]
        Z = K @ W1.T                        # (n, H) at W1_0
        H = F.silu(Z)
        E = H @ W2.T - V                    # (n, d) residuals at W_0
        dZ = (E @ W2) * dsilu(Z)            # (n, H)
        Zq = Q @ W1.T - lr * ((Q @ K.T) * m) @ dZ      # W1_t q_t
        Hq = F.silu(Zq)
        y[s:s + n] = Hq @ W2.T - lr * ((Hq @ H.T) * m) @ E  # W2_t h_t
        W1.sub_(dZ.T @ K, alpha=lr)
        W2.sub_(E.T @ H, alpha=lr)
    return y, W1, W2


def token_frozen(W1, W2, q, k, v, chunk, lr=LR):
    """Check for (b): token loop, W_t = W_{t-1} - lr g_t with g_t by autograd at the chunk start."""
    W1, W2 = W1.clone(), W2.clone()
    y = torch.empty_like(v)
    for t in range(q.shape[0]):
        if t % chunk == 0:
            P1, P2 = W1.clone().requires_grad_(True), W2.clone().requires_grad_(True)
        loss = 0.5 * (P2 @ F.silu(P1 @ k[t]) - v[t]).pow(2).sum()
        g1, g2 = torch.autograd.grad(loss, (P1, P2))
        with torch.no_grad():
            W1 = W1 - lr * g1
            W2 = W2 - lr * g2
            y[t] = W2 @ F.silu(W1 @ q[t])
    return y, W1, W2


def max_err(x, y):
    return max((a - b).abs().max().item() for a, b in zip(x, y))


def bench(fn):
    """Warm-up for min_time, then reps repetitions of >= min_time each; seconds per call (best, median)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.min_time:
        fn()
    per = []
    for _ in range(args.reps):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= args.min_time:
                break
        per.append(el / n)
    per.sort()
    return per[0], per[len(per) // 2]


def run_membound(path):
    """Runs the Google Benchmark binary; returns [(name, tokens per second)] for pytorch_config runs."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        log(f"membound: {path} does not exist or is not executable; skipped")
        return None
    # bench_memory prints its own console table (and a ratio table), so the JSON goes to a file.
    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "bench_memory.json")
        cmd = [path, "--benchmark_filter=pytorch_config", "--benchmark_repetitions=3",
               f"--benchmark_out={out_json}", "--benchmark_out_format=json"]
        if args.threads == 1 and shutil.which("taskset"):
            cmd = ["taskset", "-c", "0"] + cmd
        log("membound: " + " ".join(cmd))
        data, _ = baseline_env.run_benchmark_json(cmd, out_json, log)
        if data is None:
            return None
    best = {}  # the best repetition per benchmark (bench_memory's "tokens/s" counter)
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration" or "pytorch_config" not in b.get("name", ""):
            continue
        rate = b.get("tokens/s", b.get("items_per_second"))
        if rate is not None:
            name = b.get("run_name", b["name"])
            best[name] = max(best.get(name, 0.0), float(rate))
    if not best:
        log("membound: no pytorch_config benchmark with a tokens/s counter in the output")
    return sorted(best.items())


# ---- main --------------------------------------------------------------------------------------
nblas = openblas_threads()
mm_s, blas_libs = blas_check()
mm_ms = mm_s * 1e3
T, CH = args.tokens, args.chunk
g = torch.Generator().manual_seed(20250529)
W1_0 = torch.randn(HID, D, generator=g) / D ** 0.5
W2_0 = torch.randn(D, HID, generator=g) / HID ** 0.5
q, k, v = (torch.randn(T, D, generator=g) for _ in range(3))
q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)  # unit queries and keys (as Titans/ATLAS); the
# step on W2 is lr ||h||^2, so raw N(0, 1) keys of norm ~8 make plain SGD at lr 0.01 diverge

ya, W1a, W2a = token_autograd(W1_0, W2_0, q, k, v)
ym, W1m, W2m = token_manual(W1_0, W2_0, q, k, v)
yb, W1b, W2b = chunk_manual(W1_0, W2_0, q, k, v, CH)
yf, W1f, W2f = token_frozen(W1_0, W2_0, q, k, v, CH)
assert all(torch.isfinite(x).all() for x in (ya, yb, W1a, W2a, W1b, W2b)), "the memory diverged"
err_a = max_err((ya, W1a, W2a), (ym, W1m, W2m))
err_b = max_err((yb, W1b, W2b), (yf, W1f, W2f))
scale = max(x.abs().max().item() for x in (ya, W1a, W2a))
drift = ((W1b - W1a).norm() / W1a.norm()).item()
log(f"check (a) token loop, autograd vs manual:            max abs error {err_a:.1e} (values up to {scale:.2f})")
log(f"check (b) chunk {CH}, batched vs frozen-gradient loop: max abs error {err_b:.1e}")
log(f"info: chunked vs exact recurrence, final W1 relative difference {100 * drift:.2f} %")
assert err_a < 1e-4, err_a
assert err_b < 1e-4, err_b

t_a, med_a = bench(lambda: token_autograd(W1_0, W2_0, q, k, v))
t_b, med_b = bench(lambda: chunk_manual(W1_0, W2_0, q, k, v, CH))
tps_a, tps_b = T / t_a, T / t_b
log(f"cpu: {cpu_model()}; torch {torch.__version__}; threads torch {torch.get_num_threads()} / "
    f"OpenBLAS {nblas if nblas is not None else '?'}; malloc "
    f"{'tuned' if os.environ.get('GLIBC_TUNABLES') == TUNED_MALLOC else os.environ.get('GLIBC_TUNABLES', 'default')}; "
    f"512^3 matmul {mm_ms:.2f} ms")
log(f"(a) token loop, autograd.grad per token: {t_a * 1e3:8.2f} ms / {T} tokens = {tps_a:10,.0f} tokens/s "
    f"(median {T / med_a:,.0f})")
log(f"(b) chunk {CH}, manual batched grads:    {t_b * 1e3:8.2f} ms / {T} tokens = {tps_b:10,.0f} tokens/s "
    f"(median {T / med_b:,.0f})")

result = {
    "cpu": cpu_model(),
    "torch_version": torch.__version__,
    "threads": args.threads,
    "blas_threads": nblas,
    "malloc": os.environ.get("GLIBC_TUNABLES", "default"),
    "tokens": T,
    "chunk": CH,
    "blas_libraries": blas_libs,
    "matmul_512_ms": mm_ms,
    "check_max_abs_err": {"token_autograd_vs_manual": err_a, "chunk_vs_frozen_loop": err_b},
    "token_autograd_tokens_per_s": tps_a,
    "chunk_manual_tokens_per_s": tps_b,
    "token_autograd_tokens_per_s_median": T / med_a,
    "chunk_manual_tokens_per_s_median": T / med_b,
}
if args.membound:
    mb = run_membound(args.membound)
    result["membound"] = None if mb is None else [
        {"name": n, "items_per_second": ips, "ratio_vs_token_autograd": ips / tps_a, "ratio_vs_chunk_manual": ips / tps_b}
        for n, ips in mb]
    for n, ips in mb or []:
        log(f"membound {n}: {ips:,.0f} tokens/s = {ips / tps_a:.1f}x (a), {ips / tps_b:.2f}x (b)")
if args.json:
    print(json.dumps(result))
