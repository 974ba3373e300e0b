"""The Python <-> C contract: records laid out like the C structs, codes equal to the header's."""
import pathlib
import re

import numpy as np
import pytest

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


# -- record helpers ---------------------------------------------------------------------------------
def test_record_helpers_fill_documented_defaults_and_reject_unknown_or_missing_fields():
    o = records.optim_record(kind=1, lr=0.5)
    assert o.dtype == OPTIM and o.ndim == 0
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
