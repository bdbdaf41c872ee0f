#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/fixtures/nn/loss_fixtures.json: inputs, PyTorch losses and autograd gradients for
membound/nn/loss.hpp (mse, bce_with_logits, cross_entropy, kl_categorical both directions).

Run with Debian's python3 (torch 1.13 is enough): /usr/bin/python3 tools/make_nn_loss_fixtures.py
Everything is float64 so the C++ test can compare at 1e-12 in double precision.
"""
import json
import pathlib

import torch
import torch.nn.functional as F

torch.manual_seed(20261126)
N, C = 5, 7
out = {"N": N, "C": C, "torch_version": torch.__version__}


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


y = torch.randn(N, C, dtype=torch.float64, requires_grad=True)
t = torch.randn(N, C, dtype=torch.float64)
loss = F.mse_loss(y, t)
loss.backward()
out["mse"] = {"y": flat(y), "t": flat(t), "loss": loss.item(), "dy": flat(y.grad)}

z = (3 * torch.randn(N, C, dtype=torch.float64)).requires_grad_()
tb = torch.rand(N, C, dtype=torch.float64)
loss = F.binary_cross_entropy_with_logits(z, tb)
loss.backward()
out["bce"] = {"z": flat(z), "t": flat(tb), "loss": loss.item(), "dz": flat(z.grad)}

z = (2 * torch.randn(N, C, dtype=torch.float64)).requires_grad_()
k = torch.randint(0, C, (N,))
loss = F.cross_entropy(z, k)
loss.backward()
out["ce"] = {"z": flat(z), "targets": [int(v) for v in k.tolist()], "loss": loss.item(), "dz": flat(z.grad)}

a = torch.randn(N, C, dtype=torch.float64, requires_grad=True)
b = torch.randn(N, C, dtype=torch.float64, requires_grad=True)
# KL(p||q) with p = softmax(a), q = softmax(b): F.kl_div(log q, p, reduction='batchmean').
loss = F.kl_div(F.log_softmax(b, dim=1), F.softmax(a, dim=1), reduction="batchmean")
loss.backward()
out["kl"] = {"a": flat(a), "b": flat(b), "loss": loss.item(), "da": flat(a.grad), "db": flat(b.grad)}

path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "nn" / "loss_fixtures.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(out, indent=1) + "\n")
print("wrote", path)
