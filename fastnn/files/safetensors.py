"""A small safetensors reader and writer in NumPy (https://github.com/huggingface/safetensors).

    [8 bytes] N, the header's length, unsigned little-endian
    [N bytes] a JSON object, UTF-8, padded with spaces:
              {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
               "__metadata__": {"<key>": "<value>", ...}}            (string to string)
    [rest]    the tensors' raw bytes, little-endian, C order; each tensor's range
              [begin, end) counts from the first byte after the header

A file is untrusted input. Before a byte of tensor data is trusted, the reader checks that:
  - the file is a regular file of at least 8 bytes; N <= MAX_HEADER_BYTES and 8 + N <= its size;
  - the header is UTF-8 JSON, an object, nested at most MAX_JSON_DEPTH deep, without duplicate
    keys, NaN or integers longer than 40 digits;
  - every entry has exactly dtype, shape and data_offsets; the dtype is one NumPy can hold; the
    shape is at most 64 non-negative integers; begin <= end are integers;
  - the ranges, in order, start at 0, touch without gap or overlap and end exactly at the end of
    the file; each range holds exactly prod(shape) x itemsize bytes.
Every violation is a ValueError naming the file and the problem. Tensor allocations never exceed
the file's own size (plus one copy of a tensor on a big-endian machine); nothing is evaluated.

The official package's rules are the same (its writer also pads the header to 8 bytes and orders
tensors by alignment); tests/test_model_files.py checks that each side reads the other's files.
"""
import json
import os
import stat
import struct

import numpy as np

MAX_HEADER_BYTES = 16 << 20     # the official reader allows 100 MB; a fastnn header needs far less
MAX_JSON_DEPTH = 8              # a safetensors header needs 3: {name: {shape: [...]}}
MAX_NDIM = 64
METADATA_KEY = "__metadata__"

DTYPES = {  # safetensors name -> little-endian NumPy dtype; BF16 and F8_* have no NumPy type
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


# -- writing ---------------------------------------------------------------------------------------
def header_for(tensors, metadata=None):
    """(header bytes with their 8-byte length prefix, [(name, little-endian C-order array)])."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of name -> array, not {type(tensors).__name__}")
    header, arrays, offset = {}, [], 0
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must be a dict of str -> str")
        header[METADATA_KEY] = dict(metadata)
    for name, a in tensors.items():
        if not isinstance(name, str) or not name or name == METADATA_KEY:
            raise ValueError(f"tensor names must be non-empty strings other than {METADATA_KEY!r}, "
                             f"got {name!r}")
        a = np.asarray(a)
        key = (a.dtype.kind, a.dtype.itemsize)
        if key not in _NAMES:
            raise TypeError(f"tensor {name!r}: dtype {a.dtype} has no safetensors equivalent")
        dtype_name = _NAMES[key]
        a = np.asarray(a, dtype=DTYPES[dtype_name])
        if not a.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
            a = a.copy(order="C")
        header[name] = {"dtype": dtype_name, "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        arrays.append((name, a))
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the official writer's does
    return struct.pack("<Q", len(text)) + text, arrays


def dump(f, tensors, metadata=None):
    """Write a safetensors file into the binary file object `f`."""
    head, arrays = header_for(tensors, metadata)
    f.write(head)
    for _, a in arrays:
        if a.nbytes:
            f.write(a.reshape(-1).view(np.uint8).data)


def save_file(tensors, path, metadata=None):
    """Write `tensors` (name -> array) and `metadata` (str -> str) to `path`, atomically (see
    fastnn.files.atomic): the file is either the new one, complete, or what was there before."""
    from .atomic import atomic_write
    header_for(tensors, metadata)  # refuse bad input before anything is created
    atomic_write(path, lambda f: dump(f, tensors, metadata))


# -- reading ---------------------------------------------------------------------------------------
_CHUNK = 1 << 20


def json_depth(raw):
    """The deepest nesting of objects and arrays in the JSON bytes `raw`, brackets inside strings
    ignored: one vectorised pass over 1 MiB chunks (linear time, bounded memory, no recursion).
    For text that is not valid JSON it is exact up to the first error, which is as far as a
    parser gets, so it bounds the depth a parser would reach."""
    deepest = depth = run_in = 0  # run_in: backslashes just before the chunk
    quotes_in = 0                 # parity of the unescaped quotes before the chunk
    for start in range(0, len(raw), _CHUNK):
        c = np.frombuffer(raw, np.uint8, count=min(_CHUNK, len(raw) - start), offset=start)
        pos = np.arange(c.size)
        last_plain = np.maximum.accumulate(np.where(c == 0x5C, -1, pos))  # last non-backslash
        before = np.concatenate(([-1], last_plain[:-1]))
        run = pos - 1 - before + np.where(before < 0, run_in, 0)  # backslashes right before each byte
        quote = (c == 0x22) & (run % 2 == 0)
        inside = (np.cumsum(quote) + quotes_in) % 2 == 1
        step = np.where(inside, 0, (c == 0x7B).astype(np.int64) + (c == 0x5B) - (c == 0x7D) - (c == 0x5D))
        level = np.cumsum(step) + depth
        deepest, depth = max(deepest, int(level.max())), int(level[-1])
        quotes_in = (quotes_in + int(quote.sum())) % 2
        run_in = c.size - 1 - int(last_plain[-1]) + (run_in if last_plain[-1] < 0 else 0)
    return deepest


def _unique_object(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def _short_int(text):
    if len(text) > 40:  # converting a long digit string costs quadratic time on Python < 3.11
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw, max_depth, what="JSON", allow_nan=False):
    """json.loads for untrusted `raw` (bytes or str): nested at most `max_depth` deep, no
    duplicate keys, integers of at most 40 digits, NaN / Infinity only with allow_nan. Raises
    ValueError for anything else (never RecursionError)."""
    raw = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    depth = 0 if raw.count(b"[") + raw.count(b"{") <= max_depth else json_depth(raw)
    if depth > max_depth:
        raise ValueError(f"{what} is nested {depth} deep (at most {max_depth} allowed)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_object, parse_int=_short_int,
                          **({} if allow_nan else {"parse_constant": _no_constant}))
    except RecursionError:  # cannot happen below max_depth; kept so no input escapes as one
        raise ValueError(f"{what} is nested too deep") from None
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_entry(name, e, data_len):
    if not isinstance(e, dict) or set(e) != _ENTRY_KEYS:
        keys = sorted(e) if isinstance(e, dict) else type(e).__name__
        raise ValueError(f"tensor {name!r} must have exactly dtype, shape and data_offsets, got {keys}")
    if not isinstance(e["dtype"], str) or e["dtype"] not in DTYPES:
        raise ValueError(f"tensor {name!r} has dtype {e['dtype']!r}, which fastnn cannot read "
                         f"(known: {', '.join(DTYPES)})")
    shape, offs = e["shape"], e["data_offsets"]
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
        raise ValueError(f"tensor {name!r} has shape {shape!r}: a list of at most {MAX_NDIM} "
                         f"non-negative integers is needed")
    if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)):
        raise ValueError(f"tensor {name!r} has data_offsets {offs!r}: two integers are needed")
    begin, end = offs
    if not 0 <= begin <= end <= data_len:
        raise ValueError(f"tensor {name!r} has data_offsets [{begin}, {end}] outside the "
                         f"{data_len} data bytes the file holds")
    dtype = DTYPES[e["dtype"]]
    n = extent = 1
    for d in shape:
        n, extent = n * d, extent * max(d, 1)
    if extent * dtype.itemsize >= 2 ** 62:  # NumPy cannot describe it, even with no elements
        raise ValueError(f"tensor {name!r} has shape {shape}, too large to describe")
    if n * dtype.itemsize != end - begin:
        raise ValueError(f"tensor {name!r}: shape {shape} of {e['dtype']} needs {n * dtype.itemsize} "
                         f"bytes, but its data_offsets [{begin}, {end}] hold {end - begin}")
    return dtype, tuple(shape), begin, end


def read_header(f, size, path):
    """(entries {name: (dtype, shape, begin, end)}, metadata, data start) of an open file of
    `size` bytes, every rule of the module docstring checked."""
    def bad(problem):
        return ValueError(f"{path}: not a valid safetensors file: {problem}")

    if size == 0:
        raise bad("the file is empty")
    if size < 8:
        raise bad(f"the file is {size} bytes, too short for the 8-byte header length")
    n = struct.unpack("<Q", f.read(8))[0]
    if n > MAX_HEADER_BYTES:
        raise bad(f"the header length is {n} bytes, above the limit of {MAX_HEADER_BYTES}")
    if 8 + n > size:
        raise bad(f"the header length is {n} bytes, but the file holds only {size - 8} after it "
                  f"(truncated?)")
    raw = f.read(n)
    if len(raw) != n:
        raise bad(f"the file ended after {len(raw)} of the header's {n} bytes")
    if not raw.startswith(b"{"):
        raise bad("the header is not a JSON object")
    try:
        header = parse_json(raw, MAX_JSON_DEPTH, "the header")
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop(METADATA_KEY, None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise bad(f"{METADATA_KEY} must map strings to strings")
    data_len = size - 8 - n
    entries = {}
    try:
        for name, e in header.items():
            entries[name] = _check_entry(name, e, data_len)
    except ValueError as exc:
        raise bad(str(exc)) from None
    cursor = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != cursor:
            what = "overlaps the tensor before it" if begin < cursor else f"leaves a gap at byte {cursor}"
            raise bad(f"tensor {name!r} (data_offsets [{begin}, {end}]) {what}")
        cursor = end
    if cursor != data_len:
        raise bad(f"the tensors cover {cursor} of the {data_len} data bytes (truncated, or bytes "
                  f"appended?)")
    return entries, (metadata or {}), 8 + n


def _open_regular(path):
    try:
        st = os.stat(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device could block or never end
        raise ValueError(f"{os.fspath(path)}: not a regular file")
    return open(path, "rb")


def read_file(path):
    """(tensors {name: array}, metadata {str: str}) of the safetensors file at `path`: arrays in
    native byte order, writeable, each its own memory, in the file's header order."""
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        entries, metadata, start = read_header(f, size, os.fspath(path))
        tensors = {}
        for name, (dtype, shape, begin, end) in entries.items():
            a = np.empty(shape, dtype)
            if end > begin:
                f.seek(start + begin)
                got = f.readinto(a.reshape(-1).view(np.uint8).data)
                if got != end - begin:  # the file shrank while it was being read
                    raise ValueError(f"{os.fspath(path)}: not a valid safetensors file: tensor "
                                     f"{name!r} ended after {got} of its {end - begin} bytes")
            tensors[name] = a.astype(dtype.newbyteorder("="), copy=False)
    return tensors, metadata


def read_metadata(path):
    """The `__metadata__` map alone (the header is checked as read_file checks it)."""
    with _open_regular(path) as f:
        return read_header(f, os.fstat(f.fileno()).st_size, os.fspath(path))[1]
