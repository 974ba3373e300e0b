"""The MNIST copy that ships with fastnn and its idx reader."""
import gzip
import os

import numpy as np
import pytest

from fastnn.datasets import MNIST_DIR, load_mnist, read_idx


def test_mnist_ships_with_the_package_and_loads_as_784_features():
    X, y = load_mnist("test")
    assert X.shape == (10000, 784) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (10000,) and y.dtype == np.int64
    assert 0 <= X.min() and X.max() == 1 and set(np.unique(y)) == set(range(10))
    Xtr, ytr = load_mnist("train", dtype="float64", limit=500)
    assert Xtr.shape == (500, 784) and Xtr.dtype == np.float64 and ytr.shape == (500,)
    assert sorted(os.listdir(MNIST_DIR)) == sorted(
        ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
         "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"])


def _write(path, data, compress=True):
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return str(path)


def test_read_idx_parses_header_and_checks_the_size(tmp_path):
    header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    ok = _write(tmp_path / "ok.gz", header + bytes(range(6)))
    np.testing.assert_array_equal(read_idx(ok), np.arange(6, dtype=np.uint8).reshape(2, 3))
    raw = _write(tmp_path / "ok.idx", header + bytes(range(6)), compress=False)
    assert read_idx(raw).shape == (2, 3)
    with pytest.raises(ValueError, match="expected 6 bytes"):
        read_idx(_write(tmp_path / "short.gz", header + bytes(5)))
    with pytest.raises(ValueError, match="magic"):
        read_idx(_write(tmp_path / "magic.gz", b"PK\x03\x04" + bytes(20)))
    with pytest.raises(ValueError, match="truncated header"):
        read_idx(_write(tmp_path / "hdr.gz", bytes([0, 0, 0x08, 3]) + bytes(4)))
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(header + bytes(6))[:-8])  # cut gzip stream
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(str(broken))


def test_load_mnist_reports_missing_or_wrong_files(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_mnist("test", directory=str(tmp_path))
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")
