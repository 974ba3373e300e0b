"""FASTNN_ARCH: a kernel name this CPU runs is used quietly; a name that is no kernel (wrong case
included) or a kernel the CPU cannot run is ignored with one RuntimeWarning that says which and
why, and show_config repeats it. The variable is read when the extension loads, so each case runs
in a fresh interpreter."""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import fastnn

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
needs_c = pytest.mark.skipif("c" not in fastnn.available_backends(), reason="compiled extension not built")
REPORT = ("import json, warnings\n"
          "with warnings.catch_warnings(record=True) as w:\n"
          "    warnings.simplefilter('always')\n"
          "    import fastnn\n"
          "    info = fastnn.show_config(print_fn=None)\n"
          "print(json.dumps({'warnings': [str(x.message) for x in w if 'FASTNN_ARCH' in str(x.message)],\n"
          "                  'kernel': info['gemm kernel'], 'config': info.get('FASTNN_ARCH')}))\n")


def run_with_arch(value):
    env = dict(os.environ, FASTNN_ARCH=value, PYTHONPATH=PACKAGE_ROOT)
    env.pop("FASTNN_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", REPORT], env=env, capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def default_kernel():
    from fastnn._engine import _ext
    return next(a for a in _ext.arch_list() if _ext.arch_available(a))


@needs_c
@pytest.mark.parametrize("value, near", [("AVX2", "avx2"), ("Ref", "ref"), ("avx-2", None), ("neon", None)])
def test_a_name_that_is_no_kernel_warns_and_is_ignored(value, near):
    got = run_with_arch(value)
    assert got["kernel"] == default_kernel()
    assert len(got["warnings"]) == 1, got
    message = got["warnings"][0]
    assert f"FASTNN_ARCH={value!r} names no GEMM kernel and is ignored" in message
    assert f"the {default_kernel()} kernel is used" in message and "names are lower case" in message
    assert (f"Did you mean {near!r}?" in message) == (near is not None)
    assert got["config"] == message


@needs_c
def test_a_kernel_this_cpu_cannot_run_warns_and_is_ignored():
    from fastnn._engine import _ext
    lacking = [a for a in _ext.arch_list() if not _ext.arch_available(a)]
    if not lacking:
        pytest.skip("this CPU runs every compiled kernel")
    got = run_with_arch(lacking[0])
    assert got["kernel"] == default_kernel()
    assert got["warnings"] == [f"FASTNN_ARCH={lacking[0]!r} is ignored: this CPU cannot run the {lacking[0]} "
                               f"kernel (it runs {', '.join(a for a in _ext.arch_list() if _ext.arch_available(a))});"
                               f" the {default_kernel()} kernel is used."]


@needs_c
def test_every_kernel_this_cpu_runs_is_used_quietly():
    from fastnn._engine import _ext
    for arch in [a for a in _ext.arch_list() if _ext.arch_available(a)]:
        got = run_with_arch(arch)
        assert got == {"warnings": [], "kernel": arch, "config": f"{arch!r} (used)"}


@needs_c
def test_unset_or_empty_is_the_default_quietly():
    got = run_with_arch("")
    assert got == {"warnings": [], "kernel": default_kernel(), "config": None}


def test_the_python_backend_has_nothing_to_report():
    from fastnn._engine import reference
    assert reference.arch_request() == 0
