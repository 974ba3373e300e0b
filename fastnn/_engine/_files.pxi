# _files.pxi — what fastnn/files/atomic.py cannot do safely in Python. Private (a leading
# underscore): no twin in the oracle, whose module matches this one's public names; atomic.py
# falls back to Python where the extension is absent.
from libc.errno cimport errno
import os as _os

cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char *path, int flags)
    int O_RDONLY
    int O_CLOEXEC
    int AT_FDCWD
    int AT_EACCESS

cdef extern from "<unistd.h>" nogil:
    int c_fsync "fsync"(int fd)
    int c_close "close"(int fd)
    int c_faccessat "faccessat"(int dirfd, const char *path, int mode, int flags)
    int W_OK


def _fsync_directory(path):
    "_fsync_directory(path)\n--\n\n" \
    "fsync(2) a directory: open, fsync and close in one C call, with the GIL released, so that no " \
    "Python signal handler runs while the descriptor exists (in Python, Ctrl-C landing between " \
    "os.open's return and the name that holds its result leaked it). Returns 0, or the errno of " \
    "the open or the fsync that failed."
    cdef bytes name = _os.fsencode(path)
    cdef const char *p = name
    cdef int fd, err = 0
    with nogil:
        fd = c_open(p, O_RDONLY | O_CLOEXEC)
        if fd < 0:
            err = errno
        else:
            if c_fsync(fd) != 0:
                err = errno
            c_close(fd)
    return err


def _write_errno(path):
    "_write_errno(path)\n--\n\n" \
    "0 when the effective user may write the file at `path`, else the errno that says why (faccessat " \
    "with AT_EACCESS, the ids open() is checked with): EACCES for the permission bits, EPERM for an " \
    "immutable file (Linux chattr +i), EROFS on a read-only file system, as open() would say. No " \
    "descriptor is opened."
    cdef bytes name = _os.fsencode(path)
    cdef const char *p = name
    cdef int err = 0
    with nogil:
        if c_faccessat(AT_FDCWD, p, W_OK, AT_EACCESS) != 0:
            err = errno
    return err
