#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/fixtures/nn/optim_fixtures.json: reference trajectories for membound's optimizers
(include/membound/nn/optim.hpp), computed with PyTorch.

Usage (from the repository root, with Debian's python3-torch 1.13):

    /usr/bin/python3 tools/make_nn_optim_fixtures.py

What it records (all float32; every number is written with repr() of the float64 it widens to, so
the C++ side reads back the exact float32 values):
- sgd / adam / adamw: torch.optim.SGD / Adam / AdamW (foreach=False, the single-tensor path) on one
  fixed 7-element parameter and 5 fixed gradients (seeded torch.randn); "params" holds the
  parameter after each step.
- clip_grad_norm: torch.nn.utils.clip_grad_norm_ (max_norm, norm_type 2, its eps 1e-6) over three
  gradient tensors of sizes 3, 5, 1; records the returned total norm and the gradients afterwards.
- newton_schulz / muon: there is no Muon in torch 1.13, so the published math is re-implemented
  below in plain torch (momentum, Nesterov, NS-5 on the Frobenius-normalised matrix with
  a, b, c = 3.4445, -4.7750, 2.0315, transpose if tall, decoupled decay, update), on a 6x4 and a
  4x6 matrix.
The output is deterministic (fixed seeds, CPU, one thread).
"""
import json
import math
import os
import sys

import torch

torch.set_num_threads(1)
torch.manual_seed(20240611)
STEPS = 5
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "nn", "optim_fixtures.json")


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def trajectory(make_opt, p0, grads):
    """Parameters after each step of make_opt([p]) fed the gradients in order."""
    p = p0.clone().requires_grad_(True)
    opt = make_opt([p])
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(flat(p))
    return out


# ---- element-wise optimizers -------------------------------------------------------------------
N = 7
p0 = torch.randn(N, dtype=torch.float32)
grads = [torch.randn(N, dtype=torch.float32) for _ in range(STEPS)]

sgd_cases = [
    dict(name="plain", lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(name="momentum", lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(name="nesterov_wd", lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True),
    dict(name="dampening_wd", lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.05, nesterov=False),
]
adam_cases = [
    dict(name="default", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
    dict(name="l2", lr=0.003, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
]
adamw_cases = [
    dict(name="default", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
    dict(name="strong_wd", lr=0.02, beta1=0.85, beta2=0.95, eps=1e-7, weight_decay=0.3),
]


def sgd_opt(c):
    return lambda ps: torch.optim.SGD(ps, lr=c["lr"], momentum=c["momentum"], dampening=c["dampening"],
                                      weight_decay=c["weight_decay"], nesterov=c["nesterov"], foreach=False)


def adam_opt(cls, c):
    return lambda ps: cls(ps, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                          weight_decay=c["weight_decay"], foreach=False)


fixtures = {
    "generator": "tools/make_nn_optim_fixtures.py",
    "torch_version": torch.__version__,
    "param0": flat(p0),
    "grads": [flat(g) for g in grads],
    "sgd": [dict(c, params=trajectory(sgd_opt(c), p0, grads)) for c in sgd_cases],
    "adam": [dict(c, params=trajectory(adam_opt(torch.optim.Adam, c), p0, grads)) for c in adam_cases],
    "adamw": [dict(c, params=trajectory(adam_opt(torch.optim.AdamW, c), p0, grads)) for c in adamw_cases],
}

# ---- clip_grad_norm_ ---------------------------------------------------------------------------
clip = []
for max_norm in (1.0, 100.0):
    gs = [torch.randn(n, dtype=torch.float32) for n in (3, 5, 1)]
    ps = [torch.zeros(n, requires_grad=True) for n in (3, 5, 1)]
    for p, g in zip(ps, gs):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    clip.append(dict(max_norm=max_norm, grads=[flat(g) for g in gs], total_norm=float(total),
                     clipped=[flat(p.grad) for p in ps]))
fixtures["clip_grad_norm"] = clip

# ---- Muon, written out from the published math ---------------------------------------------------
A_COEF, B_COEF, C_COEF = 3.4445, -4.7750, 2.0315


def newton_schulz5(U, steps=5, eps=1e-7):
    """Approximate U V^T of U = U S V^T (Jordan et al. 2024), in float32."""
    X = U.clone()
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / (X.norm() + eps)  # Frobenius norm
    for _ in range(steps):
        A = X @ X.T
        B = B_COEF * A + C_COEF * (A @ A)
        X = A_COEF * X + B @ X
    if tall:
        X = X.T
    return X.contiguous()


def muon_trajectory(W0, grads, lr, momentum, nesterov, weight_decay, scale_mode):
    rows, cols = W0.shape
    if scale_mode == "shape":
        scale = max(1.0, rows / cols) ** 0.5
    elif scale_mode == "match_rms":
        scale = 0.2 * math.sqrt(max(rows, cols))
    else:
        scale = 1.0
    W = W0.clone()
    buf = torch.zeros_like(W)
    out = []
    for G in grads:
        buf.mul_(momentum).add_(G)                         # B = mu B + G
        U = G.add(buf, alpha=momentum) if nesterov else buf  # Nesterov: G + mu B
        X = newton_schulz5(U)
        W.mul_(1 - lr * weight_decay)                      # decoupled weight decay
        W.add_(X, alpha=-lr * scale)                       # W -= lr * scale * X
        out.append(flat(W))
    return out


ns = []
for shape in ((6, 4), (4, 6)):
    U = torch.randn(*shape, dtype=torch.float32)
    ns.append(dict(rows=shape[0], cols=shape[1], u=flat(U), out=flat(newton_schulz5(U))))
fixtures["newton_schulz"] = ns

muon_cases = [
    dict(name="tall_nesterov_wd", rows=6, cols=4, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1, scale="shape"),
    dict(name="wide_plain", rows=4, cols=6, lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0, scale="none"),
    dict(name="tall_match_rms", rows=6, cols=4, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.0, scale="match_rms"),
]
muon = []
for c in muon_cases:
    W0 = torch.randn(c["rows"], c["cols"], dtype=torch.float32)
    gs = [torch.randn(c["rows"], c["cols"], dtype=torch.float32) for _ in range(STEPS)]
    muon.append(dict(c, param0=flat(W0), grads=[flat(g) for g in gs],
                     params=muon_trajectory(W0, gs, c["lr"], c["momentum"], c["nesterov"], c["weight_decay"], c["scale"])))
fixtures["muon"] = muon

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(fixtures, f, indent=1)
    f.write("\n")
print("wrote", os.path.normpath(OUT), file=sys.stderr)
