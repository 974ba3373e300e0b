"""Data sets for fastnn's examples, tests and benchmarks: MNIST, as the four original idx.gz files.

The wheel carries no data. load_mnist() reads a split's two files from the first of these
directories that holds both (mnist_search_path() lists them, in this order):

  1. $FASTNN_DATA/mnist, then $FASTNN_DATA itself. (FASTNN_MNIST_DIR, the old name for a
     directory holding the files, is still read after them, with a FutureWarning.)
  2. data/mnist of a fastnn source checkout: the current directory or its nearest parent whose
     pyproject.toml names the project fastnn, then the checkout the imported package lives in
     (see _paths). So the README's `.venv/bin/fastnn`, run inside a clone, reads the clone's copy
     offline, although the package it runs is installed in site-packages.
  3. The user cache: cache_dir()/mnist, i.e. $XDG_CACHE_HOME/fastnn/mnist or
     ~/.cache/fastnn/mnist on Linux, ~/Library/Caches/fastnn/mnist on macOS,
     %LOCALAPPDATA%\\fastnn\\Cache\\mnist on Windows.
  4. Otherwise it downloads the missing files from MNIST_URL (FASTNN_MNIST_URL overrides it) into
     the cache, checks each one's SHA-256 and renames it into place only if it matches.

The SHA-256 sums are those of the decompressed idx data, computed from the repository's copies
in data/mnist: those are recompressed, so their .gz bytes differ from the mirror's, but the
decompressed bytes are MNIST's original ones (the same sums are published beside the mirrors'
.gz sums), so one table checks both and any mirror's gzip.

read_idx() is a real idx parser (magic number, type and dimension checks), so a corrupt or
truncated file raises a clear ValueError instead of returning wrong data.
"""
import gzip
import hashlib
import os
import struct
import warnings
import zlib

import numpy as np

from . import _paths
from ._download import DownloadError, download
from ._paths import cache_dir

# torchvision's mirror of Yann LeCun's original files
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# file: (SHA-256 of the decompressed idx bytes, their length)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
    "train-labels-idx1-ubyte.gz": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
    "t10k-images-idx3-ubyte.gz": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
    "t10k-labels-idx1-ubyte.gz": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
}
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
    except (OSError, EOFError, zlib.error) as exc:
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


def mnist_search_path():
    """[(source, directory), ...]: where load_mnist looks for the files, in order. source is
    'FASTNN_DATA', 'FASTNN_MNIST_DIR', 'checkout' or 'cache'; the cache comes last and is where
    downloads go."""
    path = []
    data = os.environ.get("FASTNN_DATA")
    if data:
        path += [("FASTNN_DATA", os.path.join(data, "mnist")), ("FASTNN_DATA", data)]
    old = os.environ.get("FASTNN_MNIST_DIR")
    if old:
        path.append(("FASTNN_MNIST_DIR", old))
    path += [("checkout", os.path.join(root, "data", "mnist")) for root in _paths.checkout_roots()]
    path.append(("cache", os.path.join(cache_dir(), "mnist")))
    return path


def mnist_url():
    """The mirror's base URL: $FASTNN_MNIST_URL, else MNIST_URL; ends with '/'."""
    return (os.environ.get("FASTNN_MNIST_URL") or MNIST_URL).rstrip("/") + "/"


def _verify(name, url):
    """check(path) for download(): the decompressed bytes must have MNIST_FILES[name]'s length
    and SHA-256 (at most length + 1 bytes are decompressed, so no gzip bomb gets far)."""
    sha, size = MNIST_FILES[name]

    def check(path):
        digest, n = hashlib.sha256(), 0
        try:
            with gzip.open(path, "rb") as f:
                while n <= size:
                    chunk = f.read(min(1 << 20, size + 1 - n))
                    if not chunk:
                        break
                    digest.update(chunk)
                    n += len(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise DownloadError(f"{url} is not a valid gzip file ({exc}); SHA-256 check failed, "
                                f"nothing was kept") from None
        if n != size or digest.hexdigest() != sha:
            raise DownloadError(f"{url} failed its SHA-256 check: the data has SHA-256 "
                                f"{digest.hexdigest()[:16]}... ({n} bytes), expected {sha[:16]}... "
                                f"({size} bytes); nothing was kept")
    return check


def _fetch(name, cache, searched):
    url = mnist_url() + name
    try:
        download(url, os.path.join(cache, name), _verify(name, url),
                 max_bytes=MNIST_FILES[name][1] + (1 << 20), label=f"MNIST {name}")
    except DownloadError as exc:
        raise DownloadError(
            f"cannot download MNIST: {exc}. Looked for {name} in {', '.join(searched)}. Without "
            f"network access, fetch the four files from {mnist_url()} and set FASTNN_DATA to the "
            f"directory holding them (or holding mnist/ with them)") from None


def _locate(split):
    """The directory holding `split`'s two files, downloading the missing ones into the cache."""
    names = _FILES[split]
    path = mnist_search_path()
    if os.environ.get("FASTNN_MNIST_DIR"):
        warnings.warn("FASTNN_MNIST_DIR is deprecated: set FASTNN_DATA to the directory holding "
                      "the MNIST files (or holding mnist/ with them)", FutureWarning, stacklevel=3)
    found = next(((s, d) for s, d in path if all(os.path.isfile(os.path.join(d, n)) for n in names)),
                 (None, path[-1][1]))  # nowhere: the cache, after the download
    if os.environ.get("FASTNN_DATA") and found[0] != "FASTNN_DATA":
        warnings.warn(f"FASTNN_DATA={os.environ['FASTNN_DATA']} holds no MNIST {split} files "
                      f"({', '.join(names)}), nor does its mnist/; reading {found[1]}",
                      UserWarning, stacklevel=3)
    if found[0] is None:
        for name in names:
            if not os.path.isfile(os.path.join(found[1], name)):
                _fetch(name, found[1], [d for _, d in path])
    return found[1]


def load_mnist(split="train", dtype="float32", directory=None, limit=None):
    """(X, y): X is (n, 784) in [0, 1] of `dtype`, y is (n,) int64 digits 0-9.
    split: 'train' (60,000 images) or 'test' (10,000). limit: keep the first `limit` samples.
    directory: read the files from there only; by default they are looked for (and, as a last
    resort, downloaded) as the module's docstring says. Raises ValueError for unreadable files
    and DownloadError (an OSError) when the data is nowhere and cannot be downloaded."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    directory = os.fspath(directory) if directory is not None else _locate(split)
    images, labels = (os.path.join(directory, f) for f in _FILES[split])
    X = read_idx(images)
    y = read_idx(labels)
    if X.ndim != 3 or X.shape[1:] != (28, 28) or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"MNIST files in {directory} have unexpected shapes {X.shape}, {y.shape}")
    if limit is not None:
        X, y = X[:limit], y[:limit]
    X = X.reshape(len(X), 784).astype(dtype) / np.asarray(255, dtype)
    return np.ascontiguousarray(X), y.astype(np.int64)


__all__ = ["load_mnist", "read_idx", "mnist_search_path", "mnist_url", "cache_dir", "DownloadError",
           "MNIST_URL", "MNIST_FILES"]
