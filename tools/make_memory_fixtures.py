#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/fixtures/memory/memory_fixtures.json: reference trajectories for membound's
test-time memory (include/membound/memory/, ATLAS / Titans / Omega rule), computed with PyTorch.

Usage (from the repository root, with Debian's python3-torch 1.13):

    /usr/bin/python3 tools/make_memory_fixtures.py

The reference follows the library's conventions directly:
- feature maps phi (identity, elu_plus_one, polynomial with coefficients a_i: blocks of degree
  0..p, monomials in itertools.combinations_with_replacement order, each scaled by
  sqrt(a_i * i! / prod count_m!) so that phi(q) . phi(k) = sum_i a_i (q . k)^i);
- memories matrix / mlp / gated_mlp, weights in the order they are applied;
- per-token loss l2 (1/2 ||M(phi(k_i)) - v_i||^2) or dot (-<M(phi(k_i)), v_i>), summed over the
  window L_t = sum_{i=t-c+1}^{t} gamma_t[t-i] l_i;
- the inner gradient g_t = dL_t/dW is taken with torch.autograd.grad at the gradient point
  (recurrent: M_{t-1}; chunked with chunk size b: the memory after the previous chunk);
- optimisers gd (M = alpha M - eta g), momentum (S = theta S - eta g; M = alpha M + S) and muon
  (S = theta S + g; M = alpha M - eta NS5(S), NS5 with a, b, c = 3.4445, -4.7750, 2.0315 and
  Frobenius normalisation + 1e-7, transposed when tall);
- reads y_t = M_t(phi(q_t)) after token t's update.

Inputs (q, k, v, gates, initial weights) are drawn in float32 (fixed seeds) and written with repr()
of the float64 they widen to, so the C++ side reads back the exact float32 values. Everything else
is computed in float64 from those values and written as float64. Two independent checks run before
writing: the matrix/l2/gd case against the closed-form update
M_t = M_{t-1} (alpha_t I - sum_i gamma phi_i phi_i^T) + sum_i gamma v_i phi_i^T (recurrent and chunked),
and the polynomial features against the kernel identity. One thread, deterministic.

JSON layout (all arrays flat, row-major, with their shapes given separately):
  "cases": list of
    name, memory ("matrix" | "mlp" | "gated_mlp"), depth, hidden, activation, residual (bool),
    rule ("l2" | "dot"), window, gamma_mode ("band" | "ones"), features, poly_degree,
    poly_coeffs (list, empty unless polynomial), optimizer ("gd" | "momentum" | "muon"),
    eta_range (the range eta was drawn from), ns_steps, ns_coeffs, chunk_size, T, d_k, d_v, D,
    q (T,d_k), k (T,d_k), v (T,d_v), alpha, eta, theta (T,), gamma (T,window) with gamma_shape,
    weight_names, weight_shapes, weights0 (list of flat matrices, in weight_names order),
    recurrent / chunked: {y (T,d_v), weights (final, same order), momentum (final S per matrix,
    same order; present only for the momentum and muon optimisers)},
    float32_drift: {recurrent, chunked}: max |x32 - x64| / (1 + |x64|) over y, weights and momenta
    when this same reference runs in float32 (a lower bound for a float32 implementation's error)
  "poly_features": list of {d_k, degree, coeffs, x, phi}
"""
import itertools
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
SEED = 20250529
T = 13
CHUNK = 4
NS_STEPS = 5
NS_COEFFS = (3.4445, -4.7750, 2.0315)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "memory",
                   "memory_fixtures.json")
f64 = torch.float64


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def f32(t):
    """float32 values, held as float64 for the reference computation."""
    return t.to(torch.float32).to(f64)


# ---- feature maps --------------------------------------------------------------------------------
def poly_coeffs(degree, coeffs=None):
    return [1.0 / math.factorial(i) for i in range(degree + 1)] if coeffs is None else list(coeffs)


def poly_features(x, degree, coeffs):
    """x (N, d) -> (N, C(d + degree, degree)), ordering and scaling as documented above."""
    n, d = x.shape
    cols = []
    for i in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(d), i):
            mult = math.factorial(i)
            for m in set(combo):
                mult //= math.factorial(combo.count(m))
            col = torch.full((n,), math.sqrt(coeffs[i] * mult), dtype=x.dtype)
            for j in combo:
                col = col * x[:, j]
            cols.append(col)
    return torch.stack(cols, dim=1)


def features(cfg, x):
    kind = cfg["features"]
    if kind == "identity":
        return x.clone()
    if kind == "elu_plus_one":
        return F.elu(x) + 1.0
    if kind == "polynomial":
        return poly_features(x, cfg["poly_degree"], cfg["poly_coeffs"])
    raise ValueError(kind)


# ---- memories ------------------------------------------------------------------------------------
ACTS = {
    "gelu_erf": lambda z: F.gelu(z),
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
}


def weight_shapes(cfg):
    D, H, dv = cfg["D"], cfg["hidden"], cfg["d_v"]
    if cfg["memory"] == "matrix":
        return [(dv, D)]
    if cfg["memory"] == "mlp":
        return [(H, D)] + [(H, H)] * (cfg["depth"] - 2) + [(dv, H)]
    if cfg["memory"] == "gated_mlp":
        return [(H, D), (H, D), (dv, H)]
    raise ValueError(cfg["memory"])


def memory_forward(cfg, Ws, x):
    """x (N, D) -> (N, d_v)."""
    if cfg["memory"] == "matrix":
        return x @ Ws[0].T
    act = ACTS[cfg["activation"]]
    if cfg["memory"] == "mlp":
        h = x
        for W in Ws[:-1]:
            h = act(h @ W.T)
        y = h @ Ws[-1].T
    else:  # gated_mlp
        y = (act(x @ Ws[0].T) * (x @ Ws[1].T)) @ Ws[2].T
    if cfg["residual"]:
        y = y + x
    return y


def window_loss(cfg, Ws, phik, v, gamma, t):
    """L_t(W) (t 0-based) = sum_{i=max(0,t-c+1)}^{t} gamma[t, t-i] l_i(W)."""
    lo = max(0, t - cfg["window"] + 1)
    idx = torch.arange(lo, t + 1)
    w = gamma[t, t - idx]
    pred = memory_forward(cfg, Ws, phik[lo:t + 1])
    if cfg["rule"] == "l2":
        per = 0.5 * ((pred - v[lo:t + 1]) ** 2).sum(dim=1)
    elif cfg["rule"] == "dot":
        per = -(pred * v[lo:t + 1]).sum(dim=1)
    else:
        raise ValueError(cfg["rule"])
    return (w * per).sum()


# ---- optimisers ----------------------------------------------------------------------------------
def ns5(G):
    a, b, c = NS_COEFFS
    tall = G.shape[0] > G.shape[1]
    X = G.T if tall else G
    X = X / (torch.linalg.norm(X) + 1e-7)  # Frobenius
    for _ in range(NS_STEPS):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.T if tall else X


def run(cfg, inp, W0s, chunk):
    """Runs the memory over all tokens. chunk = 1 is the recurrent mode. Returns y, Ms, Ss."""
    phik, phiq = features(cfg, inp["k"]), features(cfg, inp["q"])
    Ms = [W.clone() for W in W0s]
    Ss = [torch.zeros_like(W) for W in W0s]
    point = None
    ys = []
    for t in range(T):
        if t % chunk == 0:
            point = [M.clone() for M in Ms]  # memory after the previous chunk (M_{t-1} if chunk == 1)
        Wp = [P.clone().requires_grad_(True) for P in point]
        L = window_loss(cfg, Wp, phik, inp["v"], inp["gamma"], t)
        gs = torch.autograd.grad(L, Wp)
        al, et, th = inp["alpha"][t], inp["eta"][t], inp["theta"][t]
        for j, g in enumerate(gs):
            if cfg["optimizer"] == "gd":
                Ms[j] = al * Ms[j] - et * g
            elif cfg["optimizer"] == "momentum":
                Ss[j] = th * Ss[j] - et * g
                Ms[j] = al * Ms[j] + Ss[j]
            elif cfg["optimizer"] == "muon":
                Ss[j] = th * Ss[j] + g
                Ms[j] = al * Ms[j] - et * ns5(Ss[j])
            else:
                raise ValueError(cfg["optimizer"])
        with torch.no_grad():
            ys.append(memory_forward(cfg, Ms, phiq[t:t + 1])[0])
    return torch.stack(ys), Ms, Ss


def closed_form_matrix_l2_gd(cfg, inp, W0, chunk):
    """Independent check for matrix memory, l2 rule, gd: the gradient of the window loss at P is
    P sum_i gamma phi_i phi_i^T - sum_i gamma v_i phi_i^T."""
    phik = features(cfg, inp["k"])
    M, P = W0.clone(), None
    for t in range(T):
        if t % chunk == 0:
            P = M.clone()
        A = torch.zeros(cfg["D"], cfg["D"], dtype=f64)
        Bv = torch.zeros(cfg["d_v"], cfg["D"], dtype=f64)
        for i in range(max(0, t - cfg["window"] + 1), t + 1):
            gm = inp["gamma"][t, t - i]
            A += gm * torch.outer(phik[i], phik[i])
            Bv += gm * torch.outer(inp["v"][i], phik[i])
        M = inp["alpha"][t] * M - inp["eta"][t] * (P @ A - Bv)
    return M


# ---- cases ---------------------------------------------------------------------------------------
BASE = dict(name="", memory="mlp", depth=2, hidden=8, activation="gelu_erf", residual=False, rule="l2", window=1,
            gamma_mode="ones", features="identity", poly_degree=0, poly_coeffs=[], optimizer="gd",
            d_k=4, d_v=5, eta_range=[0.05, 0.3])
CASES = [
    dict(BASE, name="titans", optimizer="momentum"),
    dict(BASE, name="titans_residual", optimizer="momentum", residual=True, d_k=5, d_v=5),
    dict(BASE, name="atlas", window=3, gamma_mode="band", features="polynomial", poly_degree=2,
         poly_coeffs=[1.0, 1.0, 0.5], optimizer="muon"),
    # extra: depth 3 (a hidden H x H layer), gelu_tanh, identity features so that W0 (8, 4) is tall
    # and NS5 takes its transposed branch (the atlas case's matrices are all wide).
    dict(BASE, name="atlas_deep", depth=3, activation="gelu_tanh", window=3, gamma_mode="band",
         optimizer="muon"),
    dict(BASE, name="omega_matrix", memory="matrix", depth=1, hidden=0, activation="none", window=3,
         gamma_mode="band", features="polynomial", poly_degree=2, poly_coeffs=poly_coeffs(2)),
    # The dot (Hebbian) loss is unbounded below and the gated MLP is cubic in its weights, so with
    # eta in [0.05, 0.3] the memory runs away (|y| ~ 1e11 by token 13); this case uses eta in
    # [0.01, 0.05], which keeps every value O(1).
    dict(BASE, name="gated_dot", memory="gated_mlp", depth=2, activation="silu", rule="dot", window=2,
         features="elu_plus_one", eta_range=[0.01, 0.05]),
]


def make_case(idx, cfg):
    cfg = dict(cfg)
    cfg["D"] = math.comb(cfg["d_k"] + cfg["poly_degree"], cfg["poly_degree"]) \
        if cfg["features"] == "polynomial" else cfg["d_k"]
    if cfg["residual"]:
        assert cfg["D"] == cfg["d_v"]
    cfg["chunk_size"] = CHUNK
    cfg["ns_steps"] = NS_STEPS if cfg["optimizer"] == "muon" else 0
    cfg["ns_coeffs"] = list(NS_COEFFS) if cfg["optimizer"] == "muon" else []
    cfg["T"] = T
    torch.manual_seed(SEED + idx)
    dk, dv, c = cfg["d_k"], cfg["d_v"], cfg["window"]
    r32 = dict(dtype=torch.float32)
    inp = {
        "q": torch.randn(T, dk, **r32) * 0.5,
        "k": torch.randn(T, dk, **r32) * 0.5,
        "v": torch.randn(T, dv, **r32) * 0.5,
        "alpha": (0.9 + 0.1 * torch.rand(T, **r32)).clamp(max=1.0 - 2.0 ** -24),  # stay below 1
        "eta": cfg["eta_range"][0] + (cfg["eta_range"][1] - cfg["eta_range"][0]) * torch.rand(T, **r32),
        "theta": 0.5 + 0.4 * torch.rand(T, **r32),
    }
    inp["gamma"] = 0.3 + 0.7 * torch.rand(T, c, **r32) if cfg["gamma_mode"] == "band" else torch.ones(T, c, **r32)
    shapes = weight_shapes(cfg)
    W0s = [f32(torch.randn(*s, **r32) * 0.5) for s in shapes]
    inp = {key: f32(val) for key, val in inp.items()}

    y_r, M_r, S_r = run(cfg, inp, W0s, 1)
    y_c, M_c, S_c = run(cfg, inp, W0s, CHUNK)

    if cfg["memory"] == "matrix" and cfg["rule"] == "l2" and cfg["optimizer"] == "gd":
        for chunk, M in ((1, M_r[0]), (CHUNK, M_c[0])):
            err = (closed_form_matrix_l2_gd(cfg, inp, W0s[0], chunk) - M).abs().max().item()
            assert err < 1e-12, (cfg["name"], chunk, err)

    out = dict(cfg)
    for key in ("q", "k", "v", "alpha", "eta", "theta", "gamma"):
        out[key] = flat(inp[key])
    out["gamma_shape"] = [T, c]
    out["weight_names"] = [f"W{j}" for j in range(len(shapes))]
    out["weight_shapes"] = [list(s) for s in shapes]
    out["weights0"] = [flat(W) for W in W0s]
    has_s = cfg["optimizer"] in ("momentum", "muon")
    for mode, (y, Ms, Ss) in (("recurrent", (y_r, M_r, S_r)), ("chunked", (y_c, M_c, S_c))):
        out[mode] = {"y": flat(y), "weights": [flat(M) for M in Ms]}
        if has_s:
            out[mode]["momentum"] = [flat(S) for S in Ss]
    # How far the same reference drifts when run in float32 (a hint for the C++ tolerances):
    # max |x32 - x64| / (1 + |x64|) over y, final weights and momenta.
    def rel(a, b):
        return (a.to(f64) - b).abs().div(1 + b.abs()).max().item()
    inp32 = {key: val.to(torch.float32) for key, val in inp.items()}
    W32 = [W.to(torch.float32) for W in W0s]
    out["float32_drift"] = {}
    for mode, chunk, (y, Ms, Ss) in (("recurrent", 1, (y_r, M_r, S_r)), ("chunked", CHUNK, (y_c, M_c, S_c))):
        y32, M32, S32 = run(cfg, inp32, W32, chunk)
        out["float32_drift"][mode] = max([rel(y32, y)] + [rel(a, b) for a, b in zip(M32 + S32, Ms + Ss)])
    dy = (y_r - y_c).abs().max().item()
    dw = max((a - b).abs().max().item() for a, b in zip(M_r, M_c))
    print(f"{cfg['name']:16s} {cfg['memory']:9s} {cfg['rule']:3s} c={c} {cfg['features']:12s} D={cfg['D']:2d} "
          f"{cfg['optimizer']:8s} weights={[list(s) for s in shapes]} max|y_rec|={y_r.abs().max().item():.4f} "
          f"max|y_rec-y_chunk|={dy:.3e} max|W_rec-W_chunk|={dw:.3e} "
          f"float32 drift rec/chunk={out['float32_drift']['recurrent']:.1e}/{out['float32_drift']['chunked']:.1e}")
    return out


def poly_checks():
    torch.manual_seed(SEED + 100)
    out = []
    xs = [f32(torch.randn(4, dtype=torch.float32) * 0.7) for _ in range(3)]
    for degree in (2, 3):
        a = poly_coeffs(degree)
        for x in xs:
            phi = poly_features(x[None, :], degree, a)[0]
            assert phi.numel() == math.comb(4 + degree, degree)
            out.append({"d_k": 4, "degree": degree, "coeffs": a, "x": flat(x), "phi": flat(phi)})
        # kernel identity phi(q) . phi(k) = sum_i a_i (q . k)^i
        P = poly_features(torch.stack(xs), degree, a)
        for i in range(3):
            for j in range(3):
                s = float(xs[i] @ xs[j])
                want = sum(a[m] * s ** m for m in range(degree + 1))
                assert abs(float(P[i] @ P[j]) - want) < 1e-12
    print(f"poly_features    {len(out)} vectors (d_k=4, degree 2 and 3, a_i = 1/i!), kernel identity holds")
    return out


def dumps(obj, indent=0):
    """JSON with one key per line but number lists on a single line (keeps the file small)."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(e, (dict, list)) for e in obj):
        return "[\n" + ",\n".join(pad + " " + dumps(e, indent + 1) for e in obj) + "\n" + pad + "]"
    return json.dumps(obj)


fixtures = {
    "generator": "tools/make_memory_fixtures.py",
    "torch_version": torch.__version__,
    "cases": [make_case(i, c) for i, c in enumerate(CASES)],
    "poly_features": poly_checks(),
}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
text = dumps(fixtures) + "\n"
json.loads(text)  # round-trip sanity
with open(OUT, "w") as f:
    f.write(text)
print("wrote", os.path.normpath(OUT), f"({len(text)} bytes)", file=sys.stderr)
