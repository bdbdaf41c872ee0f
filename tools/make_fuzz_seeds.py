#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hostile-input seeds of the fuzz corpora (issue: hostile files cannot crash membound).

tests/fuzz/corpus/       safetensors files: deep nesting in a tensor entry, in a shape and in a
                         __metadata__ value (arrays and objects), the zero-extent shape
                         [0, 2^40, 2^40, 2^40], a prefix overflow after which a 0 comes, long
                         numbers and escapes
tests/fuzz/corpus_index/ model.safetensors.index.json texts: valid routings to the shards the
                         fuzz_index target writes at start-up, deep nesting, escapes, bad paths

The deep seeds are 2,000 levels (4 KB, the smoke run's -max_len), far past the 128-level limit;
the unit tests build the 100,000-level case in memory. Standard library only; run from anywhere.
"""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
ST = ROOT / "tests" / "fuzz" / "corpus"
IX = ROOT / "tests" / "fuzz" / "corpus_index"


def safetensors(header: str, data: bytes = b"") -> bytes:
    h = header.encode()
    return struct.pack("<Q", len(h)) + h + data


def nested(depth: int, inner: str, kind: str) -> str:
    if kind == "array":
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


def main() -> None:
    ST.mkdir(parents=True, exist_ok=True)
    IX.mkdir(parents=True, exist_ok=True)
    deep = 2000
    entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    seeds = {
        "deep_entry_array": safetensors('{"w":' + nested(deep, "1", "array") + "}"),
        "deep_entry_object": safetensors('{"w":' + nested(deep, "1", "object") + "}"),
        "deep_shape": safetensors('{"w":{"dtype":"F32","shape":' + nested(deep, "1", "array")
                                  + ',"data_offsets":[0,4]}}', b"\0" * 4),
        "deep_metadata_array": safetensors('{"__metadata__":{"k":' + nested(deep, '"v"', "array") + "}}"),
        "deep_metadata_object": safetensors('{"__metadata__":' + nested(deep, '"v"', "object") + "}"),
        "depth_127_metadata": safetensors('{"__metadata__":{"k":' + nested(125, '"v"', "array") + "}}"),
        "zero_extent_huge": safetensors('{"w":{"dtype":"F32","shape":[0,1099511627776,1099511627776,'
                                        '1099511627776],"data_offsets":[0,0]}}'),
        "zero_extent_last": safetensors('{"w":{"dtype":"F32","shape":[1099511627776,1099511627776,'
                                        '1099511627776,0],"data_offsets":[0,0]}}'),
        "zero_extent_mixed": safetensors('{"e":{"dtype":"BF16","shape":[3,0,9223372036854775807],'
                                         '"data_offsets":[0,0]},"w":' + entry + "}", b"\0" * 4),
        "long_numbers": safetensors('{"w":{"dtype":"F32","shape":[1.0e0],"data_offsets":'
                                    '[00000000000000000000000000000000000000000000,4e0]}}', b"\0" * 4),
        "escapes": safetensors('{"\\u0077":' + entry + ',"__metadata__":{"\\ud83d\\ude00":"\\u0000\\n\\"\\\\"}}',
                               b"\0" * 4),
    }
    for name, blob in seeds.items():
        (ST / f"{name}.safetensors").write_bytes(blob)

    index = {
        "valid_two_shards": {"metadata": {"total_size": 36}, "weight_map": {"x": "a.safetensors",
                             "y": "a.safetensors", "z": "b.safetensors"}},
        "valid_one_shard": {"weight_map": {"z": "b.safetensors"}},
        "bad_missing_tensor": {"weight_map": {"q": "a.safetensors"}},
        "bad_shard_file": {"weight_map": {"x": "bad.safetensors"}},
        "bad_escape_path": {"weight_map": {"x": "../a.safetensors"}},
        "bad_absolute_path": {"weight_map": {"x": "/etc/passwd"}},
        "bad_no_such_shard": {"weight_map": {"x": "c.safetensors"}},
    }
    for name, obj in index.items():
        (IX / f"{name}.json").write_text(json.dumps(obj))
    (IX / "deep_metadata.json").write_text('{"metadata":' + nested(deep, "1", "object")
                                           + ',"weight_map":{}}')
    (IX / "deep_weight_map.json").write_text('{"weight_map":{"x":' + nested(deep, '"a.safetensors"', "array")
                                             + "}}")
    (IX / "escapes.json").write_text('{"metadata":{"\\u0000":"\\ud800"},"weight_map":{"\\u0078":"a.safe\\u0074ensors"}}')
    (IX / "duplicate_key.json").write_text('{"weight_map":{"x":"a.safetensors","x":"b.safetensors"}}')


if __name__ == "__main__":
    main()
