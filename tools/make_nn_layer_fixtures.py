#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/fixtures/nn/layer_fixtures.json for membound/nn/linear.hpp and activation.hpp:
torch.nn.functional.linear followed by each activation, and a 3-layer MLP's output and autograd
gradients (weights, biases, input) for a fixed upstream gradient. Values are computed in float64
from float32-representable inputs, so the C++ float layer is compared at float tolerance.

Run with Debian's python3 (torch 1.13): /usr/bin/python3 tools/make_nn_layer_fixtures.py
"""
import json
import pathlib

import torch
import torch.nn.functional as F

torch.manual_seed(11)


def f32(t):
    return t.float().double()  # representable in float32


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


acts = {
    "identity": lambda z: z,
    "relu": F.relu,
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    "gelu_erf": lambda z: F.gelu(z),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
}
out = {"torch_version": torch.__version__}
x = f32(torch.randn(4, 5) * 2)
w = f32(torch.randn(3, 5) * 0.5)
b = f32(torch.randn(3) * 0.5)
out["linear"] = {"x": flat(x), "w": flat(w), "b": flat(b), "y": {k: flat(a(F.linear(x, w, b))) for k, a in acts.items()}}

widths = [5, 8, 8, 2]
ws = [f32(torch.randn(widths[i + 1], widths[i]) * 0.4).requires_grad_() for i in range(3)]
bs = [f32(torch.randn(widths[i + 1]) * 0.1).requires_grad_() for i in range(3)]
xi = x.clone().requires_grad_()
h = xi
for i in range(3):
    h = F.linear(h, ws[i], bs[i])
    if i < 2:
        h = F.gelu(h, approximate="tanh")
g = f32(torch.randn(4, 2))
(h * g).sum().backward()
out["mlp"] = {
    "widths": widths, "hidden": "gelu_tanh", "output": "identity",
    "w": [flat(t) for t in ws], "b": [flat(t) for t in bs], "x": flat(x), "dout": flat(g),
    "out": flat(h), "dw": [flat(t.grad) for t in ws], "db": [flat(t.grad) for t in bs], "dx": flat(xi.grad),
}
path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "nn" / "layer_fixtures.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print("wrote", path)

# Norms and embedding (appended to the same file).
data = json.loads(path.read_text())
xn = f32(torch.randn(3, 6) * 3 + 1).requires_grad_()
wn = f32(torch.rand(6) + 0.5).requires_grad_()
bn = f32(torch.randn(6) * 0.2).requires_grad_()
gn = f32(torch.randn(3, 6))
y = F.layer_norm(xn, (6,), wn, bn, eps=1e-5)
(y * gn).sum().backward()
data["layer_norm"] = {"x": flat(xn), "w": flat(wn), "b": flat(bn), "dy": flat(gn), "y": flat(y),
                      "dx": flat(xn.grad), "dw": flat(wn.grad), "db": flat(bn.grad)}
xn.grad = None
wn.grad = None
y = xn * torch.rsqrt(xn.pow(2).mean(-1, keepdim=True) + 1e-6) * wn  # Llama's RMSNorm
(y * gn).sum().backward()
data["rms_norm"] = {"x": flat(xn), "w": flat(wn), "dy": flat(gn), "y": flat(y), "dx": flat(xn.grad), "dw": flat(wn.grad)}
table = f32(torch.randn(5, 3)).requires_grad_()
ids = torch.tensor([4, 0, 4, 2])
ge = f32(torch.randn(4, 3))
ye = F.embedding(ids, table)
(ye * ge).sum().backward()
data["embedding"] = {"table": flat(table), "ids": ids.tolist(), "dy": flat(ge), "y": flat(ye), "dtable": flat(table.grad)}
path.write_text(json.dumps(data, indent=1) + "\n")
print("added norms and embedding to", path)

# Convolutions (NCHW) with bias and activation, and BatchNorm folding (appended).
data = json.loads(path.read_text())
convs = []
for (cin, cout, k, s, p, groups, act, h, w) in [
    (3, 4, 3, 2, 1, 1, "relu", 9, 8),      # dense stem-like 3x3 stride 2
    (5, 6, 1, 1, 0, 1, "identity", 4, 3),  # pointwise
    (4, 4, 3, 1, 1, 4, "identity", 6, 7),  # depthwise 3x3
    (4, 4, 5, 2, 2, 4, "silu", 7, 6),      # depthwise 5x5 stride 2
    (2, 3, 7, 1, 3, 1, "gelu_erf", 5, 5),  # dense 7x7
    (3, 3, 3, 1, 1, 3, "identity", 1, 2),  # depthwise on an input narrower than the kernel
]:
    x = f32(torch.randn(2, cin, h, w))
    wt = f32(torch.randn(cout, cin // groups, k, k) * 0.3)
    b = f32(torch.randn(cout) * 0.1)
    y = acts[act](F.conv2d(x, wt, b, stride=s, padding=p, groups=groups))
    convs.append({"cin": cin, "cout": cout, "k": k, "stride": s, "pad": p, "groups": groups, "act": act,
                  "x_shape": list(x.shape), "x": flat(x), "w": flat(wt), "b": flat(b), "y_shape": list(y.shape), "y": flat(y)})
data["conv2d"] = convs
x = f32(torch.randn(1, 3, 5, 5))
wt = f32(torch.randn(4, 3, 3, 3) * 0.3)
b = f32(torch.randn(4) * 0.1)
bn = torch.nn.BatchNorm2d(4).double().eval()
with torch.no_grad():
    bn.weight.copy_(f32(torch.rand(4) + 0.5))
    bn.bias.copy_(f32(torch.randn(4) * 0.2))
    bn.running_mean.copy_(f32(torch.randn(4) * 0.3))
    bn.running_var.copy_(f32(torch.rand(4) + 0.3))
    y = bn(F.conv2d(x, wt, b, stride=1, padding=1))
data["bn_fold"] = {"x": flat(x), "w": flat(wt), "b": flat(b), "gamma": flat(bn.weight), "beta": flat(bn.bias),
                   "mean": flat(bn.running_mean), "var": flat(bn.running_var), "eps": bn.eps, "y": flat(y)}
path.write_text(json.dumps(data, indent=1) + "\n")
print("added convolutions to", path)

# Rotary embedding (Hugging Face Llama's rotate_half) and dense attention (appended).
data = json.loads(path.read_text())
T, H, D = 5, 2, 8
xr = f32(torch.randn(T, H, D))
pos = torch.tensor([0, 3, 1, 7, 2])
inv_freq = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
ang = pos.double()[:, None] * inv_freq[None, :]
emb = torch.cat([ang, ang], dim=-1)
cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
rot = torch.cat([-xr[..., D // 2:], xr[..., : D // 2]], dim=-1)
data["rope"] = {"x": flat(xr), "pos": pos.tolist(), "y": flat(xr * cos + rot * sin), "T": T, "H": H, "D": D}
H, T, S, D, Dv = 2, 3, 5, 4, 6
q, k, v = f32(torch.randn(H, T, D)), f32(torch.randn(H, S, D)), f32(torch.randn(H, S, Dv))
bias = f32(torch.randn(H, T, S) * 0.5)
sc = q @ k.transpose(1, 2) / D ** 0.5 + bias
mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
plain = torch.softmax(q @ k.transpose(1, 2) / D ** 0.5, dim=-1) @ v
biased = torch.softmax(sc, dim=-1) @ v
causal = torch.softmax((q @ k.transpose(1, 2) / D ** 0.5).masked_fill(~mask, float("-inf")), dim=-1) @ v
data["attention"] = {"q": flat(q), "k": flat(k), "v": flat(v), "bias": flat(bias), "plain": flat(plain),
                     "biased": flat(biased), "causal": flat(causal), "shape": [H, T, S, D, Dv]}
path.write_text(json.dumps(data, indent=1) + "\n")
print("added rope and attention to", path)
