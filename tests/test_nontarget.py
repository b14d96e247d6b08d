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


def test_target_scores_read_each_head_on_its_own_task():
    from mtlheads import nontarget

    def pred(span_answer="", spans=(), generated=None, kind="span"):
        return {"span_answer": span_answer, "spans": list(spans), "generated": generated, "type": kind}

    spans = [pred("Paris", ["Paris"]), pred()]
    questions = [{"answers": ["Paris"]}, {"answers": ["1905"]}]
    control = nontarget.target_scores("span only", 1, [pred(), pred()], [{"answer": "3"}] * 2, spans, questions,
                                      [pred()], [{"answer": "7"}])
    assert control == {"model": "span only", "seed": 1, "exact_match": 50.0, "f1": 50.0, "SQuAD: no span (%)": 50.0}
    arithmetic = [pred(generated="3", kind="generation"), pred(generated="3.0", kind="span"), pred(generated="4")]
    multi = nontarget.target_scores("span + generation", 1, arithmetic, [{"answer": "3"}, {"answer": "3"},
                                                                         {"answer": "5"}],
                                    spans, questions, [pred(generated="7")], [{"answer": "7"}])
    assert multi["arithmetic: generated EM (%)"] == pytest.approx(200 / 3)  # "3.0" is the number 3
    assert multi["type head right on arithmetic (%)"] == pytest.approx(100 / 3)
    assert multi["type head right on SQuAD (%)"] == 100.0 and multi["GSM8K: generated EM (%)"] == 100.0
    assert multi["most common generated answer"] == "3" and multi["share of that answer (%)"] == pytest.approx(100 / 3)
