"""benchmarks/report.py over several runs and benchmarks/run.py's plan of processes, on made-up
pytest-benchmark JSON (no benchmark runs here)."""
import importlib.util
import io
import json
import os
import sys
from contextlib import redirect_stdout

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _module(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(BENCH, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(group, impl, t):
    return {"group": group, "name": f"test_{group}_{impl}", "extra_info": {"impl": impl},
            "stats": {"min": t, "median": t * 1.5, "rounds": 3}}


def _run(date, load, *benches):
    return {"datetime": date, "benchmarks": list(benches),
            "machine_info": {"fastnn": {"date": date, "load_average_end": load, "cpu_model": "CPU X"}}}


def test_several_runs_make_one_table_whose_ratios_stay_within_each_run(tmp_path):
    report = _module("report")
    a = _run("day-1", [1.0, 2.0, 3.0], _bench("mnist-epoch", "fastnn", 2.0), _bench("mnist-epoch", "torch", 6.0))
    b = _run("day-2", [0.5, 0.5, 0.5], _bench("online-b16", "fastnn", 1.0), _bench("online-b16", "jax", 3.0),
             _bench("mnist-epoch", "fastnn", 4.0), _bench("mnist-epoch", "torch", 4.0))
    paths = []
    for name, data in (("train", a), ("online", b)):
        paths.append(str(tmp_path / f"{name}.json"))
        with open(paths[-1], "w") as f:
            json.dump(data, f)
    merged = report.merge([report.load(p) for p in paths], ["train", "online"])
    grouped = report.groups(merged)
    assert set(grouped) == {"mnist-epoch", "online-b16", "mnist-epoch [online]"}
    ratio = {g: {r[0]: r[4] for r in report.table(b)} for g, b in grouped.items()}
    assert ratio["mnist-epoch"]["torch"] == 3.0  # 6 / 2, the first run's own fastnn
    assert ratio["mnist-epoch [online]"]["torch"] == 1.0  # 4 / 4, never 4 / 2 across runs
    assert ratio["online-b16"]["jax"] == 3.0
    out = io.StringIO()
    with redirect_stdout(out):
        assert report.main(paths + ["--png", str(tmp_path / "c.png")]) == 0
    text = out.getvalue()
    assert "file:      train, day-1, load 1.0 2.0 3.0 at its end" in text
    assert "file:      online, day-2, load 0.5 0.5 0.5 at its end" in text
    assert "mnist-epoch [online]" in text


def test_run_puts_gemm_and_inference_in_one_process_and_every_other_file_alone():
    run = _module("run")
    plan = run.default_runs()
    files = sorted(os.path.basename(f) for _, fs in plan for f in fs)
    assert files == sorted(os.path.basename(f) for f in os.listdir(BENCH)
                           if f.startswith("test_bench_") and f.endswith(".py"))
    together = [fs for name, fs in plan if name == "gemm_inference"]
    assert [sorted(os.path.basename(f) for f in fs) for fs in together] == \
        [["test_bench_gemm.py", "test_bench_inference.py"]]
    assert all(len(fs) == 1 for name, fs in plan if name != "gemm_inference")
    assert len({name for name, _ in plan}) == len(plan)


def test_run_reports_a_failed_process_and_no_stale_file(tmp_path, monkeypatch):
    run = _module("run")
    stale = tmp_path / "x.json"
    stale.write_text("{}")
    calls = []
    monkeypatch.setattr(run.subprocess, "call", lambda cmd, env: calls.append(cmd) or 1)
    monkeypatch.setattr(run, "default_runs", lambda: [("x", ["a.py"])])
    assert run.main(["--out", str(tmp_path), "--pause", "0", "--", "-k", "fastnn"]) == 1
    assert not stale.exists()  # removed before its process ran, and that process wrote none
    assert calls[0][:3] == [sys.executable, "-m", "pytest"] and calls[0][-2:] == ["-k", "fastnn"]
    with pytest.raises(SystemExit):
        run.main(["--out", str(tmp_path), "--bogus"])


def test_alternate_rotates_the_order_and_takes_the_median_of_per_round_ratios():
    """benchmarks/alternate.py: each round times every implementation once, starting one later each
    round; a peer's figure is the median over rounds of its time over fastnn's in that round, so a
    machine that slows down for a while moves both sides of each ratio alike."""
    alt = _module("alternate")
    calls, clock = [], iter([1.0, 2.0, 9.0, 4.0, 8.0, 9.0, 9.0, 1.0, 2.0])
    impls = {n: (lambda n=n: calls.append(n) or next(clock)) for n in ("fastnn", "numpy", "torch")}
    times = alt.alternate(impls, rounds=3, pause=0)
    assert calls == ["fastnn", "numpy", "torch", "numpy", "torch", "fastnn", "torch", "fastnn", "numpy"]
    assert times == {"fastnn": [1.0, 9.0, 1.0], "numpy": [2.0, 4.0, 2.0], "torch": [9.0, 8.0, 9.0]}
    row = alt.summarize("case", times, flops=2e9)
    assert row["best"] == {"fastnn": 1.0, "numpy": 2.0, "torch": 8.0}
    # per round: numpy 2, 4/9, 2 -> median 2; torch 9, 8/9, 9 -> median 9 (the slow round's 0.44 and
    # 0.89 are outvoted, where the ratio of best times would say 2 and 8)
    assert row["ratio"] == {"numpy": 2.0, "torch": 9.0}
    assert row["gflops"]["fastnn"] == 2.0


def test_alternate_runs_its_gemm_case_and_refuses_an_unknown_one(capsys):
    alt = _module("alternate")
    rows = alt.main(["--cases", "gemm", "--rounds", "2", "--pause", "0", "--min-time", "0.0005"])
    assert [r["case"] for r in rows][:2] == ["gemm-1024x1024x1024", "gemm-128x784x256"] and len(rows) == 7
    assert all(set(r["ratio"]) >= {"numpy"} and r["gflops"]["fastnn"] > 0 for r in rows)
    assert "gemm-784x128x256-tA" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        alt.main(["--cases", "gemm,speed"])


def test_alternate_times_the_threads_against_one_thread(capsys, monkeypatch):
    alt = _module("alternate")
    monkeypatch.setattr(alt, "THREAD_ROWS", 1000)  # a short epoch: the case's wiring, not its speed
    rows = alt.main(["--cases", "threads", "--rounds", "1"])
    assert len(rows) == 1 and rows[0]["case"].startswith("threads-") and rows[0]["case"].endswith("-vs-1")
    assert set(rows[0]["ratio"]) == {"fastnn-1-thread"} and rows[0]["ratio"]["fastnn-1-thread"] > 0
