#!/usr/bin/env python3
"""Smoke test of an installed fastnn (a wheel or an sdist install), run by tools/build_wheels.py
with the Python of a fresh venv, from a directory outside the source tree, once per FASTNN_ARCH.

    FASTNN_ARCH=avx2 FASTNN_DATA=<clone>/data venv/bin/python tools/smoke_wheel.py --backend c

Checks, in order: fastnn imports from site-packages at the version its metadata states;
show_config reports the expected backend (and OpenMP); a FASTNN_ARCH this CPU runs is the kernel
in use with no warning, one it cannot run gives one warning and the smoke test ends "unavailable"
(exit 0); the kernel self-check passes; a 784-64-10 ReLU network trained with Adam for 5 epochs
on the first 10,000 MNIST training images reaches at least 90 % on the first 2,000 test images
(91.4 % when written). The last line printed is a JSON record for the driver; exit 1 on failure.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
import warnings

TRAIN, TEST, EPOCHS, MIN_ACCURACY = 10_000, 2_000, 5, 0.90


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["c", "python"], default="c", help="the backend the install must use")
    p.add_argument("--openmp", choices=["on", "off"], default=None, help="what show_config must say of OpenMP")
    a = p.parse_args(argv)
    arch = os.environ.get("FASTNN_ARCH", "")
    record = {"python": platform.python_version(), "arch": arch or "default", "status": "FAIL"}
    try:
        record.update(smoke(arch, a.backend, a.openmp))
    except AssertionError as exc:
        record["error"] = str(exc)
    print(json.dumps(record))
    return 0 if record["status"] in ("ok", "unavailable") else 1


def smoke(arch, backend, openmp):
    from importlib.metadata import version

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastnn
    import numpy as np
    from fastnn.__main__ import self_check
    from fastnn.datasets import load_mnist

    arch_warnings = [str(w.message) for w in caught if "FASTNN_ARCH" in str(w.message)]
    assert "site-packages" in fastnn.__file__, f"fastnn imported from {fastnn.__file__}, not an install"
    assert fastnn.__version__ == version("fastnn"), (fastnn.__version__, version("fastnn"))
    info = fastnn.show_config()
    assert info["backend"] == backend, f"backend {info['backend']}, expected {backend}"
    if openmp:
        assert info["openmp"] == openmp, f"openmp {info['openmp']}, expected {openmp}"
    out = {"version": fastnn.__version__, "kernel": info["gemm kernel"], "openmp": info["openmp"]}
    if backend == "c" and arch:
        be = fastnn._engine.current()
        if arch in be.arch_list() and not be.arch_available(arch):
            assert len(arch_warnings) == 1 and "cannot run" in arch_warnings[0], arch_warnings
            print(f"FASTNN_ARCH={arch}: unavailable on this CPU, said cleanly: {arch_warnings[0]}")
            return dict(out, status="unavailable")
        assert info["gemm kernel"] == arch and not arch_warnings, (info["gemm kernel"], arch_warnings)

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        checked = self_check()
    lines = buf.getvalue().splitlines()
    assert checked, "kernel self-check failed:\n" + "\n".join(l for l in lines if "FAIL" in l)
    out["self_check"] = len(lines) if backend == "c" else 0
    print(f"kernel self-check: {out['self_check']} checks ok" if backend == "c" else lines[0])

    X, y = load_mnist("train", limit=TRAIN)
    Xt, yt = load_mnist("test", limit=TEST)
    t0 = time.perf_counter()
    model = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(1e-3), loss="cross_entropy")
    model.fit(X, y, epochs=EPOCHS, batch_size=64, verbose=0)
    accuracy = float((model.predict(Xt) == yt).mean())
    seconds = time.perf_counter() - t0
    print(f"MNIST {TRAIN} images, {EPOCHS} epochs: test accuracy {accuracy:.4f} ({seconds:.1f} s)")
    assert np.isfinite(accuracy) and accuracy >= MIN_ACCURACY, f"accuracy {accuracy:.4f} < {MIN_ACCURACY}"
    return dict(out, status="ok", accuracy=round(accuracy, 4), seconds=round(seconds, 2))


if __name__ == "__main__":
    sys.exit(main())
