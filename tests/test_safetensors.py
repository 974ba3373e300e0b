"""fastnn's safetensors reader and writer (fastnn/files/safetensors.py) as a specification: exact
round trips, compatibility both ways with the official package, and a ValueError naming the file
and the problem for every malformed or hostile file, before any byte of data is trusted."""
import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.files import safetensors as sf

ARRAYS = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "f64": np.linspace(-1, 1, 5),
    "f16": np.array([1.5, -2.25], np.float16),
    "i64": np.array([[-(2 ** 62), 3]], np.int64),
    "i32": np.array([7], np.int32), "i16": np.array([-3], np.int16), "i8": np.array([-8, 9], np.int8),
    "u64": np.array([2 ** 63], np.uint64), "u32": np.array([1], np.uint32),
    "u16": np.array([65535], np.uint16), "u8": np.array([0, 255], np.uint8),
    "bool": np.array([True, False, True]),
    "scalar": np.array(3.25, np.float32),
    "empty": np.zeros((0, 3), np.float64),
    "big-endian": np.arange(4, dtype=">f4"),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
}
META = {"format": "test", "note": "ünïcode {[\"quoted\"]}"}


def assert_same(got, want):
    assert list(got) == list(want)
    for k in want:
        w = np.asarray(want[k])
        assert got[k].dtype == w.dtype.newbyteorder("=") and got[k].shape == w.shape, k
        np.testing.assert_array_equal(got[k], w, err_msg=k)
        assert got[k].flags.writeable and got[k].flags.c_contiguous and got[k].flags.owndata


def test_round_trip_every_dtype_and_shape(tmp_path):
    p = tmp_path / "t.safetensors"
    sf.save_file(ARRAYS, p, META)
    tensors, meta = sf.read_file(p)
    assert_same(tensors, ARRAYS)
    assert meta == META and sf.read_metadata(p) == META
    raw = p.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0 and raw[8:9] == b"{"  # the data starts 8-byte aligned, as the official writer's


def test_a_file_with_no_tensors_and_no_metadata_round_trips(tmp_path):
    p = tmp_path / "e.safetensors"
    sf.save_file({}, p)
    assert sf.read_file(p) == ({}, {})


def test_writing_refuses_what_safetensors_cannot_hold(tmp_path):
    p = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="no safetensors equivalent"):
        sf.save_file({"c": np.zeros(2, np.complex64)}, p)
    with pytest.raises(ValueError, match="names"):
        sf.save_file({"__metadata__": np.zeros(2)}, p)
    with pytest.raises(TypeError, match="str -> str"):
        sf.save_file({"a": np.zeros(2)}, p, {"k": 1})
    assert not p.exists() and os.listdir(tmp_path) == []


# -- compatibility with the official package -------------------------------------------------------
def test_the_official_package_reads_our_files(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open
    p = tmp_path / "ours.safetensors"
    sf.save_file(ARRAYS, p, META)
    theirs = st_numpy.load_file(str(p))
    assert sorted(theirs) == sorted(ARRAYS)
    for k, want in ARRAYS.items():
        assert theirs[k].shape == want.shape
        np.testing.assert_array_equal(theirs[k], want, err_msg=k)
    with safe_open(str(p), "np") as f:
        assert f.metadata() == META


def test_we_read_the_official_packages_files(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    p = tmp_path / "theirs.safetensors"
    arrays = {k: np.ascontiguousarray(v, v.dtype.newbyteorder("=")) for k, v in ARRAYS.items()}
    st_numpy.save_file(arrays, str(p), metadata=META)
    tensors, meta = sf.read_file(p)
    assert meta == META
    assert_same(tensors, {k: arrays[k] for k in tensors})  # their writer orders by alignment
    assert sorted(tensors) == sorted(arrays)


# -- hostile files -----------------------------------------------------------------------------------
def file_with(header, data=b"", raw_header=None, length=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


F32_2x2 = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}

HOSTILE = {
    "empty": (b"", "the file is empty"),
    "seven-bytes": (b"\x01" * 7, "7 bytes, too short"),
    "garbage": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "above the limit"),
    "small-garbage": (b"\x10\x00\x00\x00\x00\x00\x00\x00" + bytes(range(100, 164)), "not a JSON object"),
    "length-near-2**64": (struct.pack("<Q", 2 ** 64 - 1) + b"{}", "above the limit"),
    "length-above-cap": (struct.pack("<Q", sf.MAX_HEADER_BYTES + 1) + b"{}", "above the limit"),
    "length-past-end": (file_with(None, raw_header=b"{}", length=50), "truncated"),
    "not-json": (file_with(None, raw_header=b"{nope}   "), "not valid JSON"),
    "json-array": (file_with(None, raw_header=b"[1, 2]  "), "not a JSON object"),
    "not-utf8": (file_with(None, raw_header=b'{"\xff": 1}'), "not UTF-8"),
    "duplicate-key": (file_with(None, raw_header=b'{"a": {}, "a": {}}'), "duplicate key"),
    "deep-nesting": (file_with(None, raw_header=b"{" + b'"a":[' * 5000 + b"]" * 5000 + b"}"),
                     "nested 5001 deep"),
    "nan-offset": (file_with(None, raw_header=b'{"w": {"dtype": "F32", "shape": [1], '
                                              b'"data_offsets": [0, NaN]}}', data=bytes(4)), "NaN"),
    "huge-integer": (file_with(None, raw_header=b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000
                                + b'], "data_offsets": [0, 4]}}', data=bytes(4)), "5000 digits"),
    "unknown-dtype": (file_with({"w": {"dtype": "X99", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
                      "dtype 'X99'"),
    "bfloat16": (file_with({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, bytes(4)),
                 "dtype 'BF16'"),
    "extra-key": (file_with({"w": {**F32_2x2["w"], "evil": 1}}, bytes(16)), "exactly dtype, shape"),
    "entry-not-object": (file_with({"w": [1, 2]}, bytes(16)), "exactly dtype, shape"),
    "bool-in-shape": (file_with({"w": {"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}}, bytes(1)),
                      "shape"),
    "negative-dim": (file_with({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}, bytes(1)),
                     "shape"),
    "float-offset": (file_with({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1.0]}}, bytes(1)),
                     "two integers"),
    "negative-offset": (file_with({"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}}, bytes(1)),
                        "outside"),
    "offset-past-end": (file_with({"w": {"dtype": "F32", "shape": [2 ** 40],
                                         "data_offsets": [0, 2 ** 42]}}, bytes(16)), "outside"),
    "end-before-begin": (file_with({"w": {"dtype": "U8", "shape": [0], "data_offsets": [1, 0]}}, bytes(1)),
                         "outside"),
    "shape-mismatch": (file_with({"w": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 16]}},
                                 bytes(16)), "needs 24 bytes"),
    "shape-smaller-than-range": (file_with({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}},
                                           bytes(16)), "needs 8 bytes"),
    "shape-too-large": (file_with({"w": {"dtype": "F32", "shape": [0, 2 ** 62], "data_offsets": [0, 0]}}),
                        "too large"),
    "overlap": (file_with({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
                "overlaps"),
    "gap": (file_with({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                       "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, bytes(12)), "gap"),
    "not-from-zero": (file_with({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)),
                      "gap at byte 0"),
    "trailing-bytes": (file_with(F32_2x2, bytes(20)), "cover 16 of the 20"),
    "truncated-data": (file_with(F32_2x2, bytes(15)), "outside the 15 data bytes"),
    "metadata-not-strings": (file_with({"__metadata__": {"k": 1}}), "strings to strings"),
    "metadata-not-object": (file_with({"__metadata__": "k"}), "strings to strings"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_file_is_a_value_error_naming_the_file_and_the_problem(tmp_path, case):
    raw, problem = HOSTILE[case]
    p = tmp_path / f"{case}.safetensors"
    p.write_bytes(raw)
    for read in (sf.read_file, sf.read_metadata):
        with pytest.raises(ValueError) as info:
            read(p)
        assert str(p) in str(info.value) and problem in str(info.value), str(info.value)


def test_the_header_cap_is_checked_before_the_file_size(tmp_path):
    p = tmp_path / "sparse.safetensors"
    with open(p, "wb") as f:  # a sparse file larger than the cap: the cap still refuses it
        f.write(struct.pack("<Q", sf.MAX_HEADER_BYTES + 1) + b"{")
        f.truncate(sf.MAX_HEADER_BYTES + 64)
    with pytest.raises(ValueError, match="above the limit"):
        sf.read_file(p)


def test_valid_neighbours_of_the_hostile_files_load(tmp_path):
    # the checks are exact: each hostile case above is one step from a file that loads
    cases = {
        "exact": file_with(F32_2x2, np.arange(4, dtype="<f4").tobytes()),
        "touching": file_with({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
        "zero-size-at-end": file_with({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                       "z": {"dtype": "F64", "shape": [0, 5], "data_offsets": [4, 4]}},
                                      bytes(4)),
        "depth-at-limit": file_with({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"\x07"),
    }
    for name, raw in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(raw)
        tensors, _ = sf.read_file(p)
        assert tensors, name
    np.testing.assert_array_equal(sf.read_file(tmp_path / "exact.safetensors")[0]["w"],
                                  np.arange(4, dtype=np.float32).reshape(2, 2))


def test_not_a_regular_file_is_refused_without_blocking(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        sf.read_file(tmp_path)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
        with pytest.raises(ValueError, match="not a regular file"):
            sf.read_file(fifo)
    with pytest.raises(FileNotFoundError):
        sf.read_file(tmp_path / "absent.safetensors")


# -- the depth scan ----------------------------------------------------------------------------------
def depth_of(v):
    if isinstance(v, dict):
        return 1 + max((depth_of(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth_of(x) for x in v), default=0)
    return 0


TRICKY = st.text(alphabet='[]{}"\\ab\n', max_size=8)
JSON_VALUES = st.recursive(st.none() | st.integers() | TRICKY,
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TRICKY, kids, max_size=3),
                           max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_json_depth_ignores_brackets_and_escaped_quotes_inside_strings(v):
    text = json.dumps(v).encode()
    assert sf.json_depth(text) == depth_of(v)


def test_json_depth_carries_its_state_across_chunks(monkeypatch):
    monkeypatch.setattr(sf, "_CHUNK", 3)  # every string, escape and bracket run straddles chunks
    for v in (["a\\\"[[[", {"k\\\\": [[["]]"]]]}], "\\\\\\\"{", [[[[]]], {"a": [{"b": []}]}]):
        assert sf.json_depth(json.dumps(v).encode()) == depth_of(v), v
