#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch CPU baseline for membound's EfficientViT-M0..M5 (timm's efficientvit_msra models, the
project's PyTorch baseline notes, baselines.md section 1), timed in the same run as membound's
bench_vision binary, with the ratios printed.

PyTorch side, per model efficientvit_m0..m5 and batch (224x224 float32 images, random weights):
  timm.create_model(name, pretrained=False).eval(); BatchNorm statistics and affine parameters
  drawn at random (fixed seed) so that the fusion check means something; every ConvNorm /
  NormLinear folded by its fuse() (replace_batchnorm, as the official Cream code); then the
  fastest form PyTorch offers on CPU: torch.jit.trace (under no_grad) + torch.jit.freeze +
  torch.jit.optimize_for_inference (oneDNN layout, conv-BN folding). Each step falls back to the
  previous form when it fails or its output disagrees with the eager model (reported). With
  --form best (default) trace+freeze and trace+freeze+optimize_for_inference are both screened
  in 3 interleaved short rounds and the faster one is timed: the baseline notes found trace+freeze ahead at batch 1
  in some processes. Everything runs under torch.inference_mode(), denormals flushed to zero
  (--no-flush-denormal to keep them).
  Timing: warm-up for --warmup seconds (at least 3 calls), then --reps repetitions of at least
  --min-time/--reps seconds and --min-calls calls each (or, when calls crawl because another
  process holds the CPUs, 5x that time and at least one call); images/s = batch / median time per
  call.

Each thread setting runs in its own worker process (this script with --worker, under --python,
default: this interpreter), because OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS must
be set before torch is imported. The worker calls torch.set_num_threads(T), sets OpenBLAS's thread
count through ctypes as well (Debian's torch.set_num_threads does not reach it) and pins itself to
CPUs 0..T-1, the CPUs bench_vision's rows use. OpenBLAS gets 1 thread by default (--blas-threads):
baselines.md found torch 2 / OpenBLAS 2 oversubscribing 2 cores and erratic for EfficientViT.
Like baselines.md ("tuned" malloc) both sides run with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=
4294967296:glibc.malloc.trim_threshold=17179869184 unless GLIBC_TUNABLES is already set or
--default-malloc is given.

membound side (--membound BIN, e.g. build/release/bench/bench_vision): right after each thread
setting's PyTorch worker, BIN runs with --benchmark_filter selecting probe_fma and the rows
efficientvit_m{i}_b{B}_t{T} of that setting, --benchmark_repetitions=N (--membound-repetitions,
default 3) and its JSON written to a temporary file; the median over the repetitions of each row's
images/s counter is compared with PyTorch's median (the best repetitions go to --json). probe_fma's
FLOP/s and each row's FLOP/s are printed for context.

Usage:
    .venv-vision/bin/python bench/compare/vision_pytorch.py --membound build/release/bench/bench_vision
        [--models m0,m4] [--batches 1,16] [--threads 1,2] [--min-time 2] [--skip-membound]
        [--python /path/to/other/venv/bin/python] [--json]

--python picks the interpreter that runs the PyTorch worker (it needs torch and timm; timm runs on
Debian's torch 1.13, see tools/requirements-vision.txt); the script itself imports neither. The
machine's load from other processes during each phase is printed: the VM is shared, and the
baseline notes saw the same PyTorch model vary by up to 2x between processes, so compare figures
of the same run. --json prints one JSON object on stdout (human-readable lines go to stderr).
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baseline_env  # noqa: E402
from baseline_env import cpu_model, set_openblas_threads  # noqa: E402

TUNED_MALLOC = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184"
RESULT_TAG = "VISION_PYTORCH_RESULT "
ROW_RE = re.compile(r"^efficientvit_m(\d+)_b(\d+)_t(\d+)$")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def int_list(text):
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def model_list(text):
    out = []
    for v in text.split(","):
        v = v.strip().lower()
        if not v:
            continue
        m = re.fullmatch(r"(?:efficientvit_)?m?(\d)", v)
        if not m or int(m.group(1)) > 5:
            raise argparse.ArgumentTypeError(f"unknown model {v!r} (expected m0..m5)")
        out.append(int(m.group(1)))
    if not out:
        raise argparse.ArgumentTypeError("no model given")
    return sorted(set(out), key=out.index)


ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--models", type=model_list, default=list(range(6)), help="e.g. m0,m4 (default m0..m5)")
ap.add_argument("--batches", type=int_list, default=[1, 16], help="default 1,16")
ap.add_argument("--threads", type=int_list, default=[1, 2], help="thread settings (default 1,2)")
ap.add_argument("--blas-threads", default="1",
                help="OpenBLAS threads per worker: a number, or 'same' for the torch thread count (default 1)")
ap.add_argument("--min-time", type=float, default=2.0, help="timed seconds per case, all repetitions (default 2)")
ap.add_argument("--reps", type=int, default=5, help="timed repetitions per case; the median is reported (default 5)")
ap.add_argument("--min-calls", type=int, default=4, help="at least this many calls per repetition (default 4)")
ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per case (default 1)")
ap.add_argument("--screen-time", type=float, default=0.45,
                help="seconds each candidate form is timed for by --form best, in 3 interleaved rounds (default 0.45)")
ap.add_argument("--form", choices=["best", "optimized", "frozen", "traced", "eager"], default="best",
                help="PyTorch form to time: best (default) = the faster of frozen and optimized; "
                     "optimized = trace+freeze+optimize_for_inference; frozen = trace+freeze; "
                     "traced = trace; eager = eager with BatchNorms fused. Falls back when a step fails")
ap.add_argument("--python", default=sys.executable, help="interpreter for the PyTorch worker (default: this one)")
ap.add_argument("--membound", metavar="BIN", default=None, help="membound bench_vision binary")
ap.add_argument("--membound-repetitions", type=int, default=3, help="--benchmark_repetitions for BIN (default 3)")
ap.add_argument("--skip-membound", action="store_true", help="PyTorch only, even when --membound is given")
ap.add_argument("--show-membound", action="store_true", help="print the binary's own console output")
ap.add_argument("--no-pin", action="store_true", help="do not pin the worker to CPUs 0..T-1")
ap.add_argument("--no-flush-denormal", action="store_true", help="keep denormals in PyTorch")
ap.add_argument("--default-malloc", action="store_true", help="do not set the tuned GLIBC_TUNABLES")
ap.add_argument("--seed", type=int, default=20250601)
ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
args = ap.parse_args()
if args.reps < 1 or args.min_calls < 1 or args.min_time <= 0:
    ap.error("--reps, --min-calls and --min-time must be positive")
if args.blas_threads != "same" and not args.blas_threads.isdigit():
    ap.error("--blas-threads must be a number or 'same'")
if args.worker and len(args.threads) != 1:
    ap.error("--worker takes one --threads value")

LOG = sys.stderr if (args.json or args.worker) else sys.stdout


def log(*a):
    print(*a, file=LOG, flush=True)


def blas_count(threads):
    return threads if args.blas_threads == "same" else int(args.blas_threads)


# ================================================================================================
# worker: one thread setting, every model and batch, one JSON line on stdout
# ================================================================================================
def worker():
    T = args.threads[0]
    nblas = blas_count(T)
    # Normally set by the parent already; set here too so that a hand-run worker is right.
    os.environ["OPENBLAS_NUM_THREADS"] = str(nblas)
    os.environ["OMP_NUM_THREADS"] = str(T)
    os.environ["MKL_NUM_THREADS"] = str(T)
    pinned = None
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpus = set(range(T))
        if cpus <= os.sched_getaffinity(0):
            os.sched_setaffinity(0, cpus)
            pinned = sorted(cpus)

    import gc
    import warnings

    try:
        import torch
        import timm
    except ImportError as exc:
        log(f"error: {sys.executable} cannot import torch and timm ({exc}). Debian's python3 has torch 1.13 "
            "but not timm: use the venv of tools/requirements-vision.txt (.venv-vision/bin/python, which "
            "sees Debian's torch), or a venv with its own torch and timm.")
        sys.exit(3)

    torch.set_num_threads(T)
    flush = False
    if not args.no_flush_denormal:
        flush = bool(torch.set_flush_denormal(True))

    def mapped_blas():
        return baseline_env.mapped_blas(extra=("dnnl",))

    def openblas_threads():
        return set_openblas_threads(nblas)

    def blas_check():
        return baseline_env.blas_check(torch, log)[0]

    def replace_batchnorm(net):
        """Replaces, depth first, every child that has a fuse() method (timm's ConvNorm and
        NormLinear) by fuse()'s result, as the official Cream code's replace_batchnorm.
        Returns the number of modules replaced."""
        n = 0
        for name, child in net.named_children():
            if callable(getattr(child, "fuse", None)):
                setattr(net, name, child.fuse())
                n += 1
            else:
                n += replace_batchnorm(child)
        return n

    def randomize_bn(net, gen):
        for mod in net.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                c = mod.num_features
                with torch.no_grad():
                    mod.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                    mod.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                    mod.weight.copy_(0.5 + torch.rand(c, generator=gen))
                    mod.bias.copy_(0.1 * torch.randn(c, generator=gen))

    def rel_err(out, ref):
        return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()

    def check(fn, x, ref):
        """Runs fn twice (the JIT profiles the first calls); relative max error against ref."""
        with torch.inference_mode():
            fn(x)
            out = fn(x)
        if not torch.isfinite(out).all():
            return float("inf")
        return rel_err(out, ref)

    def build_forms(model, x, want):
        """The forms up to `want`, each checked against the eager model; notes on failures."""
        order = ["eager", "traced", "frozen", "optimized"]
        need = order[: order.index("optimized" if want == "best" else want) + 1]
        with torch.no_grad():
            ref = model(x)
        forms, notes, errs = {"eager": model}, [], {}
        tol = 1e-4

        def attempt(name, make):
            try:
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    mod = make()
                    err = check(mod, x, ref)
                tracer_warnings = sum(1 for i in w if "Tracer" in type(i.message).__name__)
                if tracer_warnings:
                    kinds = sorted({str(i.message).split(".")[0][:90] for i in w if "Tracer" in type(i.message).__name__})
                    notes.append(f"{name}: {tracer_warnings} TracerWarning(s) ({'; '.join(kinds)})")
            except Exception as exc:  # noqa: BLE001 - any failure means: fall back
                notes.append(f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
                return None
            errs[name] = err
            if not err <= tol:
                notes.append(f"{name} rejected: relative max error {err:.1e} against eager")
                return None
            forms[name] = mod
            return mod

        traced = None
        if "traced" in need:
            with torch.no_grad():
                traced = attempt("traced", lambda: torch.jit.trace(model, x, check_trace=False))
        if traced is not None and "frozen" in need:
            attempt("frozen", lambda: torch.jit.freeze(traced))
        if traced is not None and "optimized" in need:
            # optimize_for_inference rewrites its argument in place: give it its own frozen copy.
            attempt("optimized", lambda: torch.jit.optimize_for_inference(torch.jit.freeze(traced)))
        if want not in ("best", "eager") and want not in forms:
            notes.append(f"{want} unavailable; timing {list(forms)[-1]}")
        return forms, notes, errs

    def run_for(fn, x, seconds, min_calls):
        """Seconds per call over back-to-back calls for >= seconds and >= min_calls calls, or
        (when another process takes the CPUs and calls crawl) for at least one call and 5x seconds."""
        n, t0 = 0, time.perf_counter()
        while True:
            fn(x)
            n += 1
            el = time.perf_counter() - t0
            if (el >= seconds and n >= min_calls) or el >= 5 * seconds:
                return el / n

    def screen_forms(cands, forms, x):
        """Best seconds per call of each candidate over 3 interleaved rounds (a burst of load
        from another process then hits both candidates rather than one)."""
        best = {}
        with torch.inference_mode():
            for _ in range(3):
                for f in cands:
                    s = run_for(forms[f], x, args.screen_time / 3, 1)
                    best[f] = min(best.get(f, s), s)
        return best

    def measure(fn, x):
        with torch.inference_mode():
            run_for(fn, x, args.warmup, 3)
            per = [run_for(fn, x, args.min_time / args.reps, args.min_calls) for _ in range(args.reps)]
        return per

    result = {
        "torch_version": torch.__version__,
        "torch_file": torch.__file__,
        "timm_version": timm.__version__,
        "python": sys.executable,
        "threads": T,
        "torch_threads": torch.get_num_threads(),
        "openblas_threads": openblas_threads(),
        "pinned_cpus": pinned,
        "flush_denormal": flush,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "matmul_512_ms": blas_check() * 1e3,
        "blas_libraries": mapped_blas(),
        "malloc": os.environ.get("GLIBC_TUNABLES", "default"),
        "rows": [],
    }
    log(f"[worker t={T}] torch {torch.__version__} ({torch.__file__}), timm {timm.__version__}; threads torch "
        f"{result['torch_threads']} / OpenBLAS {result['openblas_threads']}; pinned to CPUs {pinned}; "
        f"flush denormal {flush}; 512^3 matmul {result['matmul_512_ms']:.2f} ms")
    gen = torch.Generator().manual_seed(args.seed)
    for mi in args.models:
        name = f"efficientvit_m{mi}"
        t_prep = time.perf_counter()
        model = timm.create_model(name, pretrained=False).eval()
        randomize_bn(model, gen)
        x2 = torch.randn(2, 3, 224, 224, generator=gen)
        with torch.no_grad():
            ref_unfused = model(x2)
            n_fused = replace_batchnorm(model)
            fuse_err = rel_err(model(x2), ref_unfused)
        left = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        log(f"[worker t={T}] {name}: {n_fused} ConvNorm/NormLinear fused, {left} BatchNorm left, "
            f"fused vs unfused relative max error {fuse_err:.1e}")
        if not fuse_err <= 1e-4:
            log(f"WARNING: {name}: BatchNorm fusion changed the output (relative error {fuse_err:.1e})")
        for B in args.batches:
            x = torch.randn(B, 3, 224, 224, generator=gen)
            t0 = time.perf_counter()
            forms, notes, errs = build_forms(model, x, args.form)
            prep_s = time.perf_counter() - t0
            screen = {}
            if args.form == "best":
                cands = [f for f in ("optimized", "frozen") if f in forms] or [list(forms)[-1]]
                if len(cands) > 1:
                    screen = screen_forms(cands, forms, x)
                    chosen = min(cands, key=screen.get)
                else:
                    chosen = cands[0]
            else:
                chosen = args.form if args.form in forms else list(forms)[-1]
            fn = forms[chosen]
            for f in [f for f in forms if f not in (chosen, "eager")]:
                forms[f] = None
            gc.collect()
            per = measure(fn, x)
            med, best = statistics.median(per), min(per)
            row = {
                "model": f"m{mi}", "batch": B, "threads": T, "form": chosen,
                "images_per_s": B / med, "images_per_s_best": B / best,
                "ms_per_call_reps": [p * 1e3 for p in per],
                "screen_images_per_s": {f: B / s for f, s in screen.items()},
                "check_rel_err": errs, "notes": notes, "prepare_s": prep_s,
                "fused_modules": n_fused, "batchnorm_left": left, "fuse_rel_err": fuse_err,
            }
            result["rows"].append(row)
            scr = ", ".join(f"{f} {B / s:.1f}" for f, s in screen.items())
            log(f"[worker t={T}] {name} b={B}: {B / med:8.1f} images/s (best {B / best:.1f}; {chosen}"
                f"{'; screen ' + scr if scr else ''}; prepared in {prep_s:.1f} s)"
                + "".join(f"\n    note: {n}" for n in notes))
            del fn, forms
            gc.collect()
        del model
        gc.collect()
        result.setdefault("prepare_model_s", {})[name] = time.perf_counter() - t_prep
    print(RESULT_TAG + json.dumps(result), flush=True)


# ================================================================================================
# parent
# ================================================================================================
def busy_seconds():
    """Busy CPU seconds of the whole machine so far (all CPUs), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Load:
    """Average number of cores other processes kept busy between start() and stop()."""

    def __init__(self):
        self.b0, self.c0, self.s0 = busy_seconds(), children_cpu(), resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()

    def stop(self):
        b1, c1, s1 = busy_seconds(), children_cpu(), resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - self.t0
        if self.b0 is None or b1 is None or wall <= 0:
            return None
        own = (c1 - self.c0) + (s1.ru_utime - self.s0.ru_utime) + (s1.ru_stime - self.s0.ru_stime)
        return max(0.0, (b1 - self.b0 - own) / wall)


def run_worker(T, env):
    cmd = [args.python, os.path.abspath(__file__), "--worker", "--threads", str(T),
           "--models", ",".join(f"m{m}" for m in args.models),
           "--batches", ",".join(map(str, args.batches)), "--blas-threads", args.blas_threads,
           "--min-time", str(args.min_time), "--reps", str(args.reps), "--min-calls", str(args.min_calls),
           "--warmup", str(args.warmup), "--screen-time", str(args.screen_time), "--form", args.form,
           "--seed", str(args.seed)]
    cmd += ["--no-pin"] if args.no_pin else []
    cmd += ["--no-flush-denormal"] if args.no_flush_denormal else []
    # stderr (the worker's progress lines) passes through; stdout carries the result line.
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    for line in res.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    out = res.stdout.strip()
    log(f"PyTorch worker for {T} thread(s) failed (exit status {res.returncode})" + (f"; its stdout:\n{out}" if out else ""))
    return None


def membound_filter(threads):
    models = "|".join(f"m{m}" for m in args.models)
    batches = "|".join(map(str, args.batches))
    thr = "|".join(map(str, threads))
    return f"^(probe_fma|efficientvit_({models})_b({batches})_t({thr}))(/|$)"


def parse_membound(data):
    """{base name: {counter: [values of the repetitions]}} for probe_fma and the efficientvit rows
    of a Google Benchmark JSON document; aggregates are recomputed here, errors reported."""
    runs, errors = {}, {}
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        base = b.get("run_name", b.get("name", "")).split("/")[0]
        if base != "probe_fma" and not ROW_RE.match(base):
            continue
        if b.get("error_occurred"):
            errors[base] = b.get("error_message", "error")
            continue
        for counter in ("images/s", "FLOP/s"):
            if counter in b:
                runs.setdefault(base, {}).setdefault(counter, []).append(float(b[counter]))
    return runs, errors


def run_membound(path, threads, env):
    """Runs bench_vision for the requested rows of the given thread settings; returns
    ({base name: {counter: [values]}}, context dict) or None."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        log(f"membound: {path} does not exist or is not executable; skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "bench_vision.json")
        cmd = [path, f"--benchmark_filter={membound_filter(threads)}",
               f"--benchmark_repetitions={args.membound_repetitions}",
               f"--benchmark_out={out_json}", "--benchmark_out_format=json"]
        log("membound: " + " ".join(cmd))
        data, res = baseline_env.run_benchmark_json(cmd, out_json, log, env)
        if args.show_membound:
            log(res.stdout.rstrip())
        if data is None:
            return None
    runs, errors = parse_membound(data)
    for n, e in errors.items():
        log(f"membound: {n}: {e}")
    if not runs:
        log("membound: no probe_fma or efficientvit_m*_b*_t* row in the output")
    return runs, data.get("context", {})


def find_pypi_torch():
    """venvs beside the repository with a pip-installed torch (not Debian's)."""
    found = []
    try:
        names = sorted(os.listdir(REPO))
    except OSError:
        return found
    for d in names:
        lib = os.path.join(REPO, d, "lib")
        if not (d.startswith(".venv") or d.startswith("venv")) or not os.path.isdir(lib):
            continue
        for py in sorted(os.listdir(lib)):
            if os.path.isdir(os.path.join(lib, py, "site-packages", "torch")):
                found.append(os.path.join(REPO, d, "bin", "python"))
    return found


def fmt(v, spec):
    """v formatted by spec, or a '-' as wide as spec's width when v is missing."""
    if v is not None:
        return format(v, spec)
    width = re.match(r"\d*", spec).group(0)
    return format("-", f">{width}") if width else "-"


def parent():
    t_start = time.perf_counter()
    env = dict(os.environ)
    if not args.default_malloc and "GLIBC_TUNABLES" not in env:
        env["GLIBC_TUNABLES"] = TUNED_MALLOC
    malloc = "tuned" if env.get("GLIBC_TUNABLES") == TUNED_MALLOC else env.get("GLIBC_TUNABLES", "default")
    use_membound = bool(args.membound) and not args.skip_membound
    log(f"cpu: {cpu_model()}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; malloc {malloc}")
    log(f"PyTorch worker: {args.python}")
    if not (os.path.isfile(args.python) and os.access(args.python, os.X_OK)):
        log(f"error: --python {args.python} is not an executable file")
        return 2
    if args.membound and not use_membound:
        log("membound: skipped (--skip-membound)")
    elif not args.membound:
        log("membound: no --membound BIN given; PyTorch figures only")

    result = {"cpu": cpu_model(), "malloc": env.get("GLIBC_TUNABLES", "default"), "python": args.python,
              "pytorch": {}, "membound": {}, "membound_context": None, "load": {}, "rows": []}
    py_rows, mb_runs = {}, {}
    for T in args.threads:
        wenv = dict(env, OPENBLAS_NUM_THREADS=str(blas_count(T)), OMP_NUM_THREADS=str(T), MKL_NUM_THREADS=str(T))
        if T > (os.cpu_count() or 1):
            log(f"note: {T} threads on {os.cpu_count()} CPUs")
        load = Load()
        w = run_worker(T, wenv)
        other = load.stop()
        result["load"][f"pytorch_t{T}"] = other
        if other is not None:
            log(f"[t={T}] other processes kept {other:.2f} cores busy during the PyTorch timings")
        if w is not None:
            result["pytorch"][str(T)] = {k: v for k, v in w.items() if k != "rows"}
            for r in w["rows"]:
                py_rows[(r["model"], r["batch"], r["threads"])] = r
        if use_membound:
            load = Load()
            mb = run_membound(args.membound, [T], env)
            other = load.stop()
            result["load"][f"membound_t{T}"] = other
            if other is not None:
                log(f"[t={T}] other processes kept {other:.2f} cores busy during the membound run")
            if mb is not None:
                runs, ctx = mb
                result["membound_context"] = result["membound_context"] or ctx
                for n, c in runs.items():
                    key = f"{n}@t{T}" if n == "probe_fma" else n
                    mb_runs[key] = c

    # ---- report ----
    pt = next(iter(result["pytorch"].values()), None)
    lines = [f"cpu: {cpu_model()} ({os.cpu_count()} CPUs)"]
    if pt:
        debian = pt["torch_file"].startswith("/usr/lib/python3/")
        lines.append(f"torch {pt['torch_version']} ({'Debian' if debian else 'pip'}: {pt['torch_file']}), "
                     f"timm {pt['timm_version']}, oneDNN {'yes' if pt['mkldnn'] else 'no'}, malloc {malloc}, "
                     f"flush denormal {pt['flush_denormal']}; OpenBLAS threads "
                     + ", ".join(f"{v['openblas_threads']} (t={t})" for t, v in result["pytorch"].items()))
        others = [p for p in find_pypi_torch() if os.path.realpath(p) != os.path.realpath(args.python)]
        if debian:
            lines.append("PyPI torch: " + (f"venv(s) with a pip-installed torch found, not used: {', '.join(others)} "
                                           "(rerun with --python one of them)" if others else
                                           "no venv with a pip-installed torch found beside the repository; these "
                                           "are Debian's torch 1.13 figures (--python VENV/bin/python for a newer torch)"))
    ctx = result["membound_context"]
    if ctx:
        lines.append("membound: " + "; ".join(f"{k} {ctx[k]}" for k in
                                              ("cpu_model", "isa_compiled_for", "onednn_max_isa", "membound_cpu_backend")
                                              if k in ctx))
    probes = {k.split("@t")[1]: statistics.median(v["FLOP/s"]) for k, v in mb_runs.items()
              if k.startswith("probe_fma@") and v.get("FLOP/s")}
    if probes:
        lines.append("probe_fma (1 core, median): " + ", ".join(f"{v / 1e9:.1f} GFLOP/s (run for t={t})"
                                                               for t, v in probes.items()))
    lines.append("")
    hdr = (f"{'model':<6} {'batch':>5} {'thr':>3} {'PyTorch img/s':>13} {'PyTorch form':<10} "
           f"{'membound img/s':>14} {'membound/PyTorch':>16} {'mb GFLOP/s':>10} {'mb/probe':>8}")
    lines += [hdr, "-" * len(hdr)]
    for mi in args.models:
        for B in args.batches:
            for T in args.threads:
                r = py_rows.get((f"m{mi}", B, T))
                name = f"efficientvit_m{mi}_b{B}_t{T}"
                mb = mb_runs.get(name, {})
                mb_ips = statistics.median(mb["images/s"]) if mb.get("images/s") else None
                mb_fl = statistics.median(mb["FLOP/s"]) if mb.get("FLOP/s") else None
                probe = probes.get(str(T))
                py_ips = r["images_per_s"] if r else None
                ratio = mb_ips / py_ips if (mb_ips and py_ips) else None
                frac = mb_fl / probe if (mb_fl and probe) else None
                form = r["form"] if r else "-"
                lines.append(f"{'m' + str(mi):<6} {B:>5} {T:>3} {fmt(py_ips, '13.1f')} {form:<10} "
                             f"{fmt(mb_ips, '14.1f')} {fmt(ratio, '15.2f') + ('x' if ratio is not None else ' ')} "
                             f"{fmt(mb_fl / 1e9 if mb_fl else None, '10.1f')} {fmt(frac, '8.2f')}")
                result["rows"].append({
                    "model": f"m{mi}", "batch": B, "threads": T, "pytorch": r,
                    "membound_images_per_s": mb_ips,
                    "membound_images_per_s_best": max(mb["images/s"]) if mb.get("images/s") else None,
                    "membound_images_per_s_reps": mb.get("images/s"),
                    "membound_flop_per_s": mb_fl, "membound_vs_probe_fma": frac, "ratio_membound_vs_pytorch": ratio,
                })
    lines.append("")
    lines.append("PyTorch img/s: median of the timed repetitions; membound img/s: median of "
                 f"{args.membound_repetitions} repetitions; mb/probe: membound FLOP/s over probe_fma's (1 core).")
    loads = {k: v for k, v in result["load"].items() if v is not None}
    if loads:
        lines.append("other processes' load (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in loads.items()))
    lines.append(f"total run time {time.perf_counter() - t_start:.0f} s")
    result["probe_fma_flop_per_s"] = probes
    log("\n".join(lines))
    if args.json:
        print(json.dumps(result))
    return 0 if result["pytorch"] else 1


if __name__ == "__main__":
    if args.worker:
        worker()
    else:
        sys.exit(parent())
