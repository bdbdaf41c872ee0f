#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/fixtures/kv/scorers.safetensors (tensors) and tests/fixtures/kv/scorers.json (integer
metadata, provenance, conventions) for the KV-cache eviction scorers. Scores and kept sets come from NVIDIA
kvpress's own press code (ScorerPress.score / compress, AdaKVPress.compress, PyramidKVPress.get_layer_budget)
called on synthetic tensors; the policies kvpress lacks are small PyTorch re-implementations. scorers.json
says which ("source": "kvpress==X.Y.Z" or "reimpl") and records the kvpress/torch/transformers versions.

How to run (from the repository root; a separate venv because kvpress needs torch >= 2.3 while the Debian
python has torch 1.13; about 10 s on 2 cores):

    /usr/bin/python3 -m venv .venv-kv
    .venv-kv/bin/pip install -r tools/requirements-kv.txt
    .venv-kv/bin/python tools/make_kv_fixtures.py

(Plain PyPI torch for x86_64 drags in the CUDA wheels, ~6 GB venv; where the PyTorch CPU wheel index is
reachable, install torch==2.15.0 from it first to keep the venv small. Results do not depend on it.)
Deterministic: numpy PCG64 seeds below, no torch RNG; reruns write byte-identical files. The script asserts
that kvpress's own compress() keeps the same sets, cross-checks the re-implementations against kvpress,
ends with an independent numpy recomputation of knorm and snapkv, and prints a summary.

Conventions. Batch 1, batch axis dropped. f32 unless noted; index/mask/budget tensors are int32. Higher
score = keep. Query head h uses KV head h // G, G = H_q / H_kv = 2 (transformers repeat_kv layout). Scores
are computed in float64 from the stored f32 inputs, then rounded to f32.

Main case, n = 100, H_q = 4, H_kv = 2, D = 16:
  queries_pre_rope (H_q, n, D)   standard normal.
  queries          (H_q, n, D)   queries_pre_rope under Llama RoPE at positions 0..n-1: base 10000,
                                 inv_freq_j = base^(-2j/D), rotate_half pairs (d, d + D/2), no scaling;
                                 rotated in float64, rounded to f32.
  keys, values     (H_kv, n, D)  standard normal; keys are post-RoPE as given.
  attn             (H_q, n, n)   causal softmax(q k^T * scale), scale = 1/sqrt(D) = 0.25, float64 -> f32
                                 (entries above the diagonal are exactly 0). Passed as `attentions`.
  score.P          (H_kv, n)     kvpress score of policy P.
  kept.P.r50, kept.P.r90 (H_kv, n_kept) ascending kept token indices, n_kept = int(n * (1 - r)) in double
                                 (kvpress compute_n_kept): 50 and 9 for n = 100.
  P in: knorm, keydiff, streaming_llm (n_sink 4; kvpress's score depends on r: score.streaming_llm is the
  r = 0.5 score, score.streaming_llm.r90 the r = 0.9 one), snapkv (window 64, kernel 5, avg pool),
  snapkv_paper (window 32, kernel 7, max pool; reimpl), observed_attention, tova, expected_attention
  (n_future_positions 512, n_sink 4, covariance, value norm, epsilon 0; fed queries_pre_rope through a
  tiny transformers LlamaAttention whose q_proj is the identity).
  Protected tokens (snapkv / snapkv_paper window, tova's last token, expected_attention's 4 sinks) get
  kvpress's value max + 1, max over ALL KV heads' unprotected scores (finite, not inf).
  keptmask.adakv_snapkv.r50/.r90 (H_kv, n) 1 = kept: AdaKVPress(SnapKVPress(r), alpha_safeguard=0.2).
  h2o_accum        (H_kv, n)     mean over the group's query heads of sum_{q >= i} attn[h, q, i] (original
                                 H2O accumulated score; reimpl). observed_attention == h2o_accum / (n - i).
  pyramid.n{N}.r{50,90} (L = 8,) PyramidKVPress(window 64, beta 20).get_layer_budget for layers 0..7,
                                 N in {100, 1000, 16384}. Python round() (half to even; no stored value
                                 is at .5); the count includes the window; short contexts fall back to
                                 the uniform round(n * (1 - r)) (note: round, not ScorerPress's int).

Ties. With n = 100 the snapkv window (64) exceeds n_kept (50, 9), as does snapkv_paper's (32) at
r = 0.9: the cut falls among protected tokens that all score max + 1 and kvpress leaves the choice to
torch.topk. kept.snapkv.r50, kept.snapkv.r90, kept.snapkv_paper.r90, keptmask.adakv_snapkv.r50/.r90
are therefore filled by the tie rule "equal scores: keep the newer token; AdaKV: then the lower head" and
listed under "tied_at_cut" in scorers.json: they are not a kvpress result. Every other cut has a relative
gap > 1e-5 between the last kept and the first dropped score (min_rel_gap_at_cut in scorers.json).

Long case, n = 700, same H_q/H_kv/D, KV head h's keys scaled by (0.5, 1.5), for tie-free SnapKV-family sets:
  long.queries (H_q, n, D) post-RoPE, long.keys (H_kv, n, D); attention as above (not stored).
  long.score.{snapkv, snapkv_paper, knorm} (H_kv, n); long.kept.{snapkv, snapkv_paper}.r{50,90}
  (n_kept 350 and 69: 700 * (1 - 0.9) = 69.99999999999999 in double); long.keptmask.adakv_snapkv.r{50,90}
  and long.keptmask.adakv_knorm.r{50,90} (H_kv, n): with knorm the alpha safeguard decides the mask
  (head 1 keeps exactly max(1, int(0.2 * n_kept)) tokens), with snapkv it does not.
"""
import hashlib
import importlib.metadata as md
import json
import math
import pathlib
import types

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from kvpress import (AdaKVPress, ExpectedAttentionPress, KeyDiffPress, KnormPress, ObservedAttentionPress,
                     PyramidKVPress, SnapKVPress, StreamingLLMPress, TOVAPress)
from kvpress.utils import compute_n_kept
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "kv"
N, HQ, HKV, D = 100, 4, 2, 16
G = HQ // HKV
N_LONG = 700
LONG_KEY_SCALE = (0.5, 1.5)
ROPE_BASE = 10000.0
RATIOS = {"r50": 0.5, "r90": 0.9}
REL_GAP = 1e-5
# Cuts that fall among protected tokens for every seed (window >= n_kept at n = 100); all other cuts must
# have a relative gap > REL_GAP (max pooling makes exact plateau ties common, hence the seed search).
STRUCTURAL_TIES = {"kept.snapkv.r50", "kept.snapkv.r90", "kept.snapkv_paper.r90",
                   "keptmask.adakv_snapkv.r50", "keptmask.adakv_snapkv.r90"}
# Seeds. The search started at 20240601 (main) and 20240602 (long) and moved on by 1000 while some cut
# had a near or exact tie. Rejected: main 20240601, 20241601, 20242601 (kept.snapkv_paper.r50 falls on a
# max-pool plateau, an exact tie); long 20240602 + 1000k for k = 0..27 (long.kept.snapkv_paper.r50 and/or
# .r90 on a max-pool plateau). The loop in first_good_seed still runs from the seeds below and records any
# further rejection in scorers.json.
SEED, SEED_LONG = 20243601, 20284602
SEED_SEARCH_NOTE = ("started at 20240601 (main) / 20240602 (long), step 1000; rejected main 20240601, 20241601, "
                    "20242601 (exact max-pool plateau tie at kept.snapkv_paper.r50) and long 20240602 + 1000k, "
                    "k = 0..27 (exact max-pool plateau ties at long.kept.snapkv_paper.r50/.r90)")
KV_VERSION = md.version("kvpress")
SRC_KV = f"kvpress=={KV_VERSION}"
torch.set_grad_enabled(False)


# ----------------------------------------------------------------------------------------- inputs
def rope(x, base=ROPE_BASE):
    """Llama RoPE (rotate_half) at positions 0..n-1 in float64; x (H, n, D)."""
    d, n = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()


def causal_attention(q, k):
    """q (HQ, n, D), k (HKV, n, D) float64 -> causal softmax(q k^T / sqrt(D)) (HQ, n, n) float64."""
    kk = k.repeat_interleave(G, dim=0)
    logits = q @ kk.transpose(1, 2) / math.sqrt(q.shape[-1])
    n = q.shape[1]
    logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(logits, dim=-1)


def f32(a):
    """Round to f32 and go back to float64, so that every stored input is exactly what C++ reads."""
    return torch.from_numpy(np.asarray(a, dtype=np.float32)).double()


def make_main(seed):
    rng = np.random.default_rng(seed)
    q_pre = f32(rng.standard_normal((HQ, N, D)))
    keys = f32(rng.standard_normal((HKV, N, D)))
    values = f32(rng.standard_normal((HKV, N, D)))
    q = f32(rope(q_pre).numpy())
    return q_pre, q, keys, values, causal_attention(q, keys)


def make_long(seed):
    rng = np.random.default_rng(seed)
    q = f32(rng.standard_normal((HQ, N_LONG, D)))
    keys = f32(rng.standard_normal((HKV, N_LONG, D)) * np.asarray(LONG_KEY_SCALE)[:, None, None])
    return q, keys, causal_attention(q, keys)


# ------------------------------------------------------------------------ a tiny kvpress "model"
def tiny_attention_module(n_layers=1):
    """One transformers LlamaAttention (H_q = 4, H_kv = 2, D = 16) with q_proj = identity, so that
    hidden_states = queries_pre_rope laid out as (1, n, H_q * D) gives kvpress's
    get_prerope_query_states exactly the pre-RoPE queries. rotary_emb is attached as
    BasePress.__call__ does. _attn_implementation is 'sdpa' (AdaKVPress refuses 'eager')."""
    cfg = LlamaConfig(hidden_size=HQ * D, num_attention_heads=HQ, num_key_value_heads=HKV, head_dim=D,
                      num_hidden_layers=n_layers, intermediate_size=4 * HQ * D, vocab_size=32,
                      max_position_embeddings=4096, rope_theta=ROPE_BASE, attention_bias=False)
    cfg._attn_implementation = "sdpa"
    m = LlamaAttention(cfg, layer_idx=0).double().eval()
    m.q_proj.weight.copy_(torch.eye(HQ * D, dtype=torch.float64))
    m.rotary_emb = LlamaRotaryEmbedding(cfg)
    return m


def hidden_from_queries(q_pre):
    return q_pre.permute(1, 0, 2).reshape(1, q_pre.shape[1], HQ * D)  # [0, t, h*D + d] = q_pre[h, t, d]


# --------------------------------------------------------------------------- re-implementations
def snapkv_reimpl(attn, window, kernel, pool):
    """kvpress SnapKVPress.score structure with a choice of pooling (kvpress only has avg):
    window rows, non-window columns -> mean over window queries -> pool per query head (zero padding
    k//2 and divide by k for avg, i.e. count_include_pad; -inf padding for max) -> mean over the group
    -> window columns appended with (max over all KV heads) + 1."""
    n = attn.shape[-1]
    s = attn[:, n - window:, : n - window].mean(dim=1)[:, None, :]  # (HQ, 1, n - w)
    if pool == "avg":
        s = F.avg_pool1d(s, kernel_size=kernel, padding=kernel // 2, stride=1)
    else:
        s = F.max_pool1d(s, kernel_size=kernel, padding=kernel // 2, stride=1)
    s = s[:, 0].view(HKV, G, n - window).mean(dim=1)
    return F.pad(s, (0, window), value=s.max().item() + 1)


def h2o_accum(attn):
    return attn.sum(dim=1).view(HKV, G, -1).mean(dim=1)


# --------------------------------------------------------------------------------- selection
def rel_gap(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _topk(scores, n_kept, newer_first):
    kept = []
    for row in scores.tolist():
        order = sorted(range(len(row)), key=lambda i: (-row[i], -i if newer_first else i))
        kept.append(sorted(order[:n_kept]))
    return torch.tensor(kept, dtype=torch.int32)


def topk_rows(scores, n_kept):
    """Per-row top n_kept (ScorerPress.compress), sorted ascending, ties -> newer token.
    Returns (kept (H, n_kept) int32, min over rows of the relative gap between the last kept and the
    first dropped score, tied): tied means the opposite tie rule (older first) selects another set."""
    kept = _topk(scores, n_kept, True)
    tied = not torch.equal(kept, _topk(scores, n_kept, False))
    gaps = []
    for row in scores.tolist():
        srt = sorted(row, reverse=True)
        gaps.append(rel_gap(srt[n_kept - 1], srt[n_kept]))
    return kept, min(gaps), tied


def _adakv(scores, n_kept, alpha, newer_first):
    h, n = scores.shape
    s = scores.tolist()
    n_safe = int(n_kept * alpha)
    if alpha > 0:
        n_safe = max(1, n_safe) if n_kept > 0 else 0
    big = torch.finfo(torch.float64).max
    sign = 1 if newer_first else -1
    for row in s:
        order = sorted(range(n), key=lambda i: (-row[i], -sign * i))
        for i in order[:n_safe]:
            row[i] = big
    flat = sorted(((s[hh][i], sign * i, -sign * hh, hh, i) for hh in range(h) for i in range(n)), reverse=True)
    keep_total = h * n_kept
    mask = torch.zeros(h, n, dtype=torch.int32)
    for *_, hh, i in flat[:keep_total]:
        mask[hh, i] = 1
    return mask, rel_gap(flat[keep_total - 1][0], flat[keep_total][0])


def adakv_mask(scores, n_kept, alpha):
    """kvpress AdaKVPress.compress on (H, n) scores: per head the top max(1, int(n_kept * alpha)) are set to
    DBL_MAX, then the H * (n - n_kept) lowest over all heads are masked. Ties -> newer token, then lower
    head. Returns (mask (H, n) int32, rel gap at the global cut, tied = the opposite rule differs)."""
    mask, gap = _adakv(scores, n_kept, alpha, True)
    other, _ = _adakv(scores, n_kept, alpha, False)
    return mask, gap, not torch.equal(mask, other)


def kvpress_kept(press, module, hidden, keys, values, attn):
    """Run ScorerPress.compress (kvpress's own topk + gather) and map the gathered keys back to indices."""
    k4, v4, a4 = keys[None], values[None], (None if attn is None else attn[None])
    kk, _ = press.compress(module, hidden, k4, v4, a4, {})
    out = []
    for hh in range(keys.shape[0]):
        idx = []
        for row in kk[0, hh]:
            match = (keys[hh] == row).all(dim=-1).nonzero().flatten().tolist()
            assert len(match) == 1
            idx.append(match[0])
        out.append(sorted(idx))
    return torch.tensor(out, dtype=torch.int32)


# --------------------------------------------------------------------------------------- main
def compute_main(seed):
    q_pre, q, keys, values, attn = make_main(seed)
    module = tiny_attention_module()
    hidden = hidden_from_queries(q_pre)
    k4, v4, a4 = keys[None], values[None], attn[None]

    def kv_score(press, attentions=a4, kwargs=None):
        return press.score(module, hidden, k4, v4, attentions, kwargs or {})[0]

    presses = {
        "knorm": (KnormPress(), SRC_KV),
        "keydiff": (KeyDiffPress(), SRC_KV),
        "streaming_llm": (StreamingLLMPress(n_sink=4), SRC_KV),
        "snapkv": (SnapKVPress(window_size=64, kernel_size=5), SRC_KV),
        "snapkv_paper": (None, "reimpl"),
        "observed_attention": (ObservedAttentionPress(), SRC_KV),
        "tova": (TOVAPress(), SRC_KV),
        "expected_attention": (ExpectedAttentionPress(n_future_positions=512, n_sink=4, use_covariance=True,
                                                      use_vnorm=True, epsilon=0.0), SRC_KV),
    }
    t, meta_pol, tied_at_cut, gaps = {}, {}, {}, {}
    for name, (press, src) in presses.items():
        meta_pol[name] = {"source": src}
        for rk, r in RATIOS.items():
            n_kept = compute_n_kept(N, r)
            if press is not None:
                press.compression_ratio = r
                sc = kv_score(press)
            else:
                sc = snapkv_reimpl(attn, window=32, kernel=7, pool="max")
            if rk == "r50":
                t[f"score.{name}"] = sc
            elif name == "streaming_llm":  # the only score that depends on r
                t["score.streaming_llm.r90"] = sc
            kept, gap, tied = topk_rows(sc, n_kept)
            key = f"kept.{name}.{rk}"
            t[key] = kept
            gaps[key] = gap
            if tied:
                tied_at_cut[key] = "exact tie among protected tokens (max + 1)"
                continue
            if press is not None:  # kvpress's own compress() (torch.topk + gather) keeps the same set
                assert torch.equal(kept, kvpress_kept(press, module, hidden, keys, values, attn)), key

    # AdaKV over snapkv (kvpress's AdaKVPress.compress, cross-checked with the re-implementation)
    for rk, r in RATIOS.items():
        n_kept = compute_n_kept(N, r)
        mask, gap, tied = adakv_mask(kv_score(SnapKVPress(compression_ratio=r)), n_kept, 0.2)
        key = f"keptmask.adakv_snapkv.{rk}"
        t[key] = mask
        gaps[key] = gap
        if tied:
            tied_at_cut[key] = "exact tie among protected snapkv window tokens (max + 1)"
        else:
            kv_mask = adakv_kvpress_mask(r, module, hidden, k4, v4, a4)
            assert torch.equal(mask, kv_mask), key
    meta_pol["adakv_snapkv"] = {"source": SRC_KV}

    t["h2o_accum"] = h2o_accum(attn)
    meta_pol["expected_attention"]["max_rel_diff_vs_float64_rope"] = float(
        ((ea_reimpl(q_pre, keys, values) - t["score.expected_attention"]).abs()
         / t["score.expected_attention"].abs()).max())
    meta_pol["h2o_accum"] = {"source": "reimpl"}

    # Consistency checks of the inputs and of the re-implementations against kvpress.
    obs = t["score.observed_attention"]
    assert torch.allclose(obs, t["h2o_accum"] / torch.arange(N, 0, -1, dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(snapkv_reimpl(attn, 64, 5, "avg"), t["score.snapkv"], rtol=1e-12, atol=0)
    pe = module.rotary_emb(hidden, torch.arange(N)[None])  # float32 cos/sin, as in transformers
    assert torch.allclose(kv_score(SnapKVPress(), None, {"position_embeddings": pe}), t["score.snapkv"],
                          rtol=1e-5, atol=1e-9)  # kvpress recomputes window queries from pre-RoPE
    assert torch.allclose(kv_score(TOVAPress(), None, {"position_embeddings": pe}), t["score.tova"],
                          rtol=1e-5, atol=1e-9)
    assert torch.allclose(ea_reimpl(q_pre, keys, values), t["score.expected_attention"], rtol=1e-5, atol=0)

    t.update({"queries_pre_rope": q_pre, "queries": q, "keys": keys, "values": values, "attn": attn})
    return t, meta_pol, tied_at_cut, gaps


def adakv_kvpress_mask(r, module, hidden, k4, v4, a4, inner=SnapKVPress):
    press = AdaKVPress(inner(compression_ratio=r), alpha_safeguard=0.2)
    press.compress(module, hidden, k4, v4, a4, {})
    _, hh, ss = module.masked_key_indices
    mask = torch.ones(k4.shape[1], k4.shape[2], dtype=torch.int32)
    mask[hh, ss] = 0
    del module.masked_key_indices
    return mask


def ea_reimpl(q_pre, keys, values, n_sink=4, n_future=512):
    """Independent float64 ExpectedAttention (the formula of kv_eviction.md 2.2), used only as a check."""
    q = q_pre[:, n_sink:]
    mu = q.mean(dim=1)
    c = q - mu[:, None]
    cov = c.transpose(1, 2) @ c / q.shape[1]
    inv_freq = 1.0 / ROPE_BASE ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(N, N + n_future, dtype=torch.float64)[:, None] * inv_freq[None]
    cos, sin = torch.cat([ang, ang], -1).cos().mean(0), torch.cat([ang, ang], -1).sin().mean(0)
    p = torch.zeros(D, D, dtype=torch.float64)
    p[D // 2:, : D // 2], p[: D // 2, D // 2:] = torch.eye(D // 2), -torch.eye(D // 2)
    rbar = torch.diag(cos) + sin[:, None] * p
    mu, cov = mu @ rbar.T, rbar @ cov @ rbar.T
    k = keys[:, n_sink:].repeat_interleave(G, 0)
    z = (k @ mu[:, :, None])[..., 0] / math.sqrt(D) + torch.einsum("hni,hij,hnj->hn", k, cov, k) / D / 2
    s = torch.softmax(z, -1).view(HKV, G, -1).mean(1) * values[:, n_sink:].norm(dim=-1)
    return F.pad(s, (n_sink, 0), value=s.max().item() + 1)


LONG_SAFEGUARD_BINDS = {}


def compute_long(seed):
    q, keys, attn = make_long(seed)
    module = tiny_attention_module()
    hidden = torch.zeros(1, N_LONG, HQ * D, dtype=torch.float64)  # only its length is read here
    k4, a4 = keys[None], attn[None]
    t, tied, gaps = {"long.queries": q, "long.keys": keys}, {}, {}
    sk = SnapKVPress(window_size=64, kernel_size=5).score(module, hidden, k4, k4, a4, {})[0]
    t["long.score.snapkv"] = sk
    t["long.score.snapkv_paper"] = snapkv_reimpl(attn, 32, 7, "max")
    t["long.score.knorm"] = KnormPress().score(module, hidden, k4, k4, a4, {})[0]
    binds = {}
    for rk, r in RATIOS.items():
        n_kept = compute_n_kept(N_LONG, r)
        for name in ("snapkv", "snapkv_paper"):
            kept, gap, tie = topk_rows(t[f"long.score.{name}"], n_kept)
            if name == "snapkv":
                press = SnapKVPress(compression_ratio=r)
                assert torch.equal(kept, kvpress_kept(press, module, hidden, keys, keys, attn))
            t[f"long.kept.{name}.{rk}"] = kept
            gaps[f"long.kept.{name}.{rk}"] = gap
            if tie:
                tied[f"long.kept.{name}.{rk}"] = "exact tie"
        for name, press_cls in (("snapkv", SnapKVPress), ("knorm", KnormPress)):
            key = f"long.keptmask.adakv_{name}.{rk}"
            mask, gap, tie = adakv_mask(t[f"long.score.{name}"], n_kept, 0.2)
            assert torch.equal(mask, adakv_kvpress_mask(r, module, hidden, k4, k4, a4, press_cls)), key
            t[key] = mask
            gaps[key] = gap
            binds[key] = not torch.equal(mask, adakv_mask(t[f"long.score.{name}"], n_kept, 0.0)[0])
            if tie:
                tied[key] = "exact tie"
    LONG_SAFEGUARD_BINDS.clear()
    LONG_SAFEGUARD_BINDS.update(binds)
    return t, tied, gaps


def pyramid_budgets():
    t, raw = {}, {}
    for n in (100, 1000, 16384):
        for rk, r in RATIOS.items():
            press = PyramidKVPress(compression_ratio=r, window_size=64, kernel_size=5, beta=20)
            vals = []
            for layer in range(8):
                mod = types.SimpleNamespace(config=types.SimpleNamespace(num_hidden_layers=8), layer_idx=layer)
                vals.append(press.get_layer_budget(mod, n))
            t[f"pyramid.n{n}.{rk}"] = torch.tensor(vals, dtype=torch.int32)
            # unrounded values, to show that no stored budget sits at .5 (Python rounds half to even)
            b = n * (1 - r)
            mn, mx = b / 20, 2 * b - b / 20
            if mx >= n - 64:
                mx, mn = n - 64, 2 * b - (n - 64)
            pyramid = n >= mx >= mn >= 64
            raw[f"pyramid.n{n}.{rk}"] = {
                "pyramid_shape": pyramid,
                "unrounded": [mx - layer * (mx - mn) / 7 for layer in range(8)] if pyramid else [n * (1 - r)] * 8,
            }
            for v in raw[f"pyramid.n{n}.{rk}"]["unrounded"]:
                assert abs(v - math.floor(v) - 0.5) > 1e-9, (n, r, v)
    return t, raw


def first_good_seed(fn, seed):
    rejected = []
    while True:
        out = fn(seed)
        gaps = out[-1]
        bad = {k: g for k, g in gaps.items() if k not in STRUCTURAL_TIES and (g <= REL_GAP or k in out[-2])}
        if not bad:
            return seed, rejected, out
        rejected.append({"seed": seed, "near_ties": bad})
        seed += 1000
        assert len(rejected) < 20


def numpy_check(t):
    """Independent numpy recomputation of knorm and snapkv (main and long case) from the stored f32."""
    def attn_np(q, k):
        kk = np.repeat(k, G, axis=0)
        lg = q @ kk.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        n = q.shape[1]
        lg[:, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] = -np.inf
        lg -= lg.max(-1, keepdims=True)
        e = np.exp(lg)
        return e / e.sum(-1, keepdims=True)

    def snap_np(a, w, kern):
        n = a.shape[-1]
        s = a[:, n - w:, : n - w].mean(1)
        pad = np.pad(s, ((0, 0), (kern // 2, kern // 2)))
        s = np.stack([pad[:, j:j + n - w] for j in range(kern)]).sum(0) / kern
        s = s.reshape(HKV, G, n - w).mean(1)
        return np.concatenate([s, np.full((HKV, w), s.max() + 1)], 1)

    def kept_np(s, n_kept):
        return np.sort(np.argsort(-s, kind="stable", axis=1)[:, :n_kept], axis=1)

    g = {k: v.numpy().astype(np.float64) for k, v in t.items() if v.dtype == torch.float32}
    kn = -np.linalg.norm(g["keys"], axis=-1)
    assert np.allclose(kn, g["score.knorm"], rtol=1e-6, atol=0)
    a = attn_np(g["queries"], g["keys"])
    assert np.allclose(a, g["attn"], rtol=1e-5, atol=1e-9)
    assert np.allclose(snap_np(a, 64, 5), g["score.snapkv"], rtol=1e-5, atol=0)
    for rk, r in RATIOS.items():
        n_kept = int(N * (1 - r))
        assert (kept_np(kn, n_kept) == t[f"kept.knorm.{rk}"].numpy()).all()
    al = attn_np(g["long.queries"], g["long.keys"])
    sl = snap_np(al, 64, 5)
    assert np.allclose(sl, g["long.score.snapkv"], rtol=1e-5, atol=0)
    for rk, r in RATIOS.items():
        assert (kept_np(sl, int(N_LONG * (1 - r))) == t[f"long.kept.snapkv.{rk}"].numpy()).all()
    return "numpy recomputation of knorm and snapkv (scores and kept sets, main and long case): OK"


def main():
    seed, rejected, (t, meta_pol, tied, gaps) = first_good_seed(compute_main, SEED)
    seed_l, rejected_l, (tl, tied_l, gaps_l) = first_good_seed(compute_long, SEED_LONG)
    tp, pyr_raw = pyramid_budgets()
    t.update(tl)
    t.update(tp)
    tied.update(tied_l)
    assert set(tied) == STRUCTURAL_TIES, sorted(tied)
    gaps.update(gaps_l)
    tensors = {k: (v.float() if v.is_floating_point() else v.to(torch.int32)).contiguous() for k, v in t.items()}

    # f32 storage must not change any selection
    for k, v in tensors.items():
        if k.startswith(("kept.", "long.kept.")) and k not in tied:
            name = k.rsplit(".", 1)[0].replace("kept.", "score.")
            if name == "score.streaming_llm" and k.endswith("r90"):
                name += ".r90"
            kept, _, _ = topk_rows(tensors[name].double(), v.shape[1])
            assert torch.equal(kept, v), k

    meta_pol["knorm"]["params"] = {"formula": "-||k_i||_2"}
    meta_pol["keydiff"]["params"] = {"formula": "-cos(k_i, mean_j k_j/||k_j||)"}
    meta_pol["streaming_llm"]["params"] = {"n_sink": 4, "score": "1, except 0 on [n_sink, n_sink + n - n_kept)",
                                           "score_tensor_ratio": {"score.streaming_llm": 0.5,
                                                                  "score.streaming_llm.r90": 0.9}}
    meta_pol["snapkv"]["params"] = {"window": 64, "kernel": 5, "pool": "avg", "pool_padding": 2,
                                    "count_include_pad": True, "protected": "last 64 tokens = max + 1"}
    meta_pol["snapkv_paper"]["params"] = {"window": 32, "kernel": 7, "pool": "max", "pool_padding": 3,
                                          "protected": "last 32 tokens = max + 1"}
    meta_pol["snapkv_paper"]["why_reimpl"] = "kvpress SnapKVPress hard-codes avg_pool1d; same code path otherwise"
    meta_pol["observed_attention"]["params"] = {"formula": "sum_q A[q,i] / (n - i), mean over group"}
    meta_pol["tova"]["params"] = {"formula": "A[n-1, i] for i < n-1, mean over ALL query heads, same for every "
                                             "KV head", "protected": "token n-1 = max + 1"}
    meta_pol["expected_attention"]["params"] = {"n_future_positions": 512, "n_sink": 4, "use_covariance": True,
                                                "use_vnorm": True, "epsilon": 0.0,
                                                "covariance_divisor": "n - n_sink (biased)",
                                                "future_positions": "n .. n + 511",
                                                "protected": "first 4 tokens = max + 1",
                                                "rope_cos_sin_precision": "float32 (transformers "
                                                                          "LlamaRotaryEmbedding)"}
    meta_pol["adakv_snapkv"]["params"] = {"alpha_safeguard": 0.2,
                                          "n_safe": "max(1, int(n_kept * alpha)) top tokens per head set to "
                                                    "the dtype's max, then the H_kv*(n - n_kept) lowest of all heads "
                                                    "are masked"}
    meta_pol["adakv_knorm"] = {"source": SRC_KV, "params": meta_pol["adakv_snapkv"]["params"],
                               "case": "long only"}
    meta_pol["adakv_snapkv"]["safeguard_changes_mask"] = {k: v for k, v in LONG_SAFEGUARD_BINDS.items()
                                                          if "snapkv" in k}
    meta_pol["adakv_knorm"]["safeguard_changes_mask"] = {k: v for k, v in LONG_SAFEGUARD_BINDS.items()
                                                         if "knorm" in k}
    meta_pol["h2o_accum"]["params"] = {"formula": "sum_{q>=i} A[q,i] (original H2O), mean over group"}

    meta = {
        "generator": "tools/make_kv_fixtures.py",
        "kvpress_version": KV_VERSION,
        "torch_version": torch.__version__,
        "transformers_version": md.version("transformers"),
        "seed_main": seed, "seed_long": seed_l,
        "seed_search": SEED_SEARCH_NOTE,
        "rejected_seeds": rejected + rejected_l,
        "n": N, "H_q": HQ, "H_kv": HKV, "D": D, "batch": 1, "group_size": G,
        "gqa": "query head h uses KV head h // group_size",
        "attn_scale": 1 / math.sqrt(D),
        "attn": "causal softmax(q k^T * attn_scale) in float64, stored f32",
        "rope": {"base": ROPE_BASE, "style": "llama rotate_half", "scaling": None, "positions": "0..n-1",
                 "inv_freq": "base^(-2j/D), j = 0..D/2-1"},
        "ratios": RATIOS,
        "n_kept": {rk: compute_n_kept(N, r) for rk, r in RATIOS.items()},
        "n_kept_rule": "int(n * (1 - r)) in double, at least 1 (kvpress compute_n_kept)",
        "higher_score_keeps": True,
        "protected_value": "max over all KV heads of the unprotected scores, + 1",
        "policies": meta_pol,
        "tie_rule": "equal scores: keep the newer (higher index) token; AdaKV: then the lower head",
        "tied_at_cut": tied,
        "min_rel_gap_at_cut": {k: float(v) for k, v in sorted(gaps.items()) if k not in tied},
        "long_case": {"n": N_LONG, "key_scale_per_kv_head": list(LONG_KEY_SCALE),
                      "n_kept": {rk: compute_n_kept(N_LONG, r) for rk, r in RATIOS.items()}},
        "pyramid": {"L": 8, "window": 64, "beta": 20, "rounding": "Python round() (half to even) of "
                    "max - l*(max-min)/(L-1); uniform round(n*(1-r)) fallback when not "
                    "n >= max >= min >= window", "layers": pyr_raw},
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                    for k, v in sorted(tensors.items())},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    st = OUT / "scorers.safetensors"
    save_file(tensors, str(st), metadata={"description": "see scorers.json beside this file"})
    st.chmod(0o644)
    (OUT / "scorers.json").write_text(json.dumps(meta, indent=1) + "\n")

    print(numpy_check(tensors))
    print(f"wrote {st} ({st.stat().st_size} bytes, sha256 {hashlib.sha256(st.read_bytes()).hexdigest()[:16]})")
    print(f"wrote {OUT / 'scorers.json'} ({(OUT / 'scorers.json').stat().st_size} bytes)")
    print(f"kvpress {KV_VERSION}, torch {torch.__version__}; seeds {seed}, {seed_l}; rejected {len(meta['rejected_seeds'])}")
    for k, v in sorted(tensors.items()):
        print(f"  {k:40s} {str(v.dtype):14s} {tuple(v.shape)}")
    for k in sorted(tensors):
        if k.startswith("kept.") or k.startswith("long.kept."):
            print(f"  {k}[0][:12] = {tensors[k][0][:12].tolist()}" + ("   (tie rule)" if k in tied else ""))
    for k in sorted(tensors):
        if k.startswith("pyramid."):
            print(f"  {k} = {tensors[k].tolist()}")
    for k in sorted(tensors):
        if "keptmask" in k:
            print(f"  {k} kept per head = {tensors[k].sum(1).tolist()}" + ("   (tie rule)" if k in tied else ""))


if __name__ == "__main__":
    main()
