import pytest

from mtlheads import nontarget


@pytest.mark.parametrize("low, high, said", [(0.5, 3.0, "holds"), (-3.0, -0.1, "is reversed"),
                                             (-1.0, 2.0, "is not shown"), (0.0, 2.0, "is not shown")])
def test_the_verdict_follows_the_interval(low, high, said):
    assert nontarget.verdict({"difference": (low + high) / 2, "low": low, "high": high}) == said


def test_an_interval_upside_down_is_an_error():
    with pytest.raises(ValueError, match="low <= high"):
        nontarget.verdict({"low": 2.0, "high": 1.0})


def test_seed_paired_gap_pairs_the_same_question_within_a_seed():
    import pandas as pd

    rows = []
    for seed, shift in ((1, 0.0), (2, 0.5)):
        for q in range(3):
            rows.append({"seed": seed, "question": q, "method": "a", "recall": 0.5 + shift})
            rows.append({"seed": seed, "question": q, "method": "b", "recall": 0.25 + shift})
    gap = nontarget.seed_paired_gap(pd.DataFrame(rows), "a", "b")
    assert gap["difference"] == pytest.approx(25.0) and gap["low"] == pytest.approx(25.0)  # every pair differs by 25
