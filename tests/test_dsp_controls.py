"""Knob -> control map: starts additive, honours "affects", serialises to plain numbers
that a numpy (C++-like) evaluator reproduces."""
from __future__ import annotations

import json

import pytest
import torch

from dsp.controls import KnobControlMap, KnobDef, evaluate_dict
from dsp.topologies import AmpTopology, DriveTopology

torch.set_num_threads(1)

KNOBS = [KnobDef("Drive", affects=("pre_gain_db",)),
         KnobDef("Attack", "switch", 1, 6, (1, 2, 3, 4, 5, 6), 3, ("input_hp_hz",)),
         KnobDef("Bright", affects=("tone_lp_hz", "tone_shelf_db", "pre_gain_db"))]


def _scramble(m: KnobControlMap, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return m


def _settings():
    return [{"Drive": 0.0, "Attack": 1, "Bright": 10.0}, {"Drive": 3.3, "Attack": 4, "Bright": 6.1},
            {"Drive": 10.0, "Attack": 6, "Bright": 0.0}, {}]


def test_starts_as_additive_model_and_reference_gives_base():
    m = KnobControlMap(KNOBS, list(DriveTopology.CONTROLS))
    kv = m.knob_tensor(_settings())
    torch.testing.assert_close(m.interactions(kv), torch.zeros(4, len(DriveTopology.CONTROLS)))
    _scramble(m)
    ref = m.knob_tensor([{}])
    torch.testing.assert_close(m.additive(ref)[0], m.base.detach())


def test_affects_hints_are_honoured():
    m = _scramble(KnobControlMap(KNOBS, list(DriveTopology.CONTROLS)))
    names = DriveTopology.control_names()
    with torch.no_grad():
        base = m(m.knob_tensor([{}]))[0]
        for knob, allowed in (("Drive", {"pre_gain_db"}), ("Attack", {"input_hp_hz"}),
                              ("Bright", {"tone_lp_hz", "tone_shelf_db", "pre_gain_db"})):
            for v in (0.0, 1.0, 6.0, 10.0):
                out = m(m.knob_tensor([{knob: v}]))[0]
                moved = {names[i] for i in torch.nonzero((out - base).abs() > 1e-6).flatten().tolist()}
                assert moved <= allowed, (knob, moved)
    # only pre_gain_db has two knobs -> only it gets the interaction MLP
    assert [names[i] for i in torch.nonzero(m.mlp_mask).flatten().tolist()] == ["pre_gain_db"]


def test_without_hints_every_knob_may_move_every_control():
    knobs = [KnobDef("A"), KnobDef("B")]
    m = _scramble(KnobControlMap(knobs, list(AmpTopology.CONTROLS)))
    assert bool(m.mask.all())
    with torch.no_grad():
        d = m(m.knob_tensor([{"A": 9.0}])) - m(m.knob_tensor([{}]))
    assert (d.abs() > 1e-6).float().mean() > 0.9
    assert float(m.regularizer().detach()) > 0


def test_unknown_control_in_affects_is_an_error():
    with pytest.raises(ValueError, match="unknown controls"):
        KnobControlMap([KnobDef("Drive", affects=("gain",))], list(DriveTopology.CONTROLS))


def test_switch_is_a_table_and_continuous_is_piecewise_linear():
    m = KnobControlMap(KNOBS, list(DriveTopology.CONTROLS))
    i = DriveTopology.control_names().index("input_hp_hz")
    j = DriveTopology.control_names().index("pre_gain_db")
    with torch.no_grad():
        m.curves[1][i] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        m.curves[0][j] = torch.tensor([0.0, 1.0, 2.0, 4.0, 8.0])  # knots 0, 2.5, 5, 7.5, 10
        out = m(m.knob_tensor([{"Attack": 5}, {"Drive": 8.75}, {"Drive": 5.0}]))
    base = m.base.detach()
    assert abs(float(out[0, i] - base[i]) - 2.0) < 1e-6       # 5 - 3 (zero at reference 3)
    assert abs(float(out[1, j] - base[j]) - 4.0) < 1e-5       # halfway 4 .. 8, minus 2
    assert abs(float(out[2, j] - base[j])) < 1e-6


def test_round_trip_to_dict_from_dict_and_numpy_evaluator():
    m = _scramble(KnobControlMap(KNOBS, list(DriveTopology.CONTROLS)), seed=3)
    d = m.to_dict()
    text = json.dumps(d)  # plain numbers only
    m2 = KnobControlMap.from_dict(json.loads(text))
    assert json.dumps(m2.to_dict()) == text
    kv = m.knob_tensor(_settings())
    with torch.no_grad():
        torch.testing.assert_close(m2(kv), m(kv))
    for s, phys in zip(_settings(), m.physical(_settings())):
        ref = evaluate_dict(d, s)
        for k, v in phys.items():
            assert abs(ref[k] - v) <= 1e-4 * max(1.0, abs(v)), (k, ref[k], v)
