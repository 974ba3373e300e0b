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


def atomic_write(path, write, check=None):
    """Call write(f) on a fresh binary file, then make it `path` in one step. check(temp_path), when
    given, runs on the complete temporary file before the rename; raising there leaves `path` as
    it was. Refused as open(path, "wb") would refuse them: an empty path, a name ending in a
    slash, a file its owner may not write (its mode, not only its directory's, must allow it)."""
    path = _target(path)
    directory, name = os.path.split(path)
    try:  # a new file gets the permissions open() would give it; a replaced one keeps its own
        st = os.stat(path)
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    else:
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a directory, device, FIFO or socket): the file "
                          "is written beside it and renamed over it, which would replace it", path)
        if not os.access(path, os.W_OK):  # the rename needs only the directory's permission
            raise PermissionError(errno.EACCES, "the file is read-only: the save would replace it", path)
        mode = st.st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(name), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, mode)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _target(path):
    """The str path the rename replaces: symlinks followed (the link stays, its target is replaced),
    and what open() refuses refused here, with open()'s errors."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        raise TypeError(f"a path must be str, bytes or os.PathLike, not {type(path).__name__}")
    if path == "":
        raise FileNotFoundError(errno.ENOENT, "an empty path names no file", path)
    if "\0" in path:
        raise ValueError("a path cannot contain a NUL character")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        # realpath would drop the slash, and the rename would then replace the file before it
        raise IsADirectoryError(errno.EISDIR, "a path ending in a slash names a directory, not a file", path)
    return os.path.realpath(path)


_NAME_ROOM = 200  # bytes of the target's name kept in the temporary one: NAME_MAX is 255 on most systems


def _temporary_prefix(name):
    """'.name.' for the temporary file beside `name`, cut short so that the temporary name (prefix,
    8 random characters, '.tmp') stays a legal name wherever the target's is."""
    raw = os.fsencode(name)
    if len(raw) > _NAME_ROOM:  # a cut through a multi-byte character is kept as its bytes
        name = os.fsdecode(raw[:_NAME_ROOM])
    return f".{name}."


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
