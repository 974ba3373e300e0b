"""Atomic file replacement: write a temporary file in the target's directory, flush, fsync, then
os.replace it over the target (and fsync the directory). A write that fails half-way (a full
disk, a file-size limit, an exception, Ctrl-C) removes the temporary file and re-raises: the
target is then byte for byte what it was before, or still absent. A symlink is followed, as
open() would: its target is replaced and the link stays. A path that names something other than a
regular file (a directory, a device such as /dev/null, a FIFO, a socket) is refused: the rename
would replace it with a regular file. The checks and the rename are separate steps: a path that
another process turns into a symlink or a directory between them is replaced as it is then (a
rename cannot be made conditional on what it replaces)."""
import contextlib
import errno
import os
import secrets
import stat


def atomic_write(path, write, check=None):
    """Call write(f) on a fresh binary file, then make it `path` in one step. check(temp_path), when
    given, runs on the complete temporary file before the rename; raising there leaves `path` as
    it was. Refused as open(path, "wb") would refuse them: an empty path, a name ending in a
    slash or naming a directory ('.', '..'), a missing or non-directory folder on the way, a file
    its owner may not write (its mode, not only its directory's, must allow it).

    A new file gets the mode open() gives (0666 less the umask); a replaced one keeps its mode and,
    where the process may give it (root), its owner; a setuid or setgid bit is kept only with
    its owner. The rename makes a new file: hard links to the old one keep the old content."""
    path, st = check_target(path)
    directory, name = os.path.split(path)
    made = []  # the temporary file's name, from before it exists (see _create_temporary)
    try:
        fd = _create_temporary(directory, name, path, made)
        tmp = made[0]
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if st is not None:
                _keep_owner_and_mode(f.fileno(), st)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        for tmp in made:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    _fsync_directory(directory)


def check_target(path):
    """(the path atomic_write replaces, its os.stat or None when absent), or the OSError (or
    TypeError, ValueError) that atomic_write would raise before writing anything."""
    path = _target(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path, None
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file (a directory, device, FIFO or socket): the file "
                      "is written beside it and renamed over it, which would replace it", path)
    if not os.access(path, os.W_OK):  # the rename needs only the directory's permission
        raise PermissionError(errno.EACCES, "the file is read-only: the save would replace it", path)
    return path, st


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def _create_temporary(directory, name, path, made):
    """The fd of a new, empty file beside `path`, mode 0666 less the umask (as open() would make
    the target), whose name is in `made`. The name goes there before the file is made, so that an
    interrupt (Ctrl-C) that lands while it is made still finds it to remove: tempfile.mkstemp
    returns the name only once the file exists."""
    prefix = _temporary_prefix(name)
    for _ in range(100):
        made[:] = [os.path.join(directory, f"{prefix}{secrets.token_hex(4)}.tmp")]
        try:
            return os.open(made[0], _TEMP_FLAGS, 0o666)
        except FileExistsError:  # another file's name: not ours to remove
            made.clear()
            continue
        except OSError as exc:  # name the user's file, not the hidden temporary one
            made.clear()
            raise type(exc)(exc.errno, f"cannot create a temporary file beside it ({exc.strerror}): a "
                            f"save writes one in the same folder and renames it over the file", path) from None
    raise FileExistsError(errno.EEXIST, "no free temporary file name beside it", path)


def _keep_owner_and_mode(fd, st):
    """The replaced file's owner (where the process may set it) and mode, on the new file."""
    mode = st.st_mode & 0o7777
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:  # another owner's setuid and setgid bits are not this process's to give
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
    os.fchmod(fd, mode)  # after fchown, which clears those bits


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
    # realpath would drop a final slash and fold 'file/.' or 'file/..' without looking, and the
    # rename would then replace, or make, a file that open() never reaches
    directory_named = IsADirectoryError(errno.EISDIR, "the path names a directory, not a file", path)
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise directory_named
    head, tail = os.path.split(path)
    try:  # the folder as the kernel finds it
        folder = os.stat(head or os.curdir)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, path) from None
    if not stat.S_ISDIR(folder.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
    if tail in (os.curdir, os.pardir):
        raise directory_named
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
