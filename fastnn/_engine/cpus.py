"""How many CPUs this process may use: the CPUs of its affinity mask (taskset, numactl, a
container's cpuset), and no more than its cgroup CPU quota allows (docker --cpus, Kubernetes
limits: cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up.

The compiled engine's default thread count is capped at this (csrc/dispatch.c, fnn_set_cpu_cap):
OMP_NUM_THREADS=64 on a 2-CPU container runs 2 threads, not 64 that take turns. The cap is read
once, when the engine loads."""
import math
import os


def usable_cpus(root="/"):
    """CPUs this process may use (at least 1). root: the file system root to read cgroup files
    from (tests point it at a fake tree)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def cgroup_cpu_quota(root="/"):
    """The CPU quota (CPUs, a float) of this process's cgroup and its ancestors, the smallest one
    set; None when no quota applies or the files cannot be read."""
    try:
        with open(os.path.join(root, "proc/self/cgroup"), encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: "0::/path"
            limits += _walk(root, "sys/fs/cgroup", path, _v2_quota)
        elif "cpu" in controllers.split(","):  # cgroup v1: "N:cpu,cpuacct:/path"
            for mount in ("sys/fs/cgroup/" + controllers, "sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/cpu"):
                found = _walk(root, mount, path, _v1_quota)
                if found:
                    limits += found
                    break
    return min(limits) if limits else None


def _walk(root, mount, path, read):
    """The quotas set from the process's cgroup directory up to the mount point. Inside a
    container the cgroup path may name the host's hierarchy, which the container sees as its
    mount point: the mount point itself is read too."""
    base = os.path.join(root, mount)
    parts = [p for p in path.strip().split("/") if p and p not in (".", "..")]
    found = []
    for depth in range(len(parts), -1, -1):
        q = read(os.path.join(base, *parts[:depth]))
        if q is not None:
            found.append(q)
    return found


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().split()
    except OSError:
        return None


def _v2_quota(directory):
    words = _read(os.path.join(directory, "cpu.max"))  # "max 100000" or "150000 100000"
    if not words or words[0] == "max":
        return None
    try:
        quota, period = int(words[0]), int(words[1]) if len(words) > 1 else 100000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(directory):
    q, p = _read(os.path.join(directory, "cpu.cfs_quota_us")), _read(os.path.join(directory, "cpu.cfs_period_us"))
    if not q or not p:
        return None
    try:
        quota, period = int(q[0]), int(p[0])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None  # -1: no quota
