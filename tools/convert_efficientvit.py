#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Converts an EfficientViT-M0..M5 (MSRA) checkpoint into a float32 safetensors file with timm's names.

    .venv-vision/bin/python tools/convert_efficientvit.py --model efficientvit_m4 in.pth out.safetensors

(venv: see tools/requirements-vision.txt.) Accepted inputs:
  * the official microsoft/Cream release (`EfficientViT_M4.pth`, tensors under "model"), official names such
    as `patch_embed.0.c.weight`, `blocks1.0.mixer.m.attn.qkvs.0.c.weight`, `blocks2.1.se.fc1.weight`,
    `head.l.weight`; some 1x1 conv weights may be stored 2-D (out, in), as microsoft's build.py expects;
  * a timm state dict (`stages.0.blocks.0...`), e.g. HF `pytorch_model.bin` or `model.safetensors` of
    timm/efficientvit_m4.r224_in1k, bare or under "model" / "state_dict" / "state_dict_ema" / "model_ema";
  * a DistributedDataParallel "module." prefix is stripped.
The output holds every timm parameter and BN running statistic as float32, under timm's state-dict names
(`patch_embed.conv1.conv.weight`, `stages.1.downsample.patchmerge.conv1.conv.weight`, `head.linear.weight`,
...); `attention_bias_idxs` and `num_batches_tracked` are dropped (the index is a function of the window size
only, see CascadedGroupAttention). The tensors are verified by a strict load into
timm.create_model(--model) before they are written, so a wrong --model fails instead of converting.

Renaming official -> timm (timm 1.0.31 ships only a commented-out, heuristic version of this mapping in
timm/models/efficientvit_msra.py; its live checkpoint_filter_fn only drops attention_bias_idxs and resizes
bias tables, and is applied after the renaming here):
  `.c.` -> `.conv.`, `.l.` -> `.linear.` (Conv2d_BN / BN_Linear children)
  patch_embed.{0,2,4,6}  -> patch_embed.conv{1,2,3,4}
  blocks1.{j}            -> stages.0.blocks.{j}
  blocks{s}.0 / .1 / .2  -> stages.{s-1}.downsample.res1 / .patchmerge / .res2      (s = 2, 3)
  blocks{s}.{j >= 3}     -> stages.{s-1}.blocks.{j-3}
A distillation head (head_dist.*, unused by the released checkpoints) is refused.
"""
import argparse
import re
import sys

import torch
import timm
from timm.models import efficientvit_msra
from safetensors.torch import load_file, save_file

DROP_SUFFIXES = ("attention_bias_idxs", "num_batches_tracked")


def load_checkpoint(path: str) -> dict:
    if path.endswith(".safetensors"):
        sd = load_file(path)
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # torch < 1.13 has no weights_only
            sd = torch.load(path, map_location="cpu")
    for key in ("model", "state_dict", "state_dict_ema", "model_ema"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise SystemExit(f"{path}: not a state dict (or a dict holding one under 'model' / 'state_dict')")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def official_to_timm_name(k: str) -> str:
    parts = k.split(".")
    parts = ["conv" if p == "c" else "linear" if p == "l" else p for p in parts]
    if parts[0] == "patch_embed" and parts[1].isdigit():
        i = int(parts[1])
        if i % 2:
            raise ValueError(f"unexpected stem index (ReLU has no parameters): {k}")
        parts[1] = f"conv{i // 2 + 1}"
    else:
        m = re.fullmatch(r"blocks(\d+)", parts[0])
        if m:
            s, j = int(m.group(1)) - 1, int(parts[1])
            if s == 0:
                head = ["stages", "0", "blocks", str(j)]
            elif j < 3:
                head = ["stages", str(s), "downsample", ("res1", "patchmerge", "res2")[j]]
            else:
                head = ["stages", str(s), "blocks", str(j - 3)]
            parts = head + parts[2:]
    return ".".join(parts)


def is_official(sd: dict) -> bool:
    official = any(re.match(r"blocks\d+\.", k) for k in sd)
    timm_style = any(k.startswith("stages.") for k in sd)
    if official == timm_style:
        raise SystemExit("cannot tell whether the checkpoint uses official (blocks1..3) or timm (stages.*) names")
    return official


def convert(sd: dict, model_name: str) -> dict:
    if any(k.startswith("head_dist.") for k in sd):
        raise SystemExit("checkpoint has a distillation head (head_dist.*); timm's efficientvit_msra has none")
    if is_official(sd):
        sd = {official_to_timm_name(k): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith(DROP_SUFFIXES)}

    model = timm.create_model(model_name, pretrained=False)
    target = model.state_dict()
    # 1x1 conv weights stored 2-D (out, in): reshape to the model's (out, in, 1, 1), as build.py does
    for k, v in list(sd.items()):
        if k in target and v.dim() == 2 and target[k].dim() == 4 and v.numel() == target[k].numel():
            sd[k] = v.reshape(target[k].shape)
    # timm's own filter (drops index buffers; would resize bias tables, which must not be needed here)
    for k, v in sd.items():
        if k.endswith("attention_biases") and k in target and v.shape != target[k].shape:
            raise SystemExit(f"{k}: {tuple(v.shape)} != {tuple(target[k].shape)}: wrong --model?")
    sd = efficientvit_msra.checkpoint_filter_fn(sd, model)
    sd = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}

    missing = [k for k in target if k not in sd and not k.endswith(DROP_SUFFIXES)]
    unexpected = [k for k in sd if k not in target]
    shape = [f"{k}: {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
             for k in sd if k in target and sd[k].shape != target[k].shape]
    if missing or unexpected or shape:
        raise SystemExit(f"does not match {model_name}:\n  missing {missing[:10]} ({len(missing)})\n"
                         f"  unexpected {unexpected[:10]} ({len(unexpected)})\n  shape {shape[:10]}")
    full = {k: sd.get(k, target[k]) for k in target}  # num_batches_tracked from the model
    model.load_state_dict(full, strict=True)

    return {k: v.detach().to(torch.float32).contiguous().clone()
            for k, v in model.state_dict().items() if not k.endswith(DROP_SUFFIXES)}


def main() -> int:
    ap = argparse.ArgumentParser(description="EfficientViT (MSRA) checkpoint -> timm-named f32 safetensors")
    ap.add_argument("--model", required=True, choices=[f"efficientvit_m{i}" for i in range(6)])
    ap.add_argument("input", help=".pth / .bin / .safetensors (official or timm names)")
    ap.add_argument("output", help="output .safetensors")
    args = ap.parse_args()

    sd = load_checkpoint(args.input)
    out = convert(sd, args.model)
    save_file(out, args.output, metadata={"source": f"tools/convert_efficientvit.py {args.model} timm names, "
                                                            f"timm=={timm.__version__}"})
    n = sum(v.numel() for v in out.values())
    print(f"{args.input} -> {args.output}: {len(out)} tensors, {n:,} values, timm {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
