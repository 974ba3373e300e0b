#!/usr/bin/env python3
"""csrc/ compiles warning-free for aarch64 (-Wall -Wextra -Werror), with and without OpenMP.

    python tools/cross_check.py            # exit 0: clean; 1: warnings or errors; 77: no cross compiler

The cross compiler is the first of: $FASTNN_CROSS_CC (a command line), aarch64-linux-gnu-gcc
(Debian's gcc-aarch64-linux-gnu), `zig cc -target aarch64-linux-gnu` (zig on PATH, or the
`ziglang` package of this Python: pip install ziglang). zig ships no omp.h: the OpenMP pass
borrows the host gcc's, which is the same file on every architecture. Only the C kernels are
checked: the Cython module needs the target's Python headers.
"""
import argparse
import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_COMPILER = 77  # the automake convention for "skipped"
# the flags setup.py compiles with, plus every warning that -Wall -Wextra turns on
CFLAGS = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra", "-Werror"]


def find_cross_compiler():
    """(command as a list, description), or None."""
    if os.environ.get("FASTNN_CROSS_CC"):
        cmd = shlex.split(os.environ["FASTNN_CROSS_CC"])
        return cmd, "$FASTNN_CROSS_CC"
    if shutil.which("aarch64-linux-gnu-gcc"):
        return ["aarch64-linux-gnu-gcc"], "aarch64-linux-gnu-gcc"
    if shutil.which("zig"):
        return ["zig", "cc", "-target", "aarch64-linux-gnu"], "zig cc"
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-linux-gnu"], "zig cc (pip ziglang)"


def omp_header_dir(cc, tmp):
    """An include directory with an omp.h for the cross compiler ([] when it has its own), or None."""
    probe = os.path.join(tmp, "probe.c")
    with open(probe, "w") as f:
        f.write("#include <omp.h>\nint f(void) { return omp_get_max_threads(); }\n")
    if subprocess.run(cc + ["-fopenmp", "-fsyntax-only", probe], capture_output=True).returncode == 0:
        return []
    if not shutil.which("gcc"):
        return None
    gcc_include = subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True).stdout
    host = os.path.join(gcc_include.strip(), "omp.h")
    if not os.path.isfile(host):
        return None
    inc = os.path.join(tmp, "omp-include")
    os.makedirs(inc, exist_ok=True)
    shutil.copy(host, inc)
    return ["-isystem", inc]


def compile_all(cc, extra, tmp):
    """Compile every csrc/*.c to an aarch64 object; return the compiler's complaints (empty: clean)."""
    problems = []
    for src in sorted(glob.glob(os.path.join(ROOT, "csrc", "*.c"))):
        obj = os.path.join(tmp, os.path.basename(src) + ".o")
        out = subprocess.run(cc + CFLAGS + extra + ["-I", os.path.join(ROOT, "csrc"), "-c", src, "-o", obj],
                             capture_output=True, text=True)
        if out.returncode != 0 or out.stderr.strip():
            problems.append(f"{os.path.relpath(src, ROOT)}:\n{out.stderr.strip()}")
    return problems


def main(argv=None):
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
                            ).parse_args(argv)
    found = find_cross_compiler()
    if found is None:
        print("aarch64: no cross compiler (aarch64-linux-gnu-gcc, zig, pip's ziglang): skipped")
        return NO_COMPILER
    cc, what = found
    n = len(glob.glob(os.path.join(ROOT, "csrc", "*.c")))
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        passes = [("without OpenMP", [])]
        omp = omp_header_dir(cc, tmp)
        if omp is not None:
            passes.append(("with OpenMP", ["-fopenmp"] + omp))
        else:
            print("aarch64: no omp.h for the cross compiler: the OpenMP pass is skipped")
        for name, extra in passes:
            problems = compile_all(cc, extra, tmp)
            ok &= not problems
            print(f"aarch64 ({what}), {name}: {n} files, "
                  + ("no warnings" if not problems else f"{len(problems)} with warnings or errors"))
            for p in problems:
                print(p)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
