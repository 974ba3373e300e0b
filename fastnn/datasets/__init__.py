"""Datasets that ship with fastnn: MNIST (the four original idx.gz files, 11 MB, in
fastnn/datasets/mnist/). `load_mnist()` reads them with a real idx parser (magic number, type
and dimension checks), so a corrupt or truncated file raises a clear error instead of returning
wrong data. Set FASTNN_MNIST_DIR to read another copy."""
import gzip
import os
import struct

import numpy as np

MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read an idx file (optionally gzip-compressed) into a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read idx file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: expected {expected} bytes of data for shape {dims}, found {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def load_mnist(split="train", dtype="float32", directory=None, limit=None):
    """(X, y): X is (n, 784) in [0, 1] of `dtype`, y is (n,) int64 digits 0-9.
    split: 'train' (60,000 images) or 'test' (10,000). limit: keep the first `limit` samples."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    directory = directory or os.environ.get("FASTNN_MNIST_DIR") or MNIST_DIR
    images, labels = (os.path.join(directory, f) for f in _FILES[split])
    X = read_idx(images)
    y = read_idx(labels)
    if X.ndim != 3 or X.shape[1:] != (28, 28) or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"MNIST files in {directory} have unexpected shapes {X.shape}, {y.shape}")
    if limit is not None:
        X, y = X[:limit], y[:limit]
    X = X.reshape(len(X), 784).astype(dtype) / np.asarray(255, dtype)
    return np.ascontiguousarray(X), y.astype(np.int64)
