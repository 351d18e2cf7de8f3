"""Krippendorff's alpha and pairwise agreement against values worked out by hand."""

from __future__ import annotations

import pytest

from app.admin.agreement import krippendorff_alpha_nominal, pairwise_agreement


def test_alpha_matches_hand_computation():
    # units: [g,g] [g,b] [b,b] [g,g,b] and one unpairable [g]
    # coincidences: o_gg = 2 + 2*1/2 = 3; o_gb = o_bg = 1 + 2*1/2 = 2; o_bb = 2 + 0 = 2
    # n_g = 5, n_b = 4, n = 9; alpha = 1 - (n-1) * (o_gb + o_bg) / (2 * n_g * n_b) = 1 - 8*4/40 = 0.2
    units = [["good", "good"], ["good", "bad"], ["bad", "bad"], ["good", "good", "bad"], ["good"]]
    a = krippendorff_alpha_nominal(units)
    assert a.value == pytest.approx(0.2)
    assert (a.items, a.labels) == (4, 9)


def test_alpha_perfect_and_undefined():
    assert krippendorff_alpha_nominal([["good", "good"], ["bad", "bad"]]).value == pytest.approx(1.0)
    # no variation at all: expected disagreement is zero, alpha is undefined
    assert krippendorff_alpha_nominal([["good", "good"], ["good", "good"]]).value is None
    assert krippendorff_alpha_nominal([["good"]]).value is None


def test_pairwise_agreement_per_rater():
    units = {1: {10: "good", 11: "good", 12: "bad"}, 2: {10: "good", 12: "good"}, 3: {11: "bad"}}
    p = pairwise_agreement(units)
    # rater 10: item 1 agrees with 11, not 12 (1 of 2); item 2 agrees with 12 (1 of 1) -> 2 of 3 on 2 items
    assert (p[10].agreements, p[10].pairs, p[10].items) == (2, 3, 2)
    assert p[12].rate == pytest.approx(1 / 3)
    assert p[11].items == 1  # item 3 has no co-rater
