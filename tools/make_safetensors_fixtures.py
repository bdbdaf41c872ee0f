#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the safetensors test fixtures with the REFERENCE implementation (huggingface/safetensors)
and checks files written by membound's writer with the reference reader.

Usage (from the repository root, in the venv of tools/requirements.txt):

    python tools/make_safetensors_fixtures.py
        Rewrites tests/fixtures/safetensors/* (all_dtypes, unaligned, sharded/, expected.json) and
        tests/fuzz/corpus/*, then checks every file with the reference reader: the valid ones must
        load, the invalid corpus seeds must be rejected. If
        tests/fixtures/safetensors/written_by_membound.safetensors exists it is verified as below.

    python tools/make_safetensors_fixtures.py --verify PATH [--like REF]
        Loads PATH with the reference reader (exit 1 if it refuses it). With --like, also checks
        that PATH holds exactly the tensors (names, dtypes, shapes, bytes) and metadata of REF.
        The unit test "writer output loads in the reference reader" rewrites all_dtypes with
        membound's writer into $TMPDIR/written_by_membound.<n>.safetensors (kept only when the
        check fails, its path is printed); it must equal the committed
        tests/fixtures/safetensors/written_by_membound.safetensors byte for byte, and this mode
        (run by default on the committed copy, --like all_dtypes.safetensors) proves the
        reference reader accepts it. Regenerate the committed copy by copying the test's output.

The reference writer is used for every dtype through the low-level `safetensors.serialize_file`
with raw bytes (`TensorSpec`), so BF16 and the F8 types need neither torch nor ml_dtypes;
`unaligned.safetensors` is written by hand (the reference writer always aligns) and checked to
load in the reference reader. Expected values are computed here independently of membound.
Reruns give the same files except the order of the __metadata__ keys in all_dtypes' header (the
reference keeps metadata in a hash map); its tensors and data are the same every time.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import safetensors
from safetensors import TensorSpec, deserialize, safe_open, serialize_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "safetensors")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

# safetensors dtype code -> the TensorSpec constructor name.
SPEC_NAME = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}


def f8_e4m3(b):
    """Independent decoder of F8_E4M3 (fn: no inf, S.1111.111 is NaN)."""
    s = -1.0 if b & 0x80 else 1.0
    e, m = (b >> 3) & 0xF, b & 7
    if e == 0xF and m == 7:
        return float("nan")
    if e == 0:
        return s * m * 2.0 ** -9
    return s * (1 + m / 8) * 2.0 ** (e - 7)


def f8_e5m2(b):
    """Independent decoder of F8_E5M2 (IEEE-like: e=31 is inf/NaN)."""
    s = -1.0 if b & 0x80 else 1.0
    e, m = (b >> 2) & 0x1F, b & 3
    if e == 0x1F:
        return s * math.inf if m == 0 else float("nan")
    if e == 0:
        return s * m * 2.0 ** -16
    return s * (1 + m / 4) * 2.0 ** (e - 15)


def jnum(x):
    """A float for the JSON sidecar: NaN and infinities as strings."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def tensor(dtype, shape, raw, values, as_float=None):
    return {"dtype": dtype, "shape": list(shape), "raw": bytes(raw), "values": values, "as_float": as_float}


def all_dtypes():
    """name -> tensor(...) covering every dtype, a scalar and an empty tensor."""
    t = {}
    f64 = np.array([0.0, -1.5, 3.25, 1e-3, 123456.789, -(2.0 ** -20)], dtype=np.float64)
    t["f64"] = tensor("F64", [2, 3], f64.tobytes(), [float(v) for v in f64],
                      [jnum(np.float32(v)) for v in f64])
    f32 = np.array([1.0, -2.5, 3.1415927, 6.1e-5], dtype=np.float32)
    t["f32"] = tensor("F32", [4], f32.tobytes(), [float(v) for v in f32], [float(v) for v in f32])
    f16_bits = np.array([0x3C00, 0xC000, 0x7BFF, 0x0001], dtype=np.uint16)  # 1, -2, 65504, 2^-24
    f16 = f16_bits.view(np.float16)
    t["f16"] = tensor("F16", [2, 2], f16.tobytes(), [int(b) for b in f16_bits],
                      [float(np.float32(v)) for v in f16])
    bf16_bits = np.array([0x3F80, 0xC040, 0x3E20, 0x7F7F], dtype=np.uint16)  # 1, -3, 0.15625, ~3.39e38
    bf16_f = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    t["bf16"] = tensor("BF16", [4], bf16_bits.tobytes(), [int(b) for b in bf16_bits], [float(v) for v in bf16_f])
    i64 = np.array([-9007199254740993, 0, 9223372036854775807], dtype=np.int64)
    t["i64"] = tensor("I64", [3], i64.tobytes(), [int(v) for v in i64])
    i32 = np.array([-2147483648, -1, 0, 2147483647], dtype=np.int32)
    t["i32"] = tensor("I32", [2, 2], i32.tobytes(), [int(v) for v in i32])
    i16 = np.array([-32768, 7, 32767], dtype=np.int16)
    t["i16"] = tensor("I16", [3], i16.tobytes(), [int(v) for v in i16])
    i8 = np.array([-128, -1, 0, 127], dtype=np.int8)
    t["i8"] = tensor("I8", [4], i8.tobytes(), [int(v) for v in i8])
    u8 = np.array([0, 1, 2, 254, 255], dtype=np.uint8)
    t["u8"] = tensor("U8", [5], u8.tobytes(), [int(v) for v in u8])
    bl = np.array([True, False, False, True])
    t["bool"] = tensor("BOOL", [2, 2], bl.tobytes(), [bool(v) for v in bl])
    e4 = [0x00, 0x38, 0xB8, 0x7E, 0x01, 0x7F, 0x40, 0x3C]  # 0, 1, -1, 448, 2^-9, NaN, 2, 1.5
    t["f8_e4m3"] = tensor("F8_E4M3", [8], bytes(e4), e4, [jnum(f8_e4m3(b)) for b in e4])
    e5 = [0x3C, 0xC0, 0x7B, 0x7C, 0x01, 0x7E]  # 1, -2, 57344, inf, 2^-16, NaN
    t["f8_e5m2"] = tensor("F8_E5M2", [2, 3], bytes(e5), e5, [jnum(f8_e5m2(b)) for b in e5])
    sc = np.array(42.0, dtype=np.float32)
    t["scalar"] = tensor("F32", [], sc.tobytes(), [42.0], [42.0])
    t["empty"] = tensor("F32", [0, 3], b"", [], [])
    return t


METADATA = {"format": "pt", "producer": "tools/make_safetensors_fixtures.py", "note": "ünïcode ✓"}


def write_reference(path, tensors, metadata=None):
    """Writes with the reference writer from raw bytes (keeps the buffers alive while it runs)."""
    keep, specs = [], {}
    for name, t in tensors.items():
        buf = np.frombuffer(t["raw"], dtype=np.uint8).copy() if t["raw"] else np.zeros(1, dtype=np.uint8)
        keep.append(buf)
        specs[name] = TensorSpec(dtype=SPEC_NAME[t["dtype"]], shape=t["shape"], data_ptr=buf.ctypes.data,
                                 data_len=len(t["raw"]))
    serialize_file(specs, path, metadata=metadata)
    os.chmod(path, 0o644)


def raw_file(header, data=b""):
    hb = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(hb)) + hb + data


def unaligned():
    """U8[3] then F32[2] at offset 3 then I64[1] at offset 11: misaligned for their types."""
    f32 = np.array([1.5, -7.25], dtype=np.float32)
    i64 = np.array([-123456789012345], dtype=np.int64)
    data = bytes([1, 2, 3]) + f32.tobytes() + i64.tobytes()
    header = json.dumps({
        "a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]},
        "c": {"dtype": "I64", "shape": [1], "data_offsets": [11, 19]},
    }, separators=(",", ":"))
    header += " " * ((8 - len(header) % 8) % 8)  # data section starts 8-aligned
    exp = {"a": [1, 2, 3], "b": [float(v) for v in f32], "c": [int(v) for v in i64]}
    return raw_file(header, data), exp


def sharded(out):
    d = os.path.join(out, "sharded")
    os.makedirs(d, exist_ok=True)
    emb = np.arange(6, dtype=np.float32) * 0.5
    l0 = np.array([0x3F80, 0x4000, 0x4040, 0x4080], dtype=np.uint16)  # bf16 1, 2, 3, 4
    l1 = np.array([0.25, -0.5, 8.0], dtype=np.float16)
    head = np.array([[1, -1], [2, -2]], dtype=np.float32)
    s1 = {"model.embed.weight": tensor("F32", [2, 3], emb.tobytes(), None),
          "model.layers.0.weight": tensor("BF16", [2, 2], l0.tobytes(), None)}
    s2 = {"model.layers.1.weight": tensor("F16", [3], l1.tobytes(), None),
          "lm_head.weight": tensor("F32", [2, 2], head.tobytes(), None)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write_reference(os.path.join(d, names[0]), s1, {"format": "pt"})
    write_reference(os.path.join(d, names[1]), s2, {"format": "pt"})
    total = sum(len(t["raw"]) for t in list(s1.values()) + list(s2.values()))
    index = {"metadata": {"total_size": total, "format": "pt"},
             "weight_map": {**{k: names[0] for k in s1}, **{k: names[1] for k in s2}}}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    exp = {"model.embed.weight": [float(v) for v in emb], "model.layers.0.weight": [1.0, 2.0, 3.0, 4.0],
           "model.layers.1.weight": [float(v) for v in l1], "lm_head.weight": [float(v) for v in head.ravel()]}
    return {"total_size": total, "as_float": exp, "shards": {k: names[0] for k in s1} | {k: names[1] for k in s2}}


def corpus(out):
    """Seeds for fuzz_safetensors: (file name, bytes, valid?)."""
    os.makedirs(out, exist_ok=True)
    seeds = []
    u8 = '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}'
    seeds.append(("valid_u8", raw_file(u8, b"ab"), True))
    seeds.append(("valid_empty", raw_file("{}      "), True))
    seeds.append(("valid_meta", raw_file('{"__metadata__":{"k":"v"},"x":{"dtype":"BOOL","shape":[1],'
                                         '"data_offsets":[0,1]}}', b"\x01"), True))
    seeds.append(("valid_f16_bf16", raw_file('{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},'
                                             '"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},'
                                             '"e":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[6,8]}}',
                                             b"\x00\x3c\x00\xc0\x80\x3f\x38\x7f"), True))
    seeds.append(("bad_gap", raw_file('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"ab"), False))
    seeds.append(("bad_reversed", raw_file('{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,0]}}', b"ab"), False))
    seeds.append(("bad_huge_shape", raw_file('{"a":{"dtype":"F32","shape":[4294967296,4294967296],'
                                             '"data_offsets":[0,4]}}', b"abcd"), False))
    seeds.append(("bad_dtype", raw_file('{"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}', b"a"), False))
    seeds.append(("bad_header_len", struct.pack("<Q", 1 << 40) + b"{}", False))
    seeds.append(("bad_trailing", raw_file(u8, b"abc"), False))
    seeds.append(("bad_meta", raw_file('{"__metadata__":{"k":1}}'), False))
    for name, data, _ in seeds:
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(data)
    return seeds


def reference_loads(data):
    try:
        deserialize(data)
        return True, ""
    except Exception as e:  # the reference raises SafetensorError
        return False, str(e)


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def verify(path, like=None):
    ok, why = reference_loads(read_all(path))
    if not ok:
        print(f"FAIL {path}: the reference reader rejects it: {why}")
        return False
    got = {n: (t["dtype"], list(t["shape"]), bytes(t["data"])) for n, t in deserialize(read_all(path))}
    print(f"ok   {path}: the reference reader loads {len(got)} tensors")
    if like is None:
        return True
    want = {n: (t["dtype"], list(t["shape"]), bytes(t["data"])) for n, t in deserialize(read_all(like))}
    with safe_open(path, framework="np") as f:
        meta_got = f.metadata() or {}
    with safe_open(like, framework="np") as f:
        meta_want = f.metadata() or {}
    if got != want:
        diff = sorted(set(got) ^ set(want)) or [n for n in got if got[n] != want[n]]
        print(f"FAIL {path}: tensors differ from {like}: {diff}")
        return False
    if meta_got != meta_want:
        print(f"FAIL {path}: metadata {meta_got} differs from {meta_want}")
        return False
    print(f"ok   {path}: same tensors and metadata as {like}")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", metavar="PATH")
    ap.add_argument("--like", metavar="REF")
    ap.add_argument("--out", default=FIX)
    ap.add_argument("--corpus", default=CORPUS)
    a = ap.parse_args()
    if a.verify:
        return 0 if verify(a.verify, a.like) else 1

    os.makedirs(a.out, exist_ok=True)
    t = all_dtypes()
    write_reference(os.path.join(a.out, "all_dtypes.safetensors"), t, METADATA)
    ua, ua_exp = unaligned()
    with open(os.path.join(a.out, "unaligned.safetensors"), "wb") as f:
        f.write(ua)
    sh = sharded(a.out)
    expected = {
        "generator": {"safetensors": safetensors.__version__, "numpy": np.__version__},
        "all_dtypes": {"metadata": METADATA,
                       "tensors": {n: {"dtype": v["dtype"], "shape": v["shape"], "values": v["values"],
                                       **({"as_float": v["as_float"]} if v["as_float"] is not None else {})}
                                   for n, v in t.items()}},
        "unaligned": ua_exp,
        "sharded": sh,
    }
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")

    ok = True
    for p in ["all_dtypes.safetensors", "unaligned.safetensors", "sharded/model-00001-of-00002.safetensors",
              "sharded/model-00002-of-00002.safetensors"]:
        ok &= verify(os.path.join(a.out, p))
    for name, data, valid in corpus(a.corpus):
        loads, why = reference_loads(data)
        if loads != valid:
            print(f"FAIL corpus seed {name}: reference {'loads' if loads else 'rejects'} it ({why})")
            ok = False
        else:
            print(f"ok   corpus seed {name}: reference {'loads' if loads else 'rejects: ' + why[:70]}")
    mine = os.path.join(a.out, "written_by_membound.safetensors")
    if os.path.exists(mine):
        ok &= verify(mine, os.path.join(a.out, "all_dtypes.safetensors"))
    else:
        print(f"note {mine} does not exist yet: run test_core and copy its output there")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
