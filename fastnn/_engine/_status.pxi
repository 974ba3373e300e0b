# Status codes, CPU dispatch and threads.
from fastnn._engine.errors import NonFiniteError as _NonFiniteError

cdef int check_status(int st) except -1:
    if st == FNN_OK:
        return 0
    if st == FNN_EINVAL:
        raise ValueError("fastnn: invalid argument (sizes, labels or options)")
    if st == FNN_ENOMEM:
        raise MemoryError("fastnn: out of memory")
    if st == FNN_EUNSUPPORTED:
        raise RuntimeError("fastnn: not supported on this CPU or build")
    if st == FNN_ENONFINITE:
        raise _NonFiniteError("fastnn: non-finite loss or gradient")
    if st == FNN_EOVERFLOW:
        raise _NonFiniteError("fastnn: an update overflowed")
    raise RuntimeError(f"fastnn: C status {st}")

fnn_arch_name()  # choose the kernel once, at import, before any thread can race on it
fnn_get_num_threads()

BACKEND = "c"

def arch_name():
    return fnn_arch_name().decode()

def arch_list():
    return fnn_arch_list().decode().split()

def arch_available(str name):
    return bool(fnn_arch_available(name.encode()))

def arch_request():
    """What became of FASTNN_ARCH when the kernel was chosen: a status code (codes.STATUSES), "ok"
    when unset or used, "einval" when it names no kernel, "eunsupported" when the CPU cannot run it."""
    return fnn_arch_request()

def set_arch(str name):
    if fnn_set_arch(name.encode()) != FNN_OK:
        raise ValueError(f"kernel {name!r} is not available here (available: "
                         f"{[a for a in arch_list() if arch_available(a)]})")

def openmp_enabled():
    return bool(fnn_openmp_enabled())

def get_num_threads():
    return fnn_get_num_threads()

def set_num_threads(int n):
    fnn_set_num_threads(n)

def get_thread_limit():
    return fnn_get_thread_limit()

def set_thread_limit(int n):
    fnn_set_thread_limit(n)

def set_cpu_cap(int n):
    fnn_set_cpu_cap(n)

def get_cpu_cap():
    return fnn_get_cpu_cap()

def teams_started():
    """Engine calls so far in this process that ran on a team of several threads (for tests)."""
    return fnn_teams_started()

def constants():
    """{C name: value} of every csrc/fastnn.h enum member and constant the Python side uses
    (fastnn/_engine/codes.py holds the same values under Python names)."""
    return fnn_constants()

def struct_layout():
    """{C struct: {"sizeof": bytes, "offsetof": {field: offset}, "fieldsize": {field: bytes}}} of
    the structs that travel as records (fastnn/_engine/records.py mirrors them), as this build's C
    compiler lays them out."""
    return fnn_struct_layout()


cdef int agree(str fn, tuple want, dict shapes) except -1:
    # The standalone kernels read every array with the sizes of one of them (`want`): every other
    # array's shape (name -> shape, None when not given) must equal it before a pointer reaches C.
    # The model layer and fastnn.ops validate before this; this keeps a direct call in bounds.
    bad = [f"{name} has shape {shape}, expected {want}" for name, shape in shapes.items()
           if shape is not None and shape != want]
    if bad:
        raise ValueError(f"{fn}: " + "; ".join(bad))
    return 0


cdef inline tuple _s1(const floating[::1] a):
    return (a.shape[0],)


cdef inline tuple _s2(const floating[:, ::1] a):
    return (a.shape[0], a.shape[1])

def phase_times(bint reset=True):
    """Seconds spent in each phase of the training step since the last reset, as a
    (len(codes.PHASES), 8) array indexed by phase and layer (csrc/profile.h), or None when this
    build does not profile (build with FASTNN_PROFILE=1). One call at a time: the table is global."""
    import numpy as np
    from fastnn._engine.codes import PHASES
    cdef double buf[256]
    cdef int n = fnn_profile_read(buf, 256, reset)
    if n <= 0:
        return None
    if n != len(PHASES):
        raise RuntimeError(f"fastnn: the build profiles {n} phases, codes.PHASES names {len(PHASES)}")
    return np.array([buf[i] for i in range(n * 8)]).reshape(n, 8)
