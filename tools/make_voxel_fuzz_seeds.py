#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seeds of tests/fuzz/corpus_voxel (fuzz_voxel: occupancy::voxel_field::from_bytes).

Valid voxel files (f32, f16, with rgb, one voxel) and malformed ones (a tensor shape that does not
match the header's resolution, an inverted box). Standard library only.
Usage: tools/make_voxel_fuzz_seeds.py [OUT_DIR]   (default tests/fuzz/corpus_voxel)
"""
import json
import os
import struct
import sys


def safetensors(tensors, meta):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fuzz", "corpus_voxel")
    os.makedirs(out, exist_ok=True)
    meta = {"format": "membound.voxel_field", "resolution": "2 2 2", "aabb": "0 0 0 1 1 1"}
    dens = [0, 1, 2, 3, 4, 5, 6, 7]
    files = {
        "valid_f32": ({"density": ("F32", [2, 2, 2], f32(dens))}, meta),
        "valid_rgb": ({"density": ("F32", [2, 2, 2], f32(dens)), "rgb": ("F32", [2, 2, 2, 3], f32([0.5] * 24))}, meta),
        "valid_f16": ({"density": ("F16", [2, 2, 2], struct.pack("<8e", *[float(x) for x in dens]))}, meta),
        "bad_shape": ({"density": ("F32", [2, 2, 2], f32(dens))}, dict(meta, resolution="2 2 1")),
        "bad_box": ({"density": ("F32", [2, 2, 2], f32(dens))}, dict(meta, aabb="0 0 0 1 -1 1")),
        "one_voxel": ({"density": ("F32", [1, 1, 1], f32([3]))},
                      {"format": "membound.voxel_field", "resolution": "1 1 1", "aabb": "-1 -1 -1 1 1 1"}),
    }
    for name, (tensors, m) in files.items():
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(safetensors(tensors, m))


if __name__ == "__main__":
    main()
