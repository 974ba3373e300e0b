"""Download one file into a directory, all or nothing.

The bytes stream into a temporary file beside the destination (fastnn.files.atomic's
atomic_write: same directory, so the final os.replace is an atomic rename on the same file
system); the caller's check runs on the complete temporary file; only a file that passed it is
renamed into place. On any failure, Ctrl-C included,
the temporary file is removed and the destination is untouched. A progress bar goes to stderr
when stderr is a terminal (tqdm's when tqdm is installed), nothing otherwise.
"""
import http.client
import os
import sys
import time
import urllib.error
import urllib.request

from ..files.atomic import atomic_write, check_target

CHUNK = 1 << 16


class DownloadError(OSError):
    """A data file could not be downloaded, or what arrived failed its checksum."""

    __module__ = "fastnn.datasets"  # where users import it from


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except Exception:  # None (pythonw), closed, or no isatty
        return False


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


class TextBar:
    """`label [#####.....]  45%  4.4/9.7 MB`, redrawn in place at most ten times a second."""

    def __init__(self, total, label, stream, width=30):
        self.total, self.label, self.stream, self.width = total, label, stream, width
        self.done, self._drawn = 0, 0.0

    def update(self, n):
        self.done += n
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw()

    def _draw(self):
        mb = self.done / 1e6
        if self.total:
            frac = min(self.done / self.total, 1.0)
            fill = int(frac * self.width)
            line = (f"{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {frac:4.0%} "
                    f"{mb:.1f}/{self.total / 1e6:.1f} MB")
        else:
            line = f"{self.label} {mb:.1f} MB"
        try:
            self.stream.write("\r" + line)
            self.stream.flush()
        except Exception:  # a closed or broken stderr never fails a download
            pass

    def close(self):
        self._draw()
        try:
            self.stream.write("\n")
            self.stream.flush()
        except Exception:
            pass


def progress_bar(total, label, stream=None):
    """A bar with update(n) and close(): tqdm's, else TextBar, on a terminal; else a silent one."""
    stream = sys.stderr if stream is None else stream
    if not _isatty(stream):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return TextBar(total, label, stream)
    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=stream)


def download(url, dest, check, *, max_bytes, label=None, timeout=60.0):
    """Fetch `url` into the file `dest`. check(temp_path) must raise DownloadError when the
    downloaded bytes are wrong. More than `max_bytes` bytes is an error (a wrong or hostile
    server). Raises DownloadError (an OSError) on every failure; leaves no temporary file."""
    directory = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(directory, exist_ok=True)
        check_target(dest)  # a local problem is not the network's: said before anything is fetched
    except (OSError, ValueError) as exc:
        raise DownloadError(f"cannot write {dest}: {exc}") from None

    def fetch(out):
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            bar = progress_bar(total, label or os.path.basename(dest))
            try:
                size = 0
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"{url} sent more than {max_bytes} bytes, more than the file can be")
                    out.write(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()

    try:  # atomic_write removes the temporary file on every failure, Ctrl-C included
        atomic_write(dest, fetch, check=check)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # resets, timeouts, bad URLs
        raise DownloadError(f"{url}: {type(exc).__name__}: {exc}") from None
