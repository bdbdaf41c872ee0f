#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the EfficientViT-M0..M5 (MSRA, timm `efficientvit_msra`) reference fixtures:

  <out>/efficientvit_reference.safetensors   float32 reference outputs (logits, intermediates, operators)
  <out>/efficientvit_state_dicts.json        timm/torch versions, every model's state-dict layout
                                             (name, shape, dtype), parameter counts (unfused and BN-folded),
                                             MAC counts, counter-formula check values

How to run (from the repository root; about 30 s on 2 cores):

    apt-get install -y python3-torch python3-torchvision python3-numpy python3-pil python3-yaml
    /usr/bin/python3 -m venv --system-site-packages .venv-vision
    .venv-vision/bin/pip install --no-deps -r tools/requirements-vision.txt
    .venv-vision/bin/python tools/make_vision_fixtures.py [--out tests/fixtures/vision]

Weights are not stored: every parameter and buffer (and every input) comes from a "counter formula" that a
C++ test reproduces exactly from the tensor name and the flat row-major element index j:

    fnv1a64(name):  h = 14695981039346656037; per UTF-8 byte b: h ^= b; h = h * 1099511628211 mod 2^64
    splitmix64(x):  z = x + 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
                    z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)      (all mod 2^64)
    u(name, j)   =  (splitmix64(fnv1a64(name) + j mod 2^64) >> 40) / 2^24                (exact in double)
    value        =  float32(lo + (hi - lo) * u)       (evaluated in double, rounded once to float32)

The name is the timm state-dict name itself (e.g. "patch_embed.conv1.conv.weight"; the same name in every
model M0..M5, the shapes differ), "pad_attn." / "cga." + the module's own state-dict name for the two
standalone operators, and "input" / "pad_attn.input" / "cga.input" for the inputs. Ranges [lo, hi):
  *running_var                     [0.5, 1.5)        *running_mean          [-0.3, 0.3)
  BatchNorm weight (*.bn.weight)   [0.5, 1.5)        BatchNorm bias (*.bn.bias)  [-0.3, 0.3)
  *attention_biases                [-1, 1)
  other *.weight (conv / linear)   [-b, b), b = 1/sqrt(fan_in) in double, fan_in = numel / shape[0]
  other *.bias (SE convs, head)    [-0.1, 0.1)
  input (2,3,224,224)              [-2, 2)           pad_attn.input, cga.input  [-1, 1)
num_batches_tracked is left as timm creates it (0); attention_bias_idxs is a non-persistent buffer in timm
(not in the state dict) and is rebuilt by timm.

Stored tensors (all float32, batch 2):
  m{i}.logits                          (2, 1000)  i = 0..5
  m{0,2}.patch_embed.out               output of the stem
  m{0,2}.stages.{s}.out                output of stage s = 0, 1, 2
  m{0,2}.stages.{s}.blocks.0.mixer.in  input of the first block's LocalWindowAttention (module
  m{0,2}.stages.{s}.blocks.0.mixer.out stages.{s}.blocks.0.mixer.m), and its output *before* the residual add
  pad_attn.out     timm LocalWindowAttention(dim 48, key_dim 16, heads 3, attn_ratio 1, resolution 10,
                   window_resolution 7, kernels [7,5,3]) on pad_attn.input (2,48,10,10): zero-padded to 14x14,
                   four 7x7 windows
  cga.out          timm CascadedGroupAttention(dim 64, key_dim 16, heads 4, attn_ratio 1, resolution 7,
                   kernels [5,5,5,5]) on cga.input (2,64,7,7)

All models run in eval mode, float32, CPU, one thread. The script asserts that BN-folded (fuse()) models give
the same logits (max|diff| <= 1e-5 * max|logit|) and that the vectorised counter matches a big-int version.
Reruns write byte-identical files.
"""
import argparse
import copy
import json
import math
import os
import sys

import numpy as np
import torch
import timm
from timm.models.efficientvit_msra import CascadedGroupAttention, LocalWindowAttention
import safetensors
from safetensors.torch import save_file

MASK64 = (1 << 64) - 1
MODELS = [f"efficientvit_m{i}" for i in range(6)]
HOOKED = ("m0", "m2")


# ---------------------------------------------------------------------------------------------- counter
def fnv1a64(name: str) -> int:
    h = 14695981039346656037
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * 1099511628211) & MASK64
    return h


def splitmix64_py(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def u_py(name: str, j: int) -> float:
    return (splitmix64_py((fnv1a64(name) + j) & MASK64) >> 40) / 2.0**24


def value_py(name: str, j: int, lo: float, hi: float) -> np.float32:
    return np.float32(lo + (hi - lo) * u_py(name, j))


def counter_u(name: str, n: int) -> np.ndarray:
    """u(name, j) for j = 0..n-1 as float64, numpy uint64 arithmetic (wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + np.uint64(fnv1a64(name))
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / 2.0**24


def counter_tensor(name: str, shape, lo: float, hi: float) -> torch.Tensor:
    n = int(np.prod(shape)) if len(shape) else 1
    v = (lo + (hi - lo) * counter_u(name, n)).astype(np.float32)
    return torch.from_numpy(v.reshape(tuple(shape)))


def weight_range(name: str, shape) -> tuple:
    """[lo, hi) for a timm state-dict entry by the rules in the docstring; raises on unknown names."""
    if name.endswith("running_var"):
        return 0.5, 1.5
    if name.endswith("running_mean"):
        return -0.3, 0.3
    if name.endswith(".bn.weight"):
        return 0.5, 1.5
    if name.endswith(".bn.bias"):
        return -0.3, 0.3
    if name.endswith("attention_biases"):
        return -1.0, 1.0
    if name.endswith(".weight") and len(shape) >= 2:
        numel = int(np.prod(shape))
        fan_in = numel // shape[0]
        b = 1.0 / math.sqrt(fan_in)
        return -b, b
    if name.endswith(".bias") and len(shape) == 1:
        return -0.1, 0.1
    raise SystemExit(f"state-dict name outside the counter rules: {name} {tuple(shape)}")


def counter_state_dict(module: torch.nn.Module, prefix: str = "") -> dict:
    """Full state dict for `module`: counter values for parameters/BN statistics, timm's own for skipped."""
    out = {}
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked") or k.endswith("attention_bias_idxs"):
            out[k] = v.clone()
            continue
        assert v.dtype == torch.float32, (k, v.dtype)
        lo, hi = weight_range(k, list(v.shape))
        out[k] = counter_tensor(prefix + k, list(v.shape), lo, hi)
    return out


def load_counter_weights(module: torch.nn.Module, prefix: str = "") -> None:
    sd = counter_state_dict(module, prefix)
    module.train()
    module.load_state_dict(sd, strict=True)
    module.train()  # clears timm's eval-mode attention-bias cache (CascadedGroupAttention.train)
    module.eval()
    for m in module.modules():
        if isinstance(m, CascadedGroupAttention):
            assert not m.attention_bias_cache


def self_check_counter() -> list:
    """Vectorised vs big-int counter; returns a few check values for the JSON (for the C++ test)."""
    examples = []
    cases = [("input", 0, -2.0, 2.0), ("input", 1, -2.0, 2.0), ("input", 150527, -2.0, 2.0),
             ("input", 301055, -2.0, 2.0),
             ("patch_embed.conv1.conv.weight", 0, -1 / math.sqrt(27), 1 / math.sqrt(27)),
             ("patch_embed.conv1.conv.weight", 215, -1 / math.sqrt(27), 1 / math.sqrt(27)),
             ("stages.0.blocks.0.mixer.m.attn.attention_biases", 7, -1.0, 1.0),
             ("head.bn.running_var", 3, 0.5, 1.5), ("pad_attn.attn.attention_biases", 0, -1.0, 1.0),
             ("", 0, 0.0, 1.0), ("\u00e9", 5, 0.0, 1.0)]
    for name, j, lo, hi in cases:
        vec = counter_tensor(name, [j + 1], lo, hi)[j].item()
        ref = value_py(name, j, lo, hi)
        assert np.float32(vec) == ref, (name, j, vec, ref)
        uu = u_py(name, j)
        assert counter_u(name, j + 1)[j] == uu
        examples.append({"name": name, "j": j, "lo": lo, "hi": hi, "fnv1a64": f"0x{fnv1a64(name):016x}",
                         "u_times_2^24": int(uu * 2**24), "value": float(ref),
                         "value_bits": f"0x{np.float32(ref).view(np.uint32):08x}"})
    # a random spread of indices for one longer tensor
    name, n = "stages.1.downsample.patchmerge.conv1.conv.weight", 4096
    vec = counter_u(name, n)
    for j in (0, 1, 17, 1000, 4095):
        assert vec[j] == u_py(name, j)
    return examples


# ---------------------------------------------------------------------------------------------- helpers
def fuse_all(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every child with a fuse() method (ConvNorm, NormLinear) by its fused module, recursively."""
    for name, child in module.named_children():
        if hasattr(child, "fuse"):
            setattr(module, name, child.fuse())
        else:
            fuse_all(child)
    return module


def sd_layout(module: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in module.state_dict().items()]


def non_persistent(module: torch.nn.Module) -> list:
    sd = module.state_dict()
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")]
            for k, v in module.named_buffers() if k not in sd]


def count_macs(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Multiply-accumulates per image: Conv2d / Linear by hooks, CGA's two matmuls (q^T k, v attn^T)."""
    tot = {"conv_linear": 0, "attention_matmul": 0}
    hooks = []

    def conv_hook(m, inp, out):
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
        tot["conv_linear"] += out.numel() // x.shape[0] * k

    def lin_hook(m, inp, out):
        tot["conv_linear"] += out.numel() // x.shape[0] * m.in_features

    def cga_hook(m, inp, out):
        bw, _, h, w = inp[0].shape
        n = h * w
        tot["attention_matmul"] += (bw // x.shape[0]) * m.num_heads * n * n * (m.key_dim + m.val_dim)

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
        elif isinstance(m, CascadedGroupAttention):
            hooks.append(m.register_forward_hook(cga_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    tot["total"] = tot["conv_linear"] + tot["attention_matmul"]
    return tot


def dump_json(obj) -> str:
    """Indented JSON, but every [name, shape, dtype] state-dict entry on one line."""
    lists = []

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items()}
        if isinstance(o, list) and o and all(isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)
                                             for e in o):
            lists.append(o)
            return f"@@LIST{len(lists) - 1}@@"
        return o

    text = json.dumps(strip(obj), indent=1)
    for i, entries in enumerate(lists):
        body = "[\n" + ",\n".join("  " + json.dumps(e) for e in entries) + "\n ]"
        text = text.replace(f'"@@LIST{i}@@"', body)
    assert json.loads(text) == obj
    return text


def stats(name: str, t: torch.Tensor) -> str:
    return f"{name:42s} {tuple(t.shape)!s:20s} max|x| {t.abs().max().item():9.4f}  std {t.std().item():8.4f}"


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/vision")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # only timm's (overwritten) init uses the RNG

    print(f"timm {timm.__version__}  torch {torch.__version__}  numpy {np.__version__}  "
          f"safetensors {safetensors.__version__}")
    examples = self_check_counter()

    tensors = {}
    meta = {"timm_version": timm.__version__, "torch_version": torch.__version__,
            "numpy_version": np.__version__, "safetensors_version": safetensors.__version__,
            "counter": "u(name,j) = (splitmix64(fnv1a64(name)+j) >> 40) / 2^24; value = f32(lo+(hi-lo)*u)",
            "counter_examples": examples,
            "inputs": {"input": {"shape": [2, 3, 224, 224], "range": [-2.0, 2.0]},
                       "pad_attn.input": {"shape": [2, 48, 10, 10], "range": [-1.0, 1.0]},
                       "cga.input": {"shape": [2, 64, 7, 7], "range": [-1.0, 1.0]}},
            "models": {}}

    x = counter_tensor("input", [2, 3, 224, 224], -2.0, 2.0)
    for idx, mname in enumerate(MODELS):
        key = f"m{idx}"
        model = timm.create_model(mname, pretrained=False)
        load_counter_weights(model)
        param_count = sum(p.numel() for p in model.parameters())

        captured = {}
        hooks = []
        if key in HOOKED:
            def save_out(tag):
                def hook(m, inp, out):
                    captured[tag] = out.detach().clone()
                return hook

            def save_in_out(tag):
                def hook(m, inp, out):
                    captured[tag + ".in"] = inp[0].detach().clone()
                    captured[tag + ".out"] = out.detach().clone()
                return hook

            hooks.append(model.patch_embed.register_forward_hook(save_out(f"{key}.patch_embed.out")))
            for s, stage in enumerate(model.stages):
                hooks.append(stage.register_forward_hook(save_out(f"{key}.stages.{s}.out")))
                lwa = stage.blocks[0].mixer.m
                assert isinstance(lwa, LocalWindowAttention)
                hooks.append(lwa.register_forward_hook(save_in_out(f"{key}.stages.{s}.blocks.0.mixer")))
        with torch.no_grad():
            logits = model(x)
        for h in hooks:
            h.remove()
        assert logits.dtype == torch.float32 and logits.shape == (2, 1000)
        tensors[f"{key}.logits"] = logits.clone()
        for k in sorted(captured):
            tensors[k] = captured[k]

        # BN-folding self-check
        fused = fuse_all(copy.deepcopy(model)).eval()
        assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in fused.modules())
        fused_count = sum(p.numel() for p in fused.parameters())
        with torch.no_grad():
            flog = fused(x)
        rel = ((flog - logits).abs().max() / logits.abs().max()).item()
        assert rel <= 1e-5, (mname, rel)

        macs = count_macs(model, x)
        meta["models"][key] = {"timm_name": mname, "state_dict": sd_layout(model),
                               "non_persistent_buffers": non_persistent(model),
                               "param_count": param_count, "fused_param_count": fused_count,
                               "macs_224": macs, "fused_vs_unfused_max_rel_diff": rel}

        print(f"\n{mname}: params {param_count:,}  fused {fused_count:,}  MACs {macs['total'] / 1e6:.1f} M "
              f"(attn matmul {macs['attention_matmul'] / 1e6:.2f} M)  fused rel diff {rel:.2e}")
        print(f"  logits max|x| {logits.abs().max().item():.4f}  std {logits.std().item():.4f}  "
              f"row std {[round(v, 4) for v in logits.std(dim=1).tolist()]}")
        p = logits.softmax(dim=1)
        for r in range(2):
            top = torch.topk(logits[r], 5)
            print(f"  row {r} top5 {top.indices.tolist()}  logits {[round(v, 3) for v in top.values.tolist()]}"
                  f"  max softmax {p[r].max().item():.4f}")
        for k in sorted(captured):
            print("  " + stats(k, captured[k]))

    # standalone LocalWindowAttention with padding (10x10 -> 14x14, four 7x7 windows)
    lwa = LocalWindowAttention(48, 16, 3, attn_ratio=48 / (16 * 3), resolution=10, window_resolution=7,
                               kernels=[7, 5, 3])
    assert lwa.attn.val_dim == 16 and lwa.attn.resolution == 7
    load_counter_weights(lwa, "pad_attn.")
    xin = counter_tensor("pad_attn.input", [2, 48, 10, 10], -1.0, 1.0)
    with torch.no_grad():
        tensors["pad_attn.out"] = lwa(xin).clone()
    meta["pad_attn"] = {"module": "LocalWindowAttention(dim=48, key_dim=16, num_heads=3, attn_ratio=1.0, "
                                  "resolution=10, window_resolution=7, kernels=[7,5,3])",
                        "state_dict": sd_layout(lwa), "non_persistent_buffers": non_persistent(lwa)}

    # standalone CascadedGroupAttention (no windowing)
    cga = CascadedGroupAttention(64, 16, 4, attn_ratio=64 / (16 * 4), resolution=7, kernels=[5, 5, 5, 5])
    assert cga.val_dim == 16
    load_counter_weights(cga, "cga.")
    xin = counter_tensor("cga.input", [2, 64, 7, 7], -1.0, 1.0)
    with torch.no_grad():
        tensors["cga.out"] = cga(xin).clone()
    meta["cga"] = {"module": "CascadedGroupAttention(dim=64, key_dim=16, num_heads=4, attn_ratio=1.0, "
                             "resolution=7, kernels=[5,5,5,5])",
                   "state_dict": sd_layout(cga), "non_persistent_buffers": non_persistent(cga)}
    print()
    print(stats("pad_attn.out", tensors["pad_attn.out"]))
    print(stats("cga.out", tensors["cga.out"]))

    tensors = {k: v.to(torch.float32).contiguous() for k, v in sorted(tensors.items())}
    st_path = os.path.join(args.out, "efficientvit_reference.safetensors")
    # one metadata key: safetensors writes several in hash order, which would make reruns differ
    save_file(tensors, st_path, metadata={"generator": f"tools/make_vision_fixtures.py timm=={timm.__version__} "
                                                       f"torch=={torch.__version__}"})
    js_path = os.path.join(args.out, "efficientvit_state_dicts.json")
    with open(js_path, "w", encoding="utf-8") as f:
        f.write(dump_json(meta) + "\n")
    print(f"\nwrote {st_path} ({os.path.getsize(st_path):,} bytes, {len(tensors)} tensors), "
          f"{js_path} ({os.path.getsize(js_path):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
