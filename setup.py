"""Build of fastnn's compiled backend: one extension, fastnn._engine._ext, from fastnn/_engine/_ext.pyx (which
includes fastnn/_engine/_*.pxi) and the C kernels in csrc/. Metadata lives in pyproject.toml.

Before cythonize, every template fastnn/_engine/X.tp is expanded with Cython's Tempita into X
(git-ignored, rewritten only when its text changes); today that is _fastnn.pxd, the float and
double declarations of csrc/fastnn.h.

The extension is optional, as in PyYAML or MarkupSafe: when it does not compile (no C compiler,
a broken one), the build prints one warning and installs the pure-Python package, which runs on
the NumPy backend; FASTNN_REQUIRE_EXT=1 makes that a failure (release builds and CI set it).

Environment switches:
  FASTNN_NO_OPENMP=1     build without OpenMP even when the compiler has it
  FASTNN_CYTHON_DEBUG=1  turn Cython's boundscheck / wraparound / initializedcheck back on
  FASTNN_NO_EXT=1        skip the extension (pure-Python install; fastnn falls back to NumPy)
  FASTNN_REQUIRE_EXT=1   fail the build when the extension does not compile, instead of falling back
  FASTNN_PROFILE=1       clock the training step's phases (csrc/profile.h, benchmarks/phases.py);
                         never in a build that ships
"""
import glob
import os
import shutil
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

REQUIRE_EXT = os.environ.get("FASTNN_REQUIRE_EXT") == "1"
NO_EXT = os.environ.get("FASTNN_NO_EXT") == "1"
if REQUIRE_EXT and NO_EXT:
    sys.exit("FASTNN_NO_EXT=1 and FASTNN_REQUIRE_EXT=1 contradict each other: unset one")


def openmp_flags():
    """Compile and link a tiny OpenMP program; return the flags that worked, or [] without OpenMP."""
    if os.environ.get("FASTNN_NO_OPENMP") == "1" or sys.platform == "win32":
        return []
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    cc = new_compiler()
    customize_compiler(cc)
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { int n = 0;\n"
                    "#pragma omp parallel reduction(+:n)\n n += 1;\n return omp_get_max_threads() > 0 ? 0 : n; }\n")
        for flag in (["-fopenmp"], ["-Xpreprocessor", "-fopenmp", "-lomp"]):
            try:
                objs = cc.compile([src], output_dir=tmp, extra_postargs=flag)
                cc.link_executable(objs, os.path.join(tmp, "omp"), extra_postargs=flag)
                return flag
            except Exception:
                continue
        return []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generate_from_templates():
    """fastnn/_engine/X.tp -> X, with a header naming its source."""
    from Cython import Tempita

    for tp in sorted(glob.glob("fastnn/_engine/*.tp")):
        with open(tp, encoding="utf-8") as f:
            text = Tempita.sub(f.read())
        text = f"# generated from {os.path.basename(tp)} by setup.py — do not edit\n" + text
        out = tp[:-len(".tp")]
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                if f.read() == text:
                    continue
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)


def extensions():
    if NO_EXT:
        return []
    from Cython.Build import cythonize

    generate_from_templates()

    omp = openmp_flags()
    cflags = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math"] if sys.platform != "win32" else ["/O2"]
    if os.environ.get("FASTNN_PROFILE") == "1":
        cflags.append("-DFNN_PROFILE")
    import numpy  # its C API (Engine.predict_lean); built against NumPy 2, which runs on 1.x too
    ext = Extension(
        "fastnn._engine._ext",
        sources=["fastnn/_engine/_ext.pyx"] + sorted(glob.glob("csrc/*.c")),
        include_dirs=["csrc", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=glob.glob("csrc/*.h") + glob.glob("fastnn/_engine/*.pxi") + glob.glob("fastnn/_engine/*.tp"),
        extra_compile_args=cflags + omp,
        extra_link_args=omp,
    )
    debug = os.environ.get("FASTNN_CYTHON_DEBUG") == "1"
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "embedsignature": True,
    }
    return cythonize([ext], compiler_directives=directives)


class optional_build_ext(build_ext):
    """build_ext that, when the extension does not compile, warns once and leaves it out (the
    package then runs on its NumPy backend), unless FASTNN_REQUIRE_EXT=1."""

    failed = ()

    def run(self):
        try:
            super().run()
        except PlatformError as exc:  # no compiler at all (MSVC missing, say)
            self._fall_back(self.extensions, exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError, OSError) as exc:
            self._fall_back([ext], exc)

    def copy_extensions_to_source(self):  # --inplace: nothing to copy for what did not build
        self.extensions = [e for e in self.extensions if e.name not in self.failed]
        super().copy_extensions_to_source()

    def _fall_back(self, exts, exc):
        names = ", ".join(e.name for e in exts)
        if REQUIRE_EXT:
            sys.stderr.write(f"\nERROR: {names} did not compile ({exc}), and FASTNN_REQUIRE_EXT=1 "
                             "forbids installing fastnn without it.\n\n")
            raise exc
        self.failed = tuple(self.failed) + tuple(e.name for e in exts)
        sys.stderr.write(
            f"\nWARNING: {names} did not compile ({exc}). Installing the pure-Python fastnn, which "
            "runs on its NumPy backend (correct, much slower). Install a C compiler and reinstall for "
            "the compiled backend; FASTNN_REQUIRE_EXT=1 makes this an error.\n\n")


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
