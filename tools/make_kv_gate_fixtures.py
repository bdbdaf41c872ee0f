#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/fixtures/kv/retention_gate.safetensors: a TRIM-KV retention gate (variant `rg`,
the released checkpoints') with random weights under the official tensor names, an input batch and
the gate's output computed by a PyTorch re-implementation of the reference module
(ngocbh/trimkv RetentionGate: linear1 (C->I, bias) -> act -> linear2 (I->G, no bias) + bias ->
logsigmoid).

Run from the repository root with Debian's torch and the project venv's safetensors:
    .venv/bin/python tools/make_kv_gate_fixtures.py        (venv made with --system-site-packages)

Tensors (f32):
  model.layers.0.self_attn.retention_gate.linear1.weight (I, C)   I = 512, C = 48
  model.layers.0.self_attn.retention_gate.linear1.bias   (I)
  model.layers.0.self_attn.retention_gate.linear2.weight (G, I)   G = 3
  model.layers.0.self_attn.retention_gate.bias           (G)      (10, 0, -3): near 1, mid, small beta
  x        (N, C)  N = 7: RMS-normed hidden states (unit RMS rows)
  log_beta (N, G)  logsigmoid(linear2(silu(linear1(x))) + bias), float64 then f32
"""
import torch
from safetensors.torch import save_file

torch.manual_seed(20251203)
C, I, G, N = 48, 512, 3, 7
pre = "model.layers.0.self_attn.retention_gate"
w1 = torch.randn(I, C, dtype=torch.float64) * 0.2
b1 = torch.randn(I, dtype=torch.float64) * 0.1
w2 = torch.randn(G, I, dtype=torch.float64) * 0.2
bias = torch.tensor([10.0, 0.0, -3.0], dtype=torch.float64)
x = torch.randn(N, C, dtype=torch.float64)
x = x / x.pow(2).mean(-1, keepdim=True).sqrt()  # what the pre-attention RMSNorm gives (unit weight)
# round the parameters to f32 first so the reference sees exactly what C++ loads
w1, b1, w2, bias, x = (t.float().double() for t in (w1, b1, w2, bias, x))
h = torch.nn.functional.silu(x @ w1.T + b1)
log_beta = torch.nn.functional.logsigmoid(h @ w2.T + bias)
save_file({f"{pre}.linear1.weight": w1.float().contiguous(), f"{pre}.linear1.bias": b1.float().contiguous(),
           f"{pre}.linear2.weight": w2.float().contiguous(), f"{pre}.bias": bias.float().contiguous(),
           "x": x.float().contiguous(), "log_beta": log_beta.float().contiguous()},
          "tests/fixtures/kv/retention_gate.safetensors", metadata={"generator": "tools/make_kv_gate_fixtures.py"})
print("log_beta range", float(log_beta.min()), float(log_beta.max()))
