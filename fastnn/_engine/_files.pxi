# _files.pxi — what fastnn/files/atomic.py cannot do safely in Python. Private (a leading
# underscore): no twin in the oracle, whose module matches this one's public names; atomic.py
# falls back to Python where the extension is absent.
from libc.errno cimport errno
import os as _os

cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char *path, int flags)
    int O_RDONLY
    int O_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    int c_fsync "fsync"(int fd)
    int c_close "close"(int fd)


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
