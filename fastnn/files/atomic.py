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
    its owner may not write (its mode, not only its directory's, must allow it); the same for
    each target of a symlink on the way.

    The rename is the point of no return: Ctrl-C during the directory's fsync that follows it
    is raised, and the file is then the new one. A file in a folder the process may not write
    (or a sticky folder's file of another user) is refused even where open() could write it in
    place: the save makes a new file there.

    A new file gets the mode open() gives (0666 less the umask); a replaced one keeps its mode and,
    where the process may give it (root), its owner; a setuid or setgid bit is kept only with
    its owner. The rename makes a new file: hard links to the old one keep the old content."""
    with _named_as_given(path):
        _atomic_write(_as_str(path), write, check)


def _atomic_write(given, write, check):
    path, st = _check_target(given)
    directory, name = os.path.split(path)
    directory = directory or os.curdir
    made, files = [], []  # the temporary file's name (from before it exists) and its file object
    try:
        f = _create_temporary(directory, name, given, made, files)
        tmp = made[0]
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if st is not None:
                _keep_owner_and_mode(f.fileno(), st)
        if check is not None:
            check(tmp)
        _replace(tmp, path, given)
    except BaseException:
        # The temporary name goes first, by the handler's first call. CPython (3.11 on) runs a
        # signal handler's Python code only after a call returns, at a function's start or at a
        # backward jump, never between the plain bytecodes that lead here: a second Ctrl-C (or
        # any handler that raises) during the cleanup lands once the name is gone. Closing the
        # files first, through `with` blocks, left 880-900 temporary files in 1,000 saves under
        # a SIGALRM every 20 us; a file left open by such an interrupt is closed with this frame.
        if made:
            try:
                os.unlink(made[0])
            except OSError:  # not made yet, or already renamed over the target
                pass
        for f in files:
            try:
                f.close()  # closes its descriptor once, whoever closed the file before
            except OSError:
                pass
        if made and os.name == "nt":  # Windows removes no file that is still open: again, closed
            try:
                os.unlink(made[0])
            except OSError:
                pass
        raise
    _fsync_directory(directory)


def _replace(tmp, path, given):
    """os.replace, its error naming the user's path (a sticky folder's EPERM named the temporary file)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot rename the saved temporary file over it ({exc.strerror})",
                        given) from None


def check_target(path):
    """(the path atomic_write replaces, its os.stat or None when absent), or the OSError (or
    TypeError, ValueError) that atomic_write would raise before writing anything. Errors name the
    path as given."""
    with _named_as_given(path):
        return _check_target(_as_str(path))


def _check_target(given):
    path = _target(given)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path, None
    if stat.S_ISDIR(st.st_mode):
        raise _named(errno.EISDIR, "the path names a directory, not a file", path, given)
    if not stat.S_ISREG(st.st_mode):
        raise _named(errno.EINVAL, "not a regular file (a device, FIFO or socket): the file is written "
                     "beside it and renamed over it, which would replace it", path, given)
    _check_writable(path, given)  # the rename needs only the directory's permission
    return path, st


_REFUSED = {errno.EROFS: "read-only file system: the save would replace the file",
            errno.EACCES: "the file is read-only: the save would replace it",
            errno.EPERM: "the file may not be written (immutable): the save would replace it"}


def _check_writable(path, given):
    """The OSError open() would raise where it would not write the file: PermissionError EACCES
    (permission bits), EPERM (an immutable file, Linux chattr +i), OSError EROFS (a read-only
    file system). Asked with the effective user id, as open() checks it (os.access's default is
    the real one), and by the extension where it is built, which gives the reason's errno; without
    it, os.access only says no, and an immutable file is refused as EACCES. No descriptor is
    opened: an interrupt could leak it."""
    if _write_errno_in_c is not None:
        code = _write_errno_in_c(path)
        if code and code != errno.ENOENT:  # gone since the stat: the save makes it anew
            raise _named(code, _REFUSED.get(code, os.strerror(code)), path, given)
        return
    effective = os.access in getattr(os, "supports_effective_ids", ())
    if os.access(path, os.W_OK, effective_ids=effective):
        return
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):
        read_only = False
    code = errno.EROFS if read_only else errno.EACCES
    raise _named(code, _REFUSED[code], path, given)


def _create_temporary(directory, name, path, made, files):
    """A new, empty binary file beside `path`, open for writing, mode 0666 less the umask (as
    open() would make the target), whose name is in `made` and file object in `files`.

    Ctrl-C (or any signal handler's exception) may land at any point. The name goes into `made`
    before the file is made, so that the file is removed whenever it came to exist
    (tempfile.mkstemp returns the name only once the file exists). The file is made by open(),
    which creates it and owns its descriptor in one C call: an exception raised just after that
    call returns drops the object, and with it the descriptor (os.open's bare descriptor leaked
    there: 1,490 in 3,205 timed interrupts). Mode "x" is O_CREAT | O_EXCL, which never follows
    a symlink."""
    prefix = _temporary_prefix(name)
    for _ in range(100):
        made[:] = [os.path.join(directory, f"{prefix}{secrets.token_hex(4)}.tmp")]
        try:
            files.append(open(made[0], "xb"))
            return files[-1]
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


@contextlib.contextmanager
def _named_as_given(path):
    """An OSError naming the path names it as given: bytes for a bytes path, as open() does (the
    work is done on its str form)."""
    try:
        yield
    except OSError as exc:
        raw = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else None
        if isinstance(raw, bytes) and isinstance(exc.filename, str) and os.fsencode(exc.filename) == raw:
            exc.filename = raw
        raise


def _as_str(path):
    """A str, bytes or os.PathLike path as str (bytes decoded as os.fsdecode does)."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        raise TypeError(f"a path must be str, bytes or os.PathLike, not {type(path).__name__}")
    if "\0" in path:
        raise ValueError("a path cannot contain a NUL character")
    return path


_MAX_LINKS = 40  # symlinks followed before ELOOP, as Linux's open()


def _target(path):
    """The str path the rename replaces: symlinks followed (the link stays, its target is replaced),
    and what open() refuses refused here, with open()'s errors. The chain of links is followed one
    link at a time, each target checked as the path itself: os.path.realpath folds 'file/..',
    'missing/..' and a final slash in a link's target without looking, where open() fails."""
    given = now = _as_str(path)
    for _ in range(_MAX_LINKS + 1):
        head, tail = _check_name(now, given)
        try:
            is_link = stat.S_ISLNK(os.lstat(now).st_mode)
        except FileNotFoundError:  # a new file, in the folder just checked
            is_link = False
        except OSError as exc:
            raise _named(exc.errno, exc.strerror, now, given) from None
        if not is_link:  # as given, not made absolute: a deep working folder's name may not fit
            return now
        now = os.path.join(head, os.readlink(now))  # a relative target is relative to the link's folder
    raise _named(errno.ELOOP, os.strerror(errno.ELOOP), now, given)


def _check_name(path, given):
    """(folder, name) of path, or open()'s error for it: an empty path, a final slash, '.' or '..'
    as the name, a folder on the way that is missing or not a folder."""
    if path == "":
        raise _named(errno.ENOENT, "an empty path names no file", path, given)
    seps = os.sep + (os.altsep or "")
    bare = path.rstrip(seps) or path[:1]  # 'a/b/' -> 'a/b'; '/' stays
    head, tail = os.path.split(bare)
    try:  # the folder as the kernel finds it, before it looks at the name (a final slash)
        folder = os.stat(head or os.curdir)
    except OSError as exc:
        raise _named(exc.errno, exc.strerror, path, given) from None
    if not stat.S_ISDIR(folder.st_mode):
        raise _named(errno.ENOTDIR, "not a directory", path, given)
    if bare != path or tail in ("", os.curdir, os.pardir):
        raise _named(errno.EISDIR, "the path names a directory, not a file", path, given)
    return head, tail


def _named(code, text, path, given):
    """The OSError subclass of errno `code` for the user's path; a symlink's target on the way,
    when it is the one at fault, is said in the message."""
    if path != given:
        text = f"{text} (the symlink on the way leads to {path!r})"
    return OSError(code, text, given)  # OSError(errno, ...) is FileNotFoundError, IsADirectoryError ...


_NAME_ROOM = 200  # bytes of the target's name kept in the temporary one: NAME_MAX is 255 on most systems


def _temporary_prefix(name):
    """'.name.' for the temporary file beside `name`, cut short so that the temporary name (prefix,
    8 random characters, '.tmp') stays a legal name wherever the target's is."""
    raw = os.fsencode(name)
    if len(raw) > _NAME_ROOM:  # a cut through a multi-byte character is kept as its bytes
        name = os.fsdecode(raw[:_NAME_ROOM])
    return f".{name}."


try:  # the directory's fsync in one C call, and why a file may not be written (fastnn/_engine/_files.pxi)
    from .._engine._ext import _fsync_directory as _fsync_directory_in_c, _write_errno as _write_errno_in_c
except ImportError:  # not built: the Python versions
    _fsync_directory_in_c = _write_errno_in_c = None


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened. Done by
    the compiled extension where it is built: in Python, an interrupt landing between os.open's
    return and `fd`'s assignment leaks the directory's descriptor (no object owns a directory's
    descriptor from the C call on, as open() owns a file's; a thread of its own for it made
    Ctrl-C inside threading's own locks hang a save). Timed interrupts on a 16-core Xeon's disk,
    where each save's fsyncs take longer, leaked 9-17 descriptors in 3,000 saves that way."""
    if _fsync_directory_in_c is not None:
        _fsync_directory_in_c(directory)
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
