#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Decode tokens/s of one Llama-shaped model in llama.cpp (through llama-cpp-python, built here from
its PyPI source) and in membound's llm::model, on the same weights in f32 and bf16, in the same run,
with the ratio printed.

Models: the folders of bench/compare/llm_pytorch.py (random weights, fixed seed, written with
transformers under /tmp/membound_llm_compare_<size>/; "small" 7 M parameters, "big" 348 M + the
embedding, 1.66 GB in f32, beyond the last-level cache). For each size this script
  - writes a bf16 copy of the folder (the f32 weights rounded to nearest even, as torch's .to(bfloat16)),
    which membound reads as stored;
  - writes both as GGUF files for llama.cpp with the gguf-py package vendored in llama-cpp-python's
    source (architecture "llama", the tensor names and the q/k row permutation of llama.cpp's own
    convert_hf_to_gguf.py, norms in f32, matrices in f32 or bf16; a placeholder byte-level
    vocabulary of the model's size, since the models have no tokenizer and only token ids are fed);
  - checks that llama.cpp computes the same model: the last prompt position's logits against
    transformers' (max|d| / max|ref|, printed);
  - times llama.cpp: a 64-token prompt decoded in one batch, then one-token llama_decode calls, the
    cache cut back to 64 tokens (llama_memory_seq_rm) when it holds 128, as on membound's side;
    tokens/s = 1 / median seconds per step over --reps repetitions of at least --min-time/--reps s
    (wall clock around llama_decode, the Python call included: about 20 us of a 1-100 ms step);
  - times membound: BIN (bench_llm) with MEMBOUND_LLM_MODEL=<the folder>, decode_model_T<threads>,
    --benchmark_repetitions=3, median.
Threads: llama.cpp's n_threads = n_threads_batch = T, the worker pinned to CPUs 0..T-1 (bench_llm
pins its rows the same way); OMP_NUM_THREADS=T for both.

Setup (once; compiles llama.cpp, about 30 minutes on 2 cores; no network beyond PyPI): see
tools/requirements-llamacpp.txt (llama-cpp-python 0.3.36 in .venv-llamacpp, and its vendored gguf-py
added to .venv-llm).
Usage (from the repository root, under the venv of tools/requirements-llm.txt with gguf-py added):
    .venv-llm/bin/python bench/compare/llm_llamacpp.py --membound build/release/bench/bench_llm \\
        --llamacpp-python .venv-llamacpp/bin/python [--sizes small,big] [--threads 1,2] [--dtypes f32,bf16]
"""
import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm_pytorch  # noqa: E402  (the models, the CPU name, membound's runner)

PROMPT = 64


def permute_rows(w, n_head):
    """llama.cpp's LLAMA architecture rotates interleaved pairs; Hugging Face's rotates halves:
    convert_hf_to_gguf.py reorders the rows of q_proj and k_proj within each head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(folder, dtype):
    import numpy as np
    import gguf
    from safetensors.numpy import load_file
    path = os.path.join(folder, f"model-{dtype}.gguf")
    if os.path.exists(path):
        return path
    cfg = json.load(open(os.path.join(folder, "config.json")))
    H, G, L = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    V = cfg["vocab_size"]
    st = load_file(os.path.join(folder, "model.safetensors"))  # the f32 folder
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(G)
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_vocab_size(V)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_BF16)
    # a placeholder byte-level BPE vocabulary: the 256 byte symbols, then unique fillers
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    b2u = [chr(c) for _, c in sorted(zip(bs, cs))]
    tokens = b2u + [f"<t{i}>" for i in range(V - 256)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * V)
    w.add_token_merges([f"{b2u[ord('a')]} {b2u[ord('b')]}"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def put(name, t):
        t = np.ascontiguousarray(t, dtype=np.float32)
        if dtype == "bf16" and t.ndim == 2:
            w.add_tensor(name, gguf.quants.quantize(t, gguf.GGMLQuantizationType.BF16),
                         raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, t)

    put("token_embd.weight", st["model.embed_tokens.weight"])
    for l in range(L):
        p = f"model.layers.{l}."
        put(f"blk.{l}.attn_norm.weight", st[p + "input_layernorm.weight"])
        put(f"blk.{l}.attn_q.weight", permute_rows(st[p + "self_attn.q_proj.weight"], H))
        put(f"blk.{l}.attn_k.weight", permute_rows(st[p + "self_attn.k_proj.weight"], G))
        put(f"blk.{l}.attn_v.weight", st[p + "self_attn.v_proj.weight"])
        put(f"blk.{l}.attn_output.weight", st[p + "self_attn.o_proj.weight"])
        put(f"blk.{l}.ffn_norm.weight", st[p + "post_attention_layernorm.weight"])
        put(f"blk.{l}.ffn_gate.weight", st[p + "mlp.gate_proj.weight"])
        put(f"blk.{l}.ffn_up.weight", st[p + "mlp.up_proj.weight"])
        put(f"blk.{l}.ffn_down.weight", st[p + "mlp.down_proj.weight"])
    put("output_norm.weight", st["model.norm.weight"])
    put("output.weight", st["lm_head.weight"] if "lm_head.weight" in st else st["model.embed_tokens.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def prompt_ids(vocab):
    return [(i * 37) % vocab for i in range(PROMPT)]


def reference_logits(folder):
    """transformers' logits at the prompt's last position (f32 folder)."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids(model.config.vocab_size)]))
    return out.logits[0, -1].double().numpy()


def worker(args):
    """Runs under the llama-cpp-python venv: prints one JSON line."""
    threads = args.worker_threads
    os.sched_setaffinity(0, set(range(threads)))
    import llama_cpp as lc
    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    mp.use_mmap = True
    model = lc.llama_model_load_from_file(args.worker_model.encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp could not load {args.worker_model}")
    cp = lc.llama_context_default_params()
    cp.n_ctx = 256
    cp.n_batch = PROMPT
    cp.n_ubatch = PROMPT
    cp.n_threads = threads
    cp.n_threads_batch = threads
    ctx = lc.llama_init_from_model(model, cp)
    vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    mem = lc.llama_get_memory(ctx)
    ids = prompt_ids(vocab)
    arr = (lc.llama_token * PROMPT)(*ids)
    if lc.llama_decode(ctx, lc.llama_batch_get_one(arr, PROMPT)) != 0:
        raise SystemExit("llama_decode failed on the prompt")
    logits = lc.llama_get_logits_ith(ctx, -1)
    last = [logits[i] for i in range(vocab)]
    # one-token steps at positions 64..127, then the cache cut back to 64 tokens
    batch = lc.llama_batch_init(1, 0, 1)
    state = {"pos": PROMPT}

    def step():
        if state["pos"] >= 128:
            lc.llama_memory_seq_rm(mem, 0, PROMPT, -1)
            state["pos"] = PROMPT
        batch.n_tokens = 1
        batch.token[0] = 5
        batch.pos[0] = state["pos"]
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = 1
        if lc.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        state["pos"] += 1

    seconds = llm_pytorch.seconds_per_step(step, args.min_time, args.reps)
    lc.llama_batch_free(batch)
    print(json.dumps({"tokens_per_s": 1.0 / seconds, "last_logits": last,
                      "version": getattr(lc, "__version__", "?")}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--membound", help="bench_llm binary")
    ap.add_argument("--llamacpp-python", help="python of the venv with llama-cpp-python")
    ap.add_argument("--sizes", default="small,big")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--worker-model", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_model:
        worker(args)
        return
    import numpy as np
    print(f"machine: {llm_pytorch.cpu_model()}, {os.cpu_count()} CPUs", file=sys.stderr)
    print(f"{'model':6} {'dtype':5} {'threads':>7} {'llama.cpp tok/s':>16} {'membound tok/s':>15} {'ratio':>7} "
          f"{'logits d':>9}")
    version = "?"
    for size in args.sizes.split(","):
        f32_dir = llm_pytorch.write_model(size)
        ref = reference_logits(f32_dir)
        for dtype in args.dtypes.split(","):
            folder = f32_dir if dtype == "f32" else llm_pytorch.write_bf16_folder(f32_dir)
            gguf_path = write_gguf(f32_dir, dtype)
            for threads in (int(t) for t in args.threads.split(",")):
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                res = subprocess.run([args.llamacpp_python, __file__, "--worker-model", gguf_path, "--worker-threads",
                                      str(threads), "--min-time", str(args.min_time), "--reps", str(args.reps)],
                                     env=env, check=True, capture_output=True, text=True)
                lc = json.loads(res.stdout.strip().splitlines()[-1])
                version = lc["version"]
                d = float(np.max(np.abs(np.array(lc["last_logits"]) - ref)) / np.max(np.abs(ref)))
                mb = llm_pytorch.run_membound(args.membound, folder, threads) if args.membound else float("nan")
                print(f"{size:6} {dtype:5} {threads:7d} {lc['tokens_per_s']:16.2f} {mb:15.2f} "
                      f"{mb / lc['tokens_per_s']:7.2f} {d:9.1e}", flush=True)
    print(f"(llama-cpp-python {version}, its vendored llama.cpp built with GGML_NATIVE; membound bench_llm "
          f"decode_model_T*; target ratio 1.0; 'logits d': llama.cpp's last-position logits against transformers' "
          f"f32, max|d| / max|ref|)", file=sys.stderr)


if __name__ == "__main__":
    main()
