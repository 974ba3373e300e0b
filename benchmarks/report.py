"""The ratio table of a benchmark run, from pytest-benchmark's JSON:

    python -m pytest benchmarks --benchmark-only --benchmark-json=RESULTS.json
    python benchmarks/report.py RESULTS.json [MORE.json ...] [--png CHART.png]

For every group, each implementation's time and the peer's time over fastnn's (on the minimum and
on the median over rounds: "3.2" means fastnn took a third of the peer's time), with GFLOP/s where
the benchmark recorded its work. Above the table: the machine (CPU model from /proc/cpuinfo), the
kernel and thread count fastnn ran with (fastnn.show_config()), the libraries' versions and the
load average at the end, as benchmarks/conftest.py stored them in the JSON's machine_info. Below
it, the inference targets of the speed issue that this run can check. With matplotlib, a bar
chart of the ratios is written beside the JSON (or to --png). Several JSON files (benchmarks/run.py
writes one per benchmark file, each from a process of its own) make one table: the header of the
first, the end-of-run load of each, and a group that two files both hold is kept apart, named
after its file (ratios are only ever taken within one run)."""
import argparse
import json
import os
import sys

GROUP_ORDER = ("mnist", "gemm", "inference")  # training, then kernels, then inference


def load(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if "benchmarks" not in data:
        raise SystemExit(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    return data


def merge(datas, names):
    """One result of several runs (as load() returns them, named by their files): the machine of
    the first; every benchmark, a group that an earlier file also holds renamed "group [name]";
    the end-of-run load of each file under machine_info.fastnn.runs."""
    seen, benches, runs = set(), [], []
    for data, name in zip(datas, names):
        mine = set()
        for b in data["benchmarks"]:
            group = b.get("group") or "(no group)"
            if group in seen:
                b = dict(b, group=f"{group} [{name}]")
            mine.add(group)
            benches.append(b)
        seen |= mine
        info = data.get("machine_info", {}).get("fastnn", {})
        runs.append((name, info.get("date") or data.get("datetime", "?"), info.get("load_average_end")))
    out = dict(datas[0], benchmarks=benches)
    machine = dict(out.get("machine_info", {}))
    machine["fastnn"] = dict(machine.get("fastnn", {}), runs=runs, load_average_end=None)
    out["machine_info"] = machine
    return out


def groups(data):
    """{group: [bench, ...]} in GROUP_ORDER, each list fastest first."""
    out = {}
    for b in data["benchmarks"]:
        out.setdefault(b.get("group") or "(no group)", []).append(b)
    for benches in out.values():
        benches.sort(key=lambda b: b["stats"]["min"])

    def rank(item):
        name = item[0]
        return next((i for i, p in enumerate(GROUP_ORDER) if name.startswith(p)), len(GROUP_ORDER)), name
    return dict(sorted(out.items(), key=rank))


def impl(b):
    return b.get("extra_info", {}).get("impl", b["name"])


def fmt_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}" if s / scale < 100 else f"{s / scale:.0f} {unit}"
    return f"{s * 1e9:.0f} ns"


def gflops(b, stat="min"):
    flops = b.get("extra_info", {}).get("flops")
    return flops / b["stats"][stat] / 1e9 if flops else None


def header(data):
    m = data.get("machine_info", {})
    info = m.get("fastnn", {})
    cfg = info.get("fastnn_config", {})
    lines = [f"run:       {info.get('date') or data.get('datetime', '?')}",
             f"machine:   {info.get('cpu_model') or m.get('cpu', {}).get('brand_raw', '?')}",
             f"fastnn:    {cfg.get('fastnn', '?')}, backend {cfg.get('backend', '?')}, kernel "
             f"{cfg.get('gemm kernel', '?')} (runnable: {cfg.get('kernels runnable', '?')}), openmp "
             f"{cfg.get('openmp', '?')}, {cfg.get('threads', '?')} threads"]
    libs = info.get("libraries", {})
    if libs:
        lines.append("libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(libs.items())))
    if info.get("numpy_blas"):
        lines.append(f"numpy:     {info['numpy_blas']}")
    python = m.get("python_implementation", "") + " " + m.get("python_version", "")
    if python.strip():
        lines.append(f"python:    {python.strip()}")
    for name, date, end in info.get("runs", ()):
        load = " ".join(f"{x:.1f}" for x in end) if end else "?"
        lines.append(f"file:      {name}, {date}, load {load} at its end")
    load = info.get("load_average_end")
    if load:
        lines.append(f"load:      {' '.join(f'{x:.1f}' for x in load)} at the end of the run "
                     f"(1, 5, 15 min): above the CPU count the machine was shared")
    if info.get("env"):
        lines.append("env:       " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    return lines


def table(benches):
    """Rows (impl, min, median, rounds, ratio on min, ratio on median, GFLOP/s) of one group;
    the ratios are this row's time over fastnn's (None without a fastnn entry)."""
    ref = next((b for b in benches if impl(b) == "fastnn"), None)
    rows = []
    for b in benches:
        st = b["stats"]
        r_min = st["min"] / ref["stats"]["min"] if ref else None
        r_med = st["median"] / ref["stats"]["median"] if ref else None
        rows.append((impl(b), st["min"], st["median"], st["rounds"], r_min, r_med, gflops(b)))
    return rows


def print_table(grouped, out=None):
    out = out or sys.stdout  # the one in place at the call (redirect_stdout), not at import
    head = ("", "min", "median", "rounds", "peer/fastnn (min)", "peer/fastnn (median)", "GFLOP/s")
    for group, benches in grouped.items():
        rows = table(benches)
        cells = [(r[0], fmt_time(r[1]), fmt_time(r[2]), str(r[3]),
                  "-" if r[4] is None else ("fastnn" if r[0] == "fastnn" else f"{r[4]:.2f}"),
                  "-" if r[5] is None else ("fastnn" if r[0] == "fastnn" else f"{r[5]:.2f}"),
                  "" if r[6] is None else f"{r[6]:.1f}") for r in rows]
        widths = [max(len(c[i]) for c in cells + [head]) for i in range(len(head))]
        print(f"\n{group}", file=out)
        print("  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))),
              file=out)
        for c in cells:
            print("  " + "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths))),
                  file=out)


def find(grouped, group, who):
    return next((b for b in grouped.get(group, []) if impl(b) == who), None)


def targets(grouped):
    """Lines on the inference targets of the speed issue that this run's results can check."""
    lines = []
    for group in ("inference-1-row", "inference-1-row-dense"):
        f = find(grouped, group, "fastnn")
        if f is None:
            continue
        t = f["stats"]["median"]
        line = f"{group}: fastnn predict_proba {t * 1e6:.1f} us (median; target <= 5 us)"
        o = find(grouped, group, "onnxruntime")
        if o is not None:
            line += f", {t / o['stats']['median']:.2f} of onnxruntime's time (target <= 0.33)"
        lines.append(line)
    f = find(grouped, "inference-10k-rows", "fastnn")
    if f is not None:
        parts = []
        g = find(grouped, "gemm-1024x1024x1024", "fastnn")
        if g is not None and gflops(f) and gflops(g):
            parts.append(f"{gflops(f):.1f} GFLOP/s = {100 * gflops(f) / gflops(g):.0f}% of fastnn's 1024^3 SGEMM "
                         f"rate in this run ({gflops(g):.1f}; target >= 92%)")
        for peer in ("numpy", "onnxruntime", "torch"):
            p = find(grouped, "inference-10k-rows", peer)
            if p is not None:
                parts.append(f"{peer} takes {p['stats']['median'] / f['stats']['median']:.2f}x fastnn's time")
        lines.append("inference-10k-rows: " + "; ".join(parts or ["fastnn alone (no peer, no GEMM run)"]))
    return lines


def chart(grouped, path):
    """A bar per peer and group: its time over fastnn's (median); a line at 1. Needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = {g: [r for r in table(b) if r[5] is not None and r[0] != "fastnn"] for g, b in grouped.items()}
    shown = {g: rows for g, rows in shown.items() if rows}
    if not shown:
        return False
    peers = sorted({r[0] for rows in shown.values() for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(shown) * max(1, len(peers)) / 2), 4.5))
    width = 0.8 / len(peers)
    for i, peer in enumerate(peers):
        xs, ys = [], []
        for j, rows in enumerate(shown.values()):
            r = next((r for r in rows if r[0] == peer), None)
            if r is not None:
                xs.append(j + (i - (len(peers) - 1) / 2) * width)
                ys.append(r[5])
        ax.bar(xs, ys, width, label=peer)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels(list(shown), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("peer's time / fastnn's time (median)")
    ax.set_title("above 1: fastnn is faster")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="the JSON written by pytest --benchmark-json (or several)")
    ap.add_argument("--png", help="where to write the bar chart (default: beside the first JSON)")
    args = ap.parse_args(argv)
    datas = [load(p) for p in args.results]
    data = datas[0] if len(datas) == 1 else \
        merge(datas, [os.path.splitext(os.path.basename(p))[0] for p in args.results])
    grouped = groups(data)
    print("\n".join(header(data)))
    print("\npeer/fastnn: the peer's time over fastnn's from this run (above 1: fastnn is faster)")
    print_table(grouped)
    lines = targets(grouped)
    if lines:
        print("\ntargets")
        for line in lines:
            print("  " + line)
    png = args.png or os.path.splitext(args.results[0])[0] + ".png"
    if chart(grouped, png):
        print(f"\nchart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
