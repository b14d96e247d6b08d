"""The verdict rule (mtlheads.verdicts) on hand-made cases: each of its four words, and its inputs."""

import math

import numpy as np
import pytest

from mtlheads import verdicts
from mtlheads.verdicts import Precondition, decide, decide_over_seeds, t_interval

MET, FAILED = Precondition("STL converged", True), Precondition("STL converged", False)


def test_an_interval_above_zero_holds_below_does_not_hold_across_is_not_shown():
    assert decide(2.0, 0.5, 3.5, 3, [MET]).word == verdicts.HOLDS
    assert decide(-2.0, -3.5, -0.5, 3, [MET]).word == verdicts.DOES_NOT_HOLD
    assert decide(1.0, -0.5, 2.5, 3, [MET]).word == verdicts.NOT_SHOWN
    assert decide(0.0, 0.0, 1.0, 3).word == verdicts.NOT_SHOWN  # zero on the edge is not excluded


def test_a_failed_precondition_makes_any_interval_untestable_and_is_named():
    for low, high in [(0.5, 3.5), (-3.5, -0.5), (-1.0, 1.0)]:
        v = decide((low + high) / 2, low, high, 3, [MET, FAILED, Precondition("equal updates", False)])
        assert v.word == verdicts.UNTESTABLE
        assert v.failed == ("STL converged", "equal updates")
        assert v.text == "untestable at this scale (not met: STL converged; equal updates)"
    assert decide(2.0, 0.5, 3.5, 3, [MET]).failed == ()


def test_one_seed_has_no_interval_so_its_test_is_untestable():
    v = decide_over_seeds([4.0], [MET])
    assert v.word == verdicts.UNTESTABLE and "no interval from 1 value" in v.failed[0]
    assert v.estimate == 4.0


def test_t_interval_matches_students_t_by_hand():
    # mean 2, sd 1, n 3: half width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051
    out = t_interval([1.0, 2.0, 3.0])
    assert out["mean"] == 2.0 and out["sd"] == 1.0 and out["n"] == 3
    assert out["high"] - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert out["low"] == pytest.approx(2.0 - (out["high"] - 2.0))
    assert math.isnan(t_interval([5.0])["low"])
    with pytest.raises(ValueError, match="at least one value"):
        t_interval([])


def test_seeds_that_agree_in_sign_but_scatter_widely_are_not_shown():
    assert decide_over_seeds([0.5, 4.0, 0.2], [MET]).word == verdicts.NOT_SHOWN
    assert decide_over_seeds([2.1, 2.0, 1.9], [MET]).word == verdicts.HOLDS


def test_a_reversed_interval_is_a_clear_error():
    with pytest.raises(ValueError, match="low <= high"):
        decide(0.0, 1.0, -1.0, 3)


def test_the_seed_and_sentence_interval_adds_the_two_half_widths_in_quadrature():
    seeds_only = verdicts.seed_and_sentence_interval([1.0, 2.0, 3.0], [2.0, 2.0])  # no sentence error
    assert seeds_only["low"] == pytest.approx(t_interval([1.0, 2.0, 3.0])["low"])
    # seeds that agree exactly: only the sentences' error, 1.96 bootstrap standard deviations
    resampled = [1.0, 3.0] * 50
    sd = float(np.std(resampled, ddof=1))
    out = verdicts.seed_and_sentence_interval([2.0, 2.0, 2.0], resampled)
    assert out["sentence se"] == pytest.approx(sd)
    assert out["high"] - 2.0 == pytest.approx(1.959964 * sd, rel=1e-5)
    both = verdicts.seed_and_sentence_interval([1.0, 2.0, 3.0], resampled)
    assert both["high"] - 2.0 == pytest.approx(math.hypot(4.302653 / math.sqrt(3), 1.959964 * sd), rel=1e-5)


def test_seeds_and_sentences_decide_by_the_same_rule():
    assert verdicts.decide_over_seeds_and_sentences([3.0, 3.2, 2.8], [3.0, 3.1, 2.9] * 20, [MET]).word == verdicts.HOLDS
    wide = verdicts.decide_over_seeds_and_sentences([3.0, 3.2, 2.8], [0.0, 6.0] * 20, [MET])
    assert wide.word == verdicts.NOT_SHOWN  # the same seeds, but the test sentences could move it across 0
    one = verdicts.decide_over_seeds_and_sentences([3.0], [3.0, 3.1, 2.9], [MET])
    assert one.word == verdicts.UNTESTABLE and "no interval from 1 value" in one.failed[0]
    with pytest.raises(ValueError, match="at least 2 resamples, got 1"):
        verdicts.seed_and_sentence_interval([1.0, 2.0], [float("nan"), 1.0])
