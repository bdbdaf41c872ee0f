#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Training tokens/s of one byte-level Llama in PyTorch (transformers' LlamaForCausalLM) and in
membound's llm::trainer, in the same run, with the ratio printed.

The model is the embedded default model's shape (C 256, 6 layers, 8 heads / 4 KV heads of 32, MLP
704, vocabulary 257, untied: 4.6 M parameters), written once with transformers' save_pretrained
(seed 0) to /tmp/membound_train_compare/. One training step on B sequences of T tokens is, on
both sides: forward, mean next-token cross-entropy, backward, global gradient-norm clipping at 1,
AdamW (lr 1e-3, betas 0.9 / 0.95, weight decay 0.1) and zeroing the gradients.
  - PyTorch (a worker process whose thread settings are made before torch is imported): the folder
    loaded in f32, train(); both attention implementations that run on the CPU, "eager" and "sdpa"
    (torch's scaled_dot_product_attention), each timed; the faster is the baseline. The optimiser
    is torch.optim.AdamW with its default (foreach) implementation. Timing: --warmup steps, then
    --reps steps, tokens/s = B T / median seconds per step.
  - membound: BIN (bench_llm) with MEMBOUND_TRAIN_MODEL=<the folder>, filter train_model_T<threads>
    (llm::trainer::step: the same five parts; median of 3 repetitions of at least 2 s).
The data are random bytes (the work does not depend on them).

Threads: torch.set_num_threads(T) and OMP/MKL/OPENBLAS_NUM_THREADS=T, the worker pinned to CPUs
0..T-1 as bench_llm pins its rows. The PyPI torch of tools/requirements-llm.txt brings its own
MKL / oneDNN; with Debian's torch 1.13 (no transformers 5 there) install libopenblas0-pthread first
(../shared/research/baselines.md). Target (issue 15): membound >= 1.5x the faster PyTorch.

Usage:
    .venv-llm/bin/python bench/compare/train_pytorch.py --membound build/release/bench/bench_llm
        [--threads 1,2] [--batch 8] [--tokens 1024] [--reps 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baseline_env import cpu_model, run_benchmark_json  # noqa: E402

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SHAPE = dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4, head_dim=32,
             intermediate_size=704, vocab_size=257, max_position_embeddings=1024, rms_norm_eps=1e-5,
             tie_word_embeddings=False)


def write_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    path = os.path.join(tempfile.gettempdir(), "membound_train_compare")
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SHAPE)).to(torch.float32).save_pretrained(path)
    return path


def worker(args):
    threads = args.worker_threads
    os.sched_setaffinity(0, set(range(threads)))
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    B, T = args.batch, args.tokens
    data = torch.randint(0, 256, (B, T), dtype=torch.long)
    out = {"torch": torch.__version__}
    for attn in ("eager", "sdpa"):
        model = AutoModelForCausalLM.from_pretrained(args.worker_model, dtype=torch.float32, attn_implementation=attn)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)

        def step():
            loss = model(input_ids=data, labels=data).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=False)

        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out[attn] = B * T / statistics.median(times)
        out["params"] = sum(p.numel() for p in model.parameters())
    print(json.dumps(out))


def run_membound(binary, model_dir, threads, batch, tokens):
    env = dict(os.environ, MEMBOUND_TRAIN_MODEL=model_dir, MEMBOUND_TRAIN_BATCH=str(batch), MEMBOUND_TRAIN_TOKENS=str(tokens))
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        data, _ = run_benchmark_json([binary, f"--benchmark_filter=^train_model_T{threads}/", "--benchmark_repetitions=3",
                                      f"--benchmark_out={out.name}", "--benchmark_out_format=json"], out.name,
                                     lambda msg: print(msg, file=sys.stderr), env)
    if data is None:
        return float("nan")
    return statistics.median(b["tokens/s"] for b in data["benchmarks"] if b.get("run_type") == "iteration")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--membound", help="bench_llm binary")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--worker-model", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_model:
        worker(args)
        return
    model_dir = write_model()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; batch {args.batch} x {args.tokens} tokens", file=sys.stderr)
    print(f"{'threads':>7} {'eager tok/s':>12} {'sdpa tok/s':>11} {'membound tok/s':>15} {'ratio':>7} {'target':>7}")
    pt = {}
    for threads in (int(t) for t in args.threads.split(",")):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads))
        res = subprocess.run([args.python, __file__, "--worker-model", model_dir, "--worker-threads", str(threads),
                              "--batch", str(args.batch), "--tokens", str(args.tokens), "--warmup", str(args.warmup),
                              "--reps", str(args.reps)], env=env, check=True, capture_output=True, text=True)
        pt = json.loads(res.stdout.strip().splitlines()[-1])
        best = max(pt["eager"], pt["sdpa"])
        mb = run_membound(args.membound, model_dir, threads, args.batch, args.tokens) if args.membound else float("nan")
        print(f"{threads:7d} {pt['eager']:12.0f} {pt['sdpa']:11.0f} {mb:15.0f} {mb / best:7.2f} {1.5:7.1f}", flush=True)
    print(f"(PyTorch {pt.get('torch')}, {pt.get('params', 0) / 1e6:.2f} M parameters; ratio = membound / the faster "
          "PyTorch attention)", file=sys.stderr)


if __name__ == "__main__":
    main()
