"""MNIST: the repository's copy, where load_mnist looks for it (FASTNN_DATA, the checkout being
run, the user cache) and the verified download into the cache, against a local HTTP server."""
import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import fastnn.datasets as datasets
from fastnn.datasets import MNIST_FILES, DownloadError, load_mnist, mnist_search_path, read_idx
from fastnn.datasets import _download, _paths

REPO_MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist"
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
needs_repo_copy = pytest.mark.skipif(not REPO_MNIST.is_dir(), reason="no data/mnist beside the tests")


@needs_repo_copy
def test_the_repository_copy_holds_the_four_files_the_checksums_describe():
    assert sorted(os.listdir(REPO_MNIST)) == sorted(MNIST_FILES)
    for name, (sha, size) in MNIST_FILES.items():
        with gzip.open(REPO_MNIST / name, "rb") as f:
            data = f.read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha), name


def test_mnist_loads_as_784_features():
    X, y = load_mnist("test")
    assert X.shape == (10000, 784) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (10000,) and y.dtype == np.int64
    assert 0 <= X.min() and X.max() == 1 and set(np.unique(y)) == set(range(10))
    Xtr, ytr = load_mnist("train", dtype="float64", limit=500)
    assert Xtr.shape == (500, 784) and Xtr.dtype == np.float64 and ytr.shape == (500,)


def test_the_package_carries_no_data():
    package = Path(datasets.__file__).parent
    assert not [p for p in package.rglob("*") if p.suffix in (".gz", ".idx") or "ubyte" in p.name]


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


# -- where load_mnist looks ---------------------------------------------------------------------

@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No FASTNN_DATA, a cache and a home under tmp_path, a working directory outside any
    checkout, and the package's own checkout (if it runs from one) out of the search: the real
    user cache and the repository's copy stay out of reach."""
    for var in ("FASTNN_DATA", "FASTNN_MNIST_DIR", "FASTNN_MNIST_URL"):
        monkeypatch.delenv(var, raising=False)
    for var in ("XDG_CACHE_HOME", "HOME", "USERPROFILE", "LOCALAPPDATA"):
        monkeypatch.setenv(var, str(tmp_path / "user"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(_paths, "package_checkout", lambda: None)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cache = Path(datasets.cache_dir()) / "mnist"
    assert tmp_path in cache.parents
    return cache


def _fake_mnist(directory, value, split="test", n=3):
    """A split of n 28x28 images, every pixel `value`, labels 0..n-1, in MNIST's file names."""
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = datasets._FILES[split]
    dims = lambda *d: b"".join(x.to_bytes(4, "big") for x in d)  # noqa: E731
    _write(directory / images, bytes([0, 0, 8, 3]) + dims(n, 28, 28) + bytes([value]) * (n * 784))
    _write(directory / labels, bytes([0, 0, 8, 1]) + dims(n) + bytes(range(n)))
    return directory


def _pixel(**kw):
    X, _ = load_mnist("test", dtype="float64", **kw)
    return round(X[0, 0] * 255)


def _checkout(root, name="fastnn"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[build-system]\nrequires = []\n\n[project]\nname = "{name}"  # x\n')
    return root


def test_search_order_fastnn_data_then_checkout_then_cache(isolated, tmp_path, monkeypatch):
    _fake_mnist(isolated, 30)
    clone = _checkout(tmp_path / "clone")
    _fake_mnist(clone / "data" / "mnist", 20)
    _fake_mnist(tmp_path / "env" / "mnist", 10)
    (clone / "tests" / "deep").mkdir(parents=True)
    monkeypatch.chdir(clone / "tests" / "deep")  # run from inside the clone: its parents count
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "env"))
    assert [s for s, _ in mnist_search_path()] == ["FASTNN_DATA", "FASTNN_DATA", "checkout", "cache"]
    assert _pixel() == 10
    monkeypatch.delenv("FASTNN_DATA")
    assert _pixel() == 20
    monkeypatch.chdir(tmp_path / "work")
    assert _pixel() == 30
    assert _pixel(directory=clone / "data" / "mnist") == 20  # an explicit directory wins


def test_fastnn_data_may_hold_the_files_itself_and_the_old_variable_still_works(isolated, tmp_path, monkeypatch):
    _fake_mnist(tmp_path / "flat", 40)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "flat"))
    assert _pixel() == 40
    monkeypatch.delenv("FASTNN_DATA")
    monkeypatch.setenv("FASTNN_MNIST_DIR", str(tmp_path / "flat"))
    with pytest.warns(FutureWarning, match="FASTNN_MNIST_DIR is deprecated.*FASTNN_DATA"):
        assert _pixel() == 40


def test_an_empty_fastnn_data_warns_and_falls_through(isolated, tmp_path, monkeypatch):
    _fake_mnist(isolated, 30)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "nothing-here"))
    with pytest.warns(UserWarning, match="FASTNN_DATA=.*holds no MNIST test files"):
        assert _pixel() == 30


def test_a_checkout_is_a_pyproject_naming_fastnn(tmp_path):
    assert _paths.is_checkout(_checkout(tmp_path / "a"))
    assert _paths.is_checkout(_checkout(tmp_path / "b", name="FastNN"))
    assert not _paths.is_checkout(_checkout(tmp_path / "c", name="fastnn-extras"))
    assert not _paths.is_checkout(tmp_path / "missing")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "pyproject.toml").write_text('[tool.x]\nname = "fastnn"\n[project]\nname = "other"\n')
    assert not _paths.is_checkout(tmp_path / "d")


def test_the_cache_follows_xdg_cache_home_on_linux(monkeypatch, tmp_path):
    monkeypatch.setattr(_paths.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _paths.cache_dir() == str(tmp_path / "xdg" / "fastnn")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _paths.cache_dir() == str(tmp_path / "home" / ".cache" / "fastnn")
    monkeypatch.setattr(_paths.sys, "platform", "darwin")
    assert _paths.cache_dir() == str(tmp_path / "home" / "Library" / "Caches" / "fastnn")


# -- the download -------------------------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serve(directory):
    """An HTTP server on 127.0.0.1 serving `directory`, in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mnist"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _left_in(cache):
    return sorted(os.listdir(cache)) if cache.is_dir() else []


@needs_repo_copy
def test_download_verifies_and_moves_into_the_cache(isolated, tmp_path, monkeypatch):
    mirror = tmp_path / "www" / "mnist"
    mirror.mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copy(REPO_MNIST / name, mirror / name)
    with _serve(tmp_path / "www") as url:
        monkeypatch.setenv("FASTNN_MNIST_URL", url)
        X, y = load_mnist("test")
    Xr, yr = load_mnist("test", directory=REPO_MNIST)
    np.testing.assert_array_equal(X, Xr)
    np.testing.assert_array_equal(y, yr)
    assert _left_in(isolated) == sorted(TEST_FILES)  # the two files, no temporary file
    monkeypatch.setenv("FASTNN_MNIST_URL", "http://127.0.0.1:9/")  # the server is gone: the cache serves
    np.testing.assert_array_equal(load_mnist("test", limit=5)[1], yr[:5])


def _corrupt_wrong_content(path):
    with gzip.open(path, "rb") as f:
        data = bytearray(f.read())
    data[-1] ^= 0xFF  # one pixel: a valid idx file, a valid gzip, the wrong data
    path.write_bytes(gzip.compress(bytes(data), compresslevel=1))


def _corrupt_not_gzip(path):
    path.write_bytes(b"<html>mirror moved</html>")


@needs_repo_copy
@pytest.mark.parametrize("corrupt", [_corrupt_wrong_content, _corrupt_not_gzip], ids=["wrong-data", "not-gzip"])
def test_a_corrupt_download_is_refused_and_nothing_is_kept(isolated, tmp_path, monkeypatch, corrupt):
    mirror = tmp_path / "www" / "mnist"
    mirror.mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copy(REPO_MNIST / name, mirror / name)
        corrupt(mirror / name)
    with _serve(tmp_path / "www") as url:
        monkeypatch.setenv("FASTNN_MNIST_URL", url)
        with pytest.raises(DownloadError, match="SHA-256") as err:
            load_mnist("test")
    assert url + "/t10k-images-idx3-ubyte.gz" in str(err.value) and "FASTNN_DATA" in str(err.value)
    assert _left_in(isolated) == []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_gives_one_clear_error(isolated, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}/mnist/"
    monkeypatch.setenv("FASTNN_MNIST_URL", url)
    with pytest.raises(DownloadError) as err:
        load_mnist("test")
    message = str(err.value)
    assert url + "t10k-images-idx3-ubyte.gz" in message and "FASTNN_DATA" in message
    assert str(isolated) in message  # where it looked
    assert _left_in(isolated) == []


def test_a_missing_file_on_the_server_names_the_http_status(isolated, tmp_path, monkeypatch):
    (tmp_path / "www" / "mnist").mkdir(parents=True)
    with _serve(tmp_path / "www") as url:
        monkeypatch.setenv("FASTNN_MNIST_URL", url)
        with pytest.raises(DownloadError, match="HTTP 404"):
            load_mnist("test")
    assert _left_in(isolated) == []


def test_download_refuses_more_bytes_than_the_file_can_hold(tmp_path):
    (tmp_path / "big").write_bytes(bytes(5000))
    with _serve(tmp_path) as url:
        with pytest.raises(DownloadError, match="more than 1000 bytes"):
            _download.download(url.rsplit("/", 1)[0] + "/big", str(tmp_path / "cache" / "big"),
                               lambda p: None, max_bytes=1000)
    assert _left_in(tmp_path / "cache") == []


def test_a_download_into_a_path_it_cannot_write_says_so_before_fetching(tmp_path):
    """The hostile tester's finding: a folder, or a name ending in a slash, as the destination was
    reported as a network error after the download."""
    (tmp_path / "folder").mkdir()
    for dest in (tmp_path / "folder", f"{tmp_path}/name/"):
        with pytest.raises(DownloadError, match=f"cannot write {dest}: .*(not a regular file|directory)"):
            _download.download("http://127.0.0.1:9/nothing-listens-here", str(dest), lambda p: None,
                               max_bytes=10)
    assert sorted(os.listdir(tmp_path)) == ["folder"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_draws_on_a_terminal_only():
    tty = _Terminal()
    bar = _download.TextBar(2_000_000, "MNIST x", tty)
    bar.update(1_000_000)
    bar.close()
    assert "MNIST x [" in tty.getvalue() and "50%" in tty.getvalue() and tty.getvalue().endswith("\n")
    pipe = io.StringIO()
    bar = _download.progress_bar(100, "x", pipe)
    bar.update(100)
    bar.close()
    assert pipe.getvalue() == ""
