#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Decode tokens/s of one Llama-shaped model in eager PyTorch (transformers' LlamaForCausalLM) and in
membound's llm::model, in the same run, with the ratio printed.

Per model size the script writes a Hugging Face folder of random weights (fixed seed, f32) to
/tmp/membound_llm_compare_<size>/ with transformers' save_pretrained, then:
  - PyTorch (in a worker process with the thread settings made before torch is imported): the model
    from that folder, eval(), torch.inference_mode(), eager attention; a 64-token prompt prefilled
    with a DynamicCache, then decode steps of one token (model(input_ids, past_key_values=cache)),
    timed over --reps repetitions of at least --min-time/--reps seconds; tokens/s = 1 / median
    seconds per step. The cache is cropped back to 64 tokens when it reaches 128 (DynamicCache.crop,
    inside the timing), so the context stays between 64 and 128 as on membound's side.
  - membound: BIN (bench_llm) with MEMBOUND_LLM_MODEL=<the folder>, filter decode_model_T<threads>,
    --benchmark_repetitions=3; tokens/s = the median repetition (the same prompt of 64 tokens; its
    context is reset to 64 when it reaches 128).
Sizes: small (C 256, 4 layers, 8 heads / 4 KV heads of 32, MLP 704, vocabulary 8000: 7.3 M
parameters, where per-operator overhead dominates; target 3x) and big (C 2048, 6 layers, 16 / 8
heads of 128, MLP 5632, vocabulary 32000: 348 M parameters, 1.39 GB, beyond the last-level cache;
target 1.5x).

Threads: torch.set_num_threads(T) and OMP/MKL/OPENBLAS_NUM_THREADS=T, the worker pinned to CPUs
0..T-1 as bench_llm pins its rows. The PyPI torch of tools/requirements-llm.txt brings its own
MKL / oneDNN (no Debian BLAS is involved); with Debian's torch install libopenblas0-pthread first
(../shared/research/baselines.md).

Usage:
    .venv-llm/bin/python bench/compare/llm_pytorch.py --membound build/release/bench/bench_llm
        [--sizes small,big] [--threads 1,2] [--dtypes f32,bf16] [--min-time 3] [--reps 5]
With --dtypes bf16 the folder is written again in bf16 (<folder>_bf16, the f32 weights rounded to
nearest even): membound reads it as stored and widens in its kernels; PyTorch runs the model in
torch.bfloat16 (its CPU bf16 linear layers). The targets apply to f32.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SIZES = {
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4, head_dim=32,
                  intermediate_size=704, vocab_size=8000),
    "big": dict(hidden_size=2048, num_hidden_layers=6, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                intermediate_size=5632, vocab_size=32000),
}
PROMPT = 64


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_model(size):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    path = os.path.join(tempfile.gettempdir(), f"membound_llm_compare_{size}")
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    torch.manual_seed(0)
    cfg = LlamaConfig(max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False, **SIZES[size])
    model = LlamaForCausalLM(cfg).to(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.uniform_(-0.05, 0.05)
    model.save_pretrained(path)
    return path


def write_bf16_folder(src):
    """A bf16 copy of a folder: the f32 weights rounded to nearest even (torch's .to(bfloat16))."""
    import torch
    from transformers import AutoModelForCausalLM
    dst = src + "_bf16"
    if os.path.exists(os.path.join(dst, "config.json")):
        return dst
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(dst)
    return dst


def seconds_per_step(step, min_time, reps):
    """Median seconds per call of step(): 0.5 s of warm-up, then `reps` repetitions of at least
    min_time / reps seconds and 3 calls each."""
    t_end = time.perf_counter() + 0.5
    while time.perf_counter() < t_end:
        step()
    times = []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while True:
            step()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time / reps and n >= 3:
                break
        times.append(dt / n)
    return statistics.median(times)


def worker(args):
    threads = args.worker_threads
    os.sched_setaffinity(0, set(range(threads)))
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if args.worker_dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.worker_model, dtype=dtype, attn_implementation="eager").eval()
    vocab = model.config.vocab_size
    prompt = torch.tensor([[(i * 37) % vocab for i in range(PROMPT)]])
    tok = torch.tensor([[5]])
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(input_ids=prompt, past_key_values=cache, use_cache=True)

        def step():
            if cache.get_seq_length() >= 128:
                cache.crop(PROMPT)
            model(input_ids=tok, past_key_values=cache, use_cache=True)

        seconds = seconds_per_step(step, args.min_time, args.reps)
    print(json.dumps({"tokens_per_s": 1.0 / seconds, "torch": torch.__version__,
                      "params": sum(p.numel() for p in model.parameters())}))


def run_membound(binary, model_dir, threads):
    env = dict(os.environ, MEMBOUND_LLM_MODEL=model_dir)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([binary, f"--benchmark_filter=^decode_model_T{threads}/", "--benchmark_repetitions=3",
                        f"--benchmark_out={out.name}", "--benchmark_out_format=json"], env=env, check=True,
                       capture_output=True, text=True)
        runs = [b for b in json.load(open(out.name))["benchmarks"] if b.get("run_type") == "iteration"]
    return statistics.median(b["tokens/s"] for b in runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--membound", help="bench_llm binary")
    ap.add_argument("--sizes", default="small,big")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--dtypes", default="f32", help="f32 and/or bf16 (membound reads the bf16 folder as stored; "
                    "PyTorch runs the model in torch.bfloat16)")
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--worker-model", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-dtype", default="f32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_model:
        worker(args)
        return
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs", file=sys.stderr)
    print(f"{'model':6} {'dtype':5} {'threads':>7} {'params':>10} {'PyTorch tok/s':>14} {'membound tok/s':>15} "
          f"{'ratio':>7} {'target':>7}")
    for size in args.sizes.split(","):
        for dtype in args.dtypes.split(","):
            model_dir = write_model(size) if dtype == "f32" else write_bf16_folder(write_model(size))
            for threads in (int(t) for t in args.threads.split(",")):
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                           OPENBLAS_NUM_THREADS=str(threads))
                res = subprocess.run([args.python, __file__, "--worker-model", model_dir, "--worker-threads",
                                      str(threads), "--worker-dtype", dtype, "--min-time", str(args.min_time),
                                      "--reps", str(args.reps)], env=env, check=True, capture_output=True, text=True)
                pt = json.loads(res.stdout.strip().splitlines()[-1])
                mb = run_membound(args.membound, model_dir, threads) if args.membound else float("nan")
                target = {"small": 3.0, "big": 1.5}[size] if dtype == "f32" else float("nan")
                print(f"{size:6} {dtype:5} {threads:7d} {pt['params'] / 1e6:9.1f}M {pt['tokens_per_s']:14.2f} "
                      f"{mb:15.2f} {mb / pt['tokens_per_s']:7.2f} {target:7.1f}", flush=True)
    print(f"(PyTorch {pt['torch']}, eager attention; membound bench_llm decode_model_T*; the targets are for f32)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
