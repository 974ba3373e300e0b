"""fastnn info: what a model file holds."""
import json

from . import _common as c

NAME = "info"
HELP = "show a model file's summary, configuration, training history and format version"
DESCRIPTION = """\
Show what a model file holds: its format version and the fastnn that wrote it, the data it was
trained on (task, target, classes, features), the layer summary, the configuration, the
optimizer and loss, and the training history, epoch by epoch."""
EPILOG = """\
examples:
  fastnn info model.safetensors
  fastnn info iris.safetensors --json     # the file's metadata documents as JSON"""


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="a model file (fastnn train, model.save, estimator.save)")
    p.add_argument("--json", action="store_true", help="print the metadata documents as one JSON object")
    c.add_common(p)


def _short(items, n=10):
    items = [c.format_label(x) for x in items]
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def history_table(doc):
    """The history document (fastnn/files/model_file.py) as a table, one line per epoch."""
    h = doc.get("history", {}) if isinstance(doc, dict) else {}
    epochs = doc.get("epoch", []) if isinstance(doc, dict) else []
    if not epochs:
        return "  (no epochs recorded)"
    keys = list(h)
    lines = ["  " + "  ".join(f"{k:>12}" for k in ["epoch"] + keys)]
    for i, e in enumerate(epochs):
        vals = [f"{h[k][i]:12.6g}" if i < len(h[k]) else f"{'':12}" for k in keys]
        lines.append("  " + "  ".join([f"{e + 1:>12}"] + vals))
    flags = [f for f in ("interrupted", "stopped_early", "terminated_on_nan") if doc.get(f)]
    if flags:
        lines.append("  (" + ", ".join(f.replace("_", " ") for f in flags) + ")")
    return "\n".join(lines)


def run(args):
    obj, meta = c.load_file(args.model)
    if args.json:
        print(json.dumps({k: v for k, v in meta.items() if k != "arrays"}, indent=2))
        return 0
    print(f"file: {args.model}")
    print(f"format: fastnn model format version {meta['format_version']}, written by fastnn "
          f"{meta.get('fastnn_version')}; kind {meta['kind']}")
    seq = getattr(obj, "model_", obj) if meta["kind"] != "Sequential" else obj
    built = getattr(seq, "built", False)
    if built:
        model = c.Model(obj, meta, args.model)
        d = model.dataset
        line = f"trained on: {d['source']}, " if d else "task: "
        line += model.task
        if model.target:
            line += f", target {model.target!r}"
        if model.classes is not None:
            line += f", {len(model.classes)} classes ({_short(model.classes)})"
        line += f", {model.n_features} features" + (f" ({_short(model.features)})" if model.features else "")
        print(line)
    else:
        print("not trained yet (no weights)")
    print()
    if hasattr(seq, "summary"):
        seq.summary()
    for key, title in (("config", "config"), ("compile_config", "optimizer and loss"),
                       ("training", "training state"), ("estimator", "estimator")):
        if meta.get(key) is not None:
            print(f"\n{title}:")
            print("  " + json.dumps(meta[key], sort_keys=True))
    print("\nhistory (last fit):")
    print(history_table(meta.get("history")))
    return 0
