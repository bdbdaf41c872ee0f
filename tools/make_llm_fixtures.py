#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tiny random Hugging Face decoder models plus reference outputs to tests/fixtures/llm/<case>/.

Each case folder holds what `model.save_pretrained` writes (config.json, model.safetensors or shards plus
model.safetensors.index.json, generation_config.json for some cases) and reference.safetensors (f32/i64):

    prompt          int64   (T,)        T = 13 token ids in [0, V)
    prefill_logits  float32 (T, V)      one forward pass over the prompt
    generated       int64   (N,)        N = 8 greedy tokens (argmax, no eos stop), decoded with the KV cache
    decode_logits   float32 (N, V)      row 0: logits at the last prompt position; row i: after generated[i-1]
    batch_prompt    int64   (2, 7)      two independent sequences, no padding
    batch_logits    float32 (2, 7, V)   forward pass logits of the batch

All references are computed in float32 with eager attention from the weights as saved (bf16/f16 cases:
the weights are rounded to bf16/f16, saved in that dtype, and cast back to f32 for the reference).
Cases llama_rope_linear, qwen2 and mistral get their config.json rewritten to the legacy Hub layout
(top-level rope_theta + rope_scaling) instead of transformers 5's rope_parameters; every case is reloaded
with AutoModelForCausalLM.from_pretrained and must reproduce the prefill logits.

Run from the repository root (CPU only, a few seconds; deterministic, reruns write identical files):

    /usr/bin/python3 -m venv .venv-llm && .venv-llm/bin/pip install -r tools/requirements-llm.txt
    .venv-llm/bin/python tools/make_llm_fixtures.py [CASE ...]   # default: every case
"""
import copy
import json
import sys
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, GenerationConfig, LlamaConfig, MistralConfig, Qwen2Config,
                          Qwen3Config)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "llm"
T, N, V = 13, 8, 160
MIN_MARGIN = 0.02  # smallest top-1 minus top-2 logit gap allowed in decode_logits
BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, vocab_size=V, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)


def rope(theta, rope_type="default", **kw):
    return {"rope_parameters": dict(rope_type=rope_type, rope_theta=theta, **kw)}


# name: (config class, config kwargs, saved dtype, legacy config.json, save_pretrained kwargs, write gen config)
CASES = {
    "llama_gqa": (LlamaConfig, rope(10000.0), torch.float32, False, {}, True),
    "llama_tied_bf16": (LlamaConfig, dict(tie_word_embeddings=True, **rope(10000.0)), torch.bfloat16, False, {},
                        True),
    "llama_rope_linear": (LlamaConfig, rope(10000.0, "linear", factor=2.0), torch.float32, True, {}, False),
    "llama_rope_llama3": (LlamaConfig, dict(num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                            attention_bias=True, mlp_bias=True,
                                            **rope(500000.0, "llama3", factor=8.0, low_freq_factor=1.0,
                                                   high_freq_factor=4.0, original_max_position_embeddings=64)),
                          torch.float32, False, {}, False),
    "llama_rope_yarn": (LlamaConfig, rope(10000.0, "yarn", factor=4.0, original_max_position_embeddings=64,
                                          beta_fast=32.0, beta_slow=1.0),
                        torch.float32, False, {"max_shard_size": "100KB"}, False),
    "qwen2": (Qwen2Config, dict(tie_word_embeddings=False, **rope(1000000.0)), torch.float32, True, {}, True),
    "qwen3": (Qwen3Config, dict(head_dim=32, tie_word_embeddings=True, **rope(1000000.0)), torch.float32, False,
              {}, False),
    "qwen3_bf16": (Qwen3Config, dict(head_dim=16, attention_bias=True, tie_word_embeddings=False,
                                     **rope(1000000.0)), torch.bfloat16, False, {}, False),
    "mistral": (MistralConfig, dict(sliding_window=None, head_dim=16, **rope(10000.0)), torch.float32, True, {},
                True),
    "llama_f16": (LlamaConfig, rope(10000.0), torch.float16, False, {}, False),
    # a window shorter than the prompt: prefill rows, cached decode and batch rows all cross it
    "mistral_window": (MistralConfig, dict(sliding_window=5, head_dim=16, **rope(10000.0)), torch.float32, False, {},
                       False),
}


@torch.no_grad()
def reinit(model):
    """N(0, 0.2) matrices, N(0, 0.1) biases, 1 + N(0, 0.1) RMSNorm scales (global torch RNG)."""
    norms = {id(m.weight) for m in model.modules() if type(m).__name__.endswith("RMSNorm")}
    for _, p in model.named_parameters():  # a tied lm_head is listed once
        if id(p) in norms:
            p.copy_(1.0 + 0.1 * torch.randn(p.shape))
        elif p.ndim >= 2:
            p.normal_(0.0, 0.2)
        else:
            p.normal_(0.0, 0.1)


@torch.no_grad()
def greedy(model, prompt):
    """Manual KV-cache greedy loop; returns generated ids and the logits that chose them."""
    out = model(prompt[None], use_cache=True)
    gen, rows = [], []
    for i in range(N):
        row = out.logits[0, -1]
        rows.append(row)
        gen.append(int(row.argmax()))
        if i + 1 < N:
            out = model(torch.tensor([[gen[-1]]]), past_key_values=out.past_key_values, use_cache=True)
    return torch.tensor(gen, dtype=torch.int64), torch.stack(rows)


def to_legacy(path):
    """config.json: rope_parameters -> top-level rope_theta (+ rope_scaling when not default)."""
    cfg = json.loads(path.read_text())
    rp = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rp
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def make(idx, name, cls, kw, dtype, legacy, save_kw, gen_cfg):
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    torch.manual_seed(1000 + idx)
    cfg = cls(**{**BASE, **kw})
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager").eval()
    reinit(model)
    with torch.no_grad():  # round the parameters only (model.to(dtype) would also round the RoPE inv_freq buffer)
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    if gen_cfg:
        model.generation_config = GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                                                   do_sample=False, max_new_tokens=N)
    copy.deepcopy(model).to(dtype).save_pretrained(d, **save_kw)  # exact: the values are representable
    if not gen_cfg and (d / "generation_config.json").exists():
        (d / "generation_config.json").unlink()
    if legacy:
        to_legacy(d / "config.json")

    with torch.no_grad():
        for k in range(100):  # first prompt seed whose greedy steps have a clear argmax (robust C++ comparisons)
            g = torch.Generator().manual_seed(2000 + 100 * idx + k)
            prompt = torch.randint(0, V, (T,), generator=g)
            generated, decode = greedy(model, prompt)
            top2 = decode.topk(2, dim=-1).values
            margin = float((top2[:, 0] - top2[:, 1]).min())
            if margin >= MIN_MARGIN:
                break
        else:
            raise RuntimeError(f"{name}: no prompt with argmax margin >= {MIN_MARGIN}")
        batch = torch.randint(0, V, (2, 7), generator=g)
        prefill = model(prompt[None]).logits[0]
        batch_logits = model(batch).logits
        # cross-checks: cached decode == full recompute; batch rows == single-sequence passes
        full = model(torch.cat([prompt, generated[:-1]])[None]).logits[0, T - 1:]
        torch.testing.assert_close(decode, full, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(decode[0], prefill[-1], atol=1e-5, rtol=1e-5)
        for b in range(2):
            torch.testing.assert_close(batch_logits[b], model(batch[b:b + 1]).logits[0], atol=1e-5, rtol=1e-5)
        # transformers' own greedy generate (eos cannot stop it: min_new_tokens = N)
        res = model.generate(prompt[None], do_sample=False, max_new_tokens=N, min_new_tokens=N,
                             output_logits=True, return_dict_in_generate=True)
        hf_logits = torch.stack(res.logits)[:, 0]
        torch.testing.assert_close(hf_logits, decode, atol=1e-5, rtol=1e-5)
        if cfg.eos_token_id not in generated.tolist():  # else min_new_tokens masks the argmax
            assert torch.equal(res.sequences[0, T:], generated), name
        # reload from disk (also checks the legacy config.json layout)
        back = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        torch.testing.assert_close(back(prompt[None]).logits[0], prefill, atol=1e-5, rtol=1e-5)

    save_file({"prompt": prompt, "prefill_logits": prefill.contiguous(), "generated": generated,
               "decode_logits": decode.contiguous(), "batch_prompt": batch.contiguous(),
               "batch_logits": batch_logits.contiguous()}, str(d / "reference.safetensors"))
    for f in d.iterdir():
        f.chmod(0o644)  # safetensors writes 0600

    cj = json.loads((d / "config.json").read_text())
    rope_type = (cj.get("rope_scaling") or cj.get("rope_parameters") or {}).get("rope_type", "default")
    shards = len(list(d.glob("model*.safetensors")))
    print(f"{name:18s} weights={str(dtype)[6:]:8s} shards={shards} config={'legacy' if legacy else 'v5':6s} "
          f"rope={rope_type:7s} max|logit|={prefill.abs().max():.3f} "
          f"min top1-top2 margin={margin:.3f} (prompt seed +{k}) generated={generated.tolist()}")


def main():
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__} -> {OUT}")
    OUT.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])  # optional: the case names to (re)write; the others stay as they are
    for i, (name, spec) in enumerate(CASES.items()):
        if not only or name in only:
            make(i, name, *spec)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"total {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
