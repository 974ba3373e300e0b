"""Atomic file replacement: write a temporary file in the target's directory, flush, fsync, then
os.replace it over the target (and fsync the directory). A write that fails half-way (a full
disk, a file-size limit, an exception, Ctrl-C) removes the temporary file and re-raises: the
target is then byte for byte what it was before, or still absent. A symlink is followed, as
open() would: its target is replaced and the link stays. A path that names something other than a
regular file (a directory, a device such as /dev/null, a FIFO, a socket) is refused: the rename
would replace it with a regular file."""
import contextlib
import errno
import os
import stat
import tempfile


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: os.umask can only be read by setting it


def atomic_write(path, write):
    """Call write(f) on a fresh binary file, then make it `path` in one step."""
    path = os.path.realpath(os.fspath(path))  # through symlinks: the link stays, its target is replaced
    directory, name = os.path.split(path)
    try:  # a new file gets the permissions open() would give it; a replaced one keeps its own
        st = os.stat(path)
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    else:
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a directory, device, FIFO or socket): the file "
                          "is written beside it and renamed over it, which would replace it", path)
        mode = st.st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
