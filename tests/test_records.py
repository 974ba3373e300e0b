"""The Python <-> C contract: records laid out like the C structs, codes equal to the header's,
the same names and signatures in both backends, and engines that copy what they are given and
report their progress in a RESULT record while an epoch runs."""
import inspect
import pathlib
import re
import threading
import time

import numpy as np
import pytest

from fastnn import _engine as _backend
from fastnn._engine import codes, records
from fastnn._engine import reference as _reference
from fastnn._engine.records import LAYER, NET, OPTIM, RESULT

try:
    from fastnn._engine import _ext
except ImportError:  # pure-Python install
    _ext = None

needs_c = pytest.mark.skipif(_ext is None, reason="compiled extension not built")
ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDS = {"fnn_layer": LAYER, "fnn_net": NET, "fnn_optim": OPTIM, "fnn_train_result": RESULT}


def engine_module(name):
    if name not in _backend.available_backends():
        pytest.skip(f"backend {name!r} is not built")
    return {"c": _ext, "python": _reference}[name]


@pytest.fixture(params=["c", "python"])
def be(request):
    """The backend module itself (no global switch: these tests call engines directly)."""
    return engine_module(request.param)


# -- layouts -----------------------------------------------------------------------------------
@needs_c
@pytest.mark.parametrize("struct", sorted(RECORDS))
def test_record_is_laid_out_like_the_c_struct(struct):
    c = _ext.struct_layout()[struct]
    dt = RECORDS[struct]
    assert dt.itemsize == c["sizeof"]
    for name in dt.names:
        assert name in c["offsetof"], f"{struct} has no field {name}"
        assert dt.fields[name][1] == c["offsetof"][name], f"{struct}.{name} offset"
        assert dt.fields[name][0].itemsize == c["fieldsize"][name], f"{struct}.{name} size"
    engine_owned = set(records.NET_ENGINE_FIELDS) if struct == "fnn_net" else set()
    assert set(c["offsetof"]) == set(dt.names) | engine_owned


def test_the_oracle_reports_the_records_layout():
    layout = _reference.struct_layout()
    assert set(layout) == set(RECORDS)
    for struct, dt in RECORDS.items():
        assert layout[struct]["sizeof"] == dt.itemsize
        for name in dt.names:
            assert layout[struct]["offsetof"][name] == dt.fields[name][1]
            assert layout[struct]["fieldsize"][name] == dt.fields[name][0].itemsize


# -- codes ---------------------------------------------------------------------------------------
@needs_c
def test_codes_agree_with_the_header_entry_by_entry():
    from_c, from_py = _ext.constants(), codes.c_constants()
    assert sorted(set(from_c) - set(from_py)) == [], "C constants codes.py lacks"
    assert sorted(set(from_py) - set(from_c)) == [], "codes.py entries the extension does not know"
    for name, value in from_c.items():
        assert from_py[name] == value, name


def header_constants():
    """{name: value} of every enum member and numeric #define in csrc/fastnn.h, by regex."""
    text = re.sub(r"/\*.*?\*/", "", (ROOT / "csrc" / "fastnn.h").read_text(), flags=re.S)
    out = {}
    for body in re.findall(r"enum(?:\s+\w+)?\s*\{(.*?)\}", text, flags=re.S):
        nxt = 0
        for member in filter(None, (m.strip() for m in body.split(","))):
            name, _, value = member.partition("=")
            nxt = int(value) if value.strip() else nxt
            out[name.strip()] = nxt
            nxt += 1
    out.update({n: int(v) for n, v in re.findall(r"#define\s+(FNN_\w+)\s+(-?\d+)\s*$", text, flags=re.M)})
    return out


def test_codes_agree_with_the_header_text():
    if not (ROOT / "csrc" / "fastnn.h").exists():
        pytest.skip("no source tree")
    assert header_constants() == codes.c_constants()


def test_the_oracle_reports_the_codes_it_uses():
    assert _reference.constants() == codes.c_constants()


# -- same names, same signatures --------------------------------------------------------------------
def public(obj):
    return {n: v for n, v in vars(obj).items() if not n.startswith("_") and callable(v)}


@needs_c
def test_both_backends_have_the_same_functions_with_the_same_signatures():
    c, py = public(_ext), public(_reference)
    assert sorted(set(c) - set(py)) == [], "only in _ext"
    assert sorted(set(py) - set(c)) == [], "only in reference"
    for name in c:
        assert inspect.signature(c[name]) == inspect.signature(py[name]), name
    assert _ext.BACKEND == "c" and _reference.BACKEND == "python"


@needs_c
def test_both_engines_have_the_same_methods_and_attributes():
    methods = [{n for n in dir(m.Engine) if not n.startswith("_") and callable(getattr(m.Engine, n))}
               for m in (_ext, _reference)]
    assert methods[0] == methods[1] == {"train_epoch", "train_step", "gradient", "predict", "predict_lean"}
    methods = methods[0]
    for n in methods:
        assert inspect.signature(getattr(_ext.Engine, n)) == inspect.signature(getattr(_reference.Engine, n)), n
    layers, net, _ = tiny_net()
    engines = [m.Engine(layers=layers, net=net, dtype="float64", batch=4) for m in (_ext, _reference)]
    assert [sorted(n for n in dir(e) if not n.startswith("_")) for e in engines] == \
        [sorted(methods | {"batch", "is_f64"})] * 2
    assert [(e.batch, e.is_f64) for e in engines] == [(4, True)] * 2


@needs_c
def test_engine_constructor_signature_is_the_one_it_accepts():
    sig = inspect.signature(_ext.Engine)
    assert sig == inspect.signature(_reference.Engine)
    assert list(sig.parameters) == ["layers", "net", "dtype", "batch"]
    layers, net, _ = tiny_net()
    for m in (_ext, _reference):
        m.Engine(**dict(zip(sig.parameters, (layers, net, "float32", 2))))  # by keyword
        with pytest.raises(TypeError):
            m.Engine(layers, net, "float32", 2, 3)


def test_no_wrapper_repeats_a_call_for_float_and_double():
    src = ROOT / "fastnn" / "_engine"
    if not src.exists() or not list(src.glob("*.pxi")):
        pytest.skip("no source tree")
    for pxi in src.glob("*.pxi"):
        text = pxi.read_text()
        assert "floating is float" not in text, pxi.name
        # kernels are called by their type-generic names; only the workspace is made per type
        assert set(re.findall(r"(fnn_\w+)_f(?:32|64)\(", text)) <= {"fnn_workspace_new", "fnn_workspace_free"}


# -- record helpers ---------------------------------------------------------------------------------
def test_record_helpers_fill_documented_defaults_and_reject_unknown_or_missing_fields():
    o = records.optim_record(kind=1, lr=0.5)
    assert o.dtype == OPTIM and o.ndim == 0
    assert not o.flags.writeable  # a value: equal records may be one object
    assert records.as_dict(o) == {**records.OPTIM_DEFAULTS, "kind": 1, "lr": 0.5}
    n = records.net_record(loss=2, n_inputs=3, n_outputs=4, n_params=5, seed=7)
    assert records.as_dict(n) == {"loss": 2, "n_inputs": 3, "n_outputs": 4, "n_params": 5, "n_decay": 0,
                                  "n_state": 0, "seed": 7}
    ly = records.layer_records([{"kind": 0, "n_in": 2, "n_out": 3, "alpha": 0.1}, {"kind": 2, "n_in": 3,
                                                                                     "n_out": 3, "rate": 0.5}])
    assert ly.dtype == LAYER and ly.shape == (2,)
    assert ly["alpha"].tolist() == [0.1, 0.0] and ly["rate"].tolist() == [0.0, 0.5]
    assert records.as_dict(records.result_record()) == {"batches": 0, "samples": 0, "loss_sum": 0.0,
                                                         "weight_sum": 0.0, "correct": 0, "bad_batch": -1}
    with pytest.raises(TypeError, match="no field 'learning_rate'"):
        records.optim_record(kind=0, lr=0.1, learning_rate=0.1)
    with pytest.raises(TypeError, match="needs a value for lr"):
        records.optim_record(kind=0)
    with pytest.raises(TypeError, match="no field 'n_layers'"):  # the engine sets it
        records.net_record(loss=0, n_inputs=1, n_outputs=1, n_params=1, n_layers=2)
    with pytest.raises(TypeError, match="needs a value for n_in, n_out"):
        records.layer_records([{"kind": 0}])
    # an integer field takes a whole float as that integer, and refuses any other (NumPy truncated)
    assert records.as_dict(records.optim_record(kind=0, lr=0.1, overflow_check=1.0))["overflow_check"] == 1
    for bad in (1.5, float("nan"), np.float32(0.5)):
        with pytest.raises(ValueError, match="the 'overflow_check' field is an integer"):
            records.optim_record(kind=0, lr=0.1, overflow_check=bad)
    with pytest.raises(ValueError, match="the 'n_in' field is an integer, not 2.5"):
        records.layer_records([{"kind": 0, "n_in": 2.5, "n_out": 3}])
    with pytest.raises(ValueError, match="the 'seed' field is an integer"):
        records.net_record(loss=0, n_inputs=1, n_outputs=1, n_params=1, seed=0.5)


# -- engines ------------------------------------------------------------------------------------------
def tiny_net(n_in=5, hidden=7, n_out=3, loss=0):
    """Dense(relu) + Dense: its LAYER array, NET record and float64 parameters."""
    w0, w1 = n_in * hidden, hidden * n_out
    layers = records.layer_records([
        {"kind": 0, "activation": 1, "n_in": n_in, "n_out": hidden, "w_off": 0, "b_off": w0 + w1},
        {"kind": 0, "n_in": hidden, "n_out": n_out, "w_off": w0, "b_off": w0 + w1 + hidden},
    ])
    n_params = w0 + w1 + hidden + n_out
    net = records.net_record(loss=loss, n_inputs=n_in, n_outputs=n_out, n_params=n_params, n_decay=w0 + w1,
                             seed=3)
    params = np.random.default_rng(0).standard_normal(n_params)
    return layers, net, params


def test_engine_copies_its_description(be):
    layers, net, params = tiny_net()
    X = np.random.default_rng(1).standard_normal((6, 5))
    engine = be.Engine(layers, net, "float64", 8)
    before = np.empty((6, 3))
    engine.predict(before, params, np.zeros(1), X, True)
    layers["activation"] = 3  # sigmoid everywhere
    layers["w_off"] = 1
    net["loss"] = 1
    after = np.empty((6, 3))
    engine.predict(after, params, np.zeros(1), X, True)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(after.sum(1), 1, rtol=1e-12)  # still softmax


@pytest.mark.parametrize("what", ["layers", "net"])
def test_engine_rejects_a_description_that_is_not_its_record(be, what):
    layers, net, _ = tiny_net()
    retyped = np.zeros(2, np.dtype([(n, "f8") for n in LAYER.names]))  # same names, other types
    strided = np.repeat(layers, 2)[::2]  # the same layers, not contiguous
    bad = {"layers": [{"kind": 0}, records.as_dict(net), retyped, layers.reshape(1, 2), np.zeros(2), strided],
           "net": [records.as_dict(net), net.reshape(1), layers, records.optim_record(kind=0, lr=1.0)]}[what]
    name = {"layers": "LAYER", "net": "NET"}[what]
    for b in bad:
        args = {"layers": layers, "net": net, what: b}
        with pytest.raises(TypeError, match=name):
            be.Engine(args["layers"], args["net"], "float64", 4)


def test_training_calls_reject_optimizer_and_result_that_are_not_records(be):
    layers, net, params = tiny_net()
    engine = be.Engine(layers, net, "float64", 4)
    optim = records.optim_record(kind=0, lr=0.1)
    X, labels = np.ones((4, 5)), np.zeros(4, np.int64)
    slots, counters = np.zeros(params.size), np.zeros(codes.N_COUNTERS, np.int64)

    def step(result, optim):
        return engine.train_step(result, params, slots, np.zeros(1), counters, optim, X, None, labels, None, 0)

    with pytest.raises(TypeError, match="OPTIM"):
        step(records.result_record(), records.as_dict(optim))
    with pytest.raises(TypeError, match="RESULT"):
        step({}, optim)
    with pytest.raises(TypeError, match="RESULT"):
        step(np.zeros((), [(n, "f8") for n in RESULT.names]), optim)  # same names, other types
    frozen = records.result_record()
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="RESULT record must be writable"):
        step(frozen, optim)
    with pytest.raises(TypeError, match="OPTIM"):
        be.lr_at(records.as_dict(optim), 0, 0, 0)
    assert be.lr_at(optim, 0, 0, 0) == 0.1
    result = records.result_record()
    assert step(result, optim) == ("ok", None)
    assert result["batches"] == 1 and result["samples"] == 4 and result["weight_sum"] == 4.0
    assert result["bad_batch"] == -1 and result["loss_sum"] > 0


def test_epoch_result_holds_its_totals_and_a_nonfinite_batch_its_index(be):
    layers, net, params = tiny_net()
    engine = be.Engine(layers, net, "float64", 8)
    rng = np.random.default_rng(2)
    X, labels = rng.standard_normal((37, 5)), rng.integers(0, 3, 37)
    args = (np.zeros(params.size), np.zeros(1), np.zeros(codes.N_COUNTERS, np.int64), np.empty(37, np.int64),
            records.optim_record(kind=0, lr=0.1))
    result = records.result_record()
    result["batches"] = 99  # reset by the call
    assert engine.train_epoch(result, params, *args, X, None, labels, None, 8, True, 0) == ("ok", None)
    assert records.as_dict(result) | {"loss_sum": 0.0, "correct": 0} == {
        "batches": 5, "samples": 37, "loss_sum": 0.0, "weight_sum": 37.0, "correct": 0, "bad_batch": -1}
    X[20] = np.nan  # in the third batch of an unshuffled epoch
    status, raised = engine.train_epoch(result, params, *args, X, None, labels, None, 8, False, 1)
    assert (status, raised) == ("nonfinite", None)
    assert result["bad_batch"] == 2 and result["batches"] == 2 and result["samples"] == 16


def test_result_shows_the_progress_of_a_running_epoch(be):
    """The engine writes its totals into the RESULT record batch by batch: a second thread sees
    them grow while the epoch runs (the compiled engine runs without the GIL)."""
    n = 40_000 if be is _ext else 3_000
    rng = np.random.default_rng(0)
    layers, net, params = tiny_net(n_in=64, hidden=128, n_out=10)
    X, labels = rng.standard_normal((n, 64)), rng.integers(0, 10, n)
    engine = be.Engine(layers, net, "float64", 32)
    result = records.result_record()
    out = {}

    def run():
        out["ret"] = engine.train_epoch(result, params, np.zeros(params.size), np.zeros(1),
                                        np.zeros(codes.N_COUNTERS, np.int64), np.empty(n, np.int64),
                                        records.optim_record(kind=0, lr=1e-3), X, None, labels, None, 32,
                                        True, 0)

    seen = []
    t = threading.Thread(target=run)
    t.start()
    while t.is_alive():
        seen.append((int(result["batches"]), int(result["samples"])))
        time.sleep(0.001)
    t.join()
    total = -(-n // 32)
    assert out["ret"] == ("ok", None)
    assert int(result["batches"]) == total and int(result["samples"]) == n
    batches = [b for b, _ in seen]
    assert batches == sorted(batches)
    assert any(0 < b < total for b in batches), f"no progress seen: {sorted(set(batches))[:5]}"
