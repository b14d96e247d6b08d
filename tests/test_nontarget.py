import pandas as pd
import pytest

from mtlheads import nontarget, verdicts


def frame_of(differences: dict[int, list[float]]) -> pd.DataFrame:
    """Method a scoring ``differences[seed][question]`` above method b, per seed and question."""
    rows = []
    for seed, values in differences.items():
        for q, d in enumerate(values):
            rows.append({"seed": seed, "question": q, "method": "a", "recall": 0.25 + d})
            rows.append({"seed": seed, "question": q, "method": "b", "recall": 0.25})
    return pd.DataFrame(rows)


def test_an_effect_pairs_questions_within_a_seed_and_holds_both_errors():
    same = nontarget.method_effect(frame_of({1: [0.25] * 4, 2: [0.25] * 4}), "a", "b")
    assert same["difference"] == pytest.approx(25.0) and same["n"] == 2 and same["items"] == 4
    assert same["low"] == pytest.approx(25.0) and same["high"] == pytest.approx(25.0)  # no error of either kind
    seeds_differ = nontarget.method_effect(frame_of({1: [0.1] * 4, 2: [0.3] * 4}), "a", "b")
    assert seeds_differ["item se"] == pytest.approx(0.0) and seeds_differ["sd"] == pytest.approx(100 * 0.2 / 2 ** 0.5)
    assert seeds_differ["low"] < 0 < seeds_differ["high"]  # two seeds this far apart: t with 1 df is wide
    questions_differ = nontarget.method_effect(frame_of({1: [0.0, 0.5] * 10, 2: [0.0, 0.5] * 10}), "a", "b")
    assert questions_differ["sd"] == pytest.approx(0.0) and questions_differ["item se"] > 0
    assert questions_differ["low"] < 25 < questions_differ["high"]
    one_seed = nontarget.method_effect(frame_of({1: [0.25, 0.3]}), "a", "b")
    assert one_seed["n"] == 1 and one_seed["low"] != one_seed["low"]  # NaN: no spread over seeds is known
    assert nontarget.decided(one_seed).word == verdicts.UNTESTABLE
    with pytest.raises(ValueError, match="'c'.*methods: \\['a', 'b'\\]"):
        nontarget.method_effect(frame_of({1: [0.1, 0.2]}), "c", "b")


TARGETS = {"f1": 62.0, "arithmetic: generated EM (%)": 70.0, "type head right on arithmetic (%)": 99.0,
           "type head right on SQuAD (%)": 97.0}


@pytest.mark.parametrize("change, majority, failed", [
    ({}, 20.0, []),
    ({"f1": 49.9}, 20.0, ["span head F1 >= 50 (49.9)"]),
    ({"arithmetic: generated EM (%)": 45.0}, 20.0, ["generative head exact match >= 50 (45.0)",
                                                    "generative head >= 30 points above the majority answer (+25.0)"]),
    ({}, 45.0, ["generative head >= 30 points above the majority answer (+25.0)"]),  # one answer for most questions
    ({"type head right on SQuAD (%)": 94.0}, 20.0, ["type head right on SQuAD >= 95% (94.0)"]),
])
def test_target_preconditions_name_each_head_that_failed_its_own_task(change, majority, failed):
    pre = nontarget.target_preconditions({**TARGETS, **change}, majority=majority)
    assert [p.name for p in pre if not p.met] == failed
    verdict = nontarget.decided({"difference": 5.0, "low": 1.0, "high": 9.0, "n": 3}, pre)
    assert verdict.word == (verdicts.UNTESTABLE if failed else verdicts.HOLDS)
    assert all(f in verdict.text for f in failed)


def test_a_span_only_model_has_only_the_span_precondition():
    assert [p.name for p in nontarget.target_preconditions({"f1": 55.0}, majority=10.0, who="control: ")] == [
        "control: span head F1 >= 50 (55.0)"]


def test_summary_preconditions_catch_degenerate_summaries():
    from mtlheads import metrics

    def failed(summaries, rouge1, lead, qa_f1=None):
        quality = {**metrics.summary_quality(summaries), "rouge1": rouge1}
        return [p.name for p in nontarget.summary_preconditions(quality, lead, qa_f1) if not p.met]

    assert failed(["We train a model.", "A new loss for parsing.", "Heads share an encoder."], 30.0, 25.0, 60.0) == []
    assert failed(["we propose a method"] * 3 + ["a method"], 30.0, 25.0) == []  # 2 of 4 distinct: 50% is enough
    assert failed(["we propose a method"] * 4 + ["a method"], 30.0, 25.0) == ["distinct summaries >= 50% (40.0)"]
    # content words: model x3 and learns (half repeat), parser x2 (half): 50%
    assert failed(["the model model model learns", "a parser parser"], 20.0, 25.0, 40.0) == [
        "QA F1 >= 50 (40.0)", "repeated words <= 10% (50.0)", "ROUGE-1 above the lead sentence's (20.0 vs 25.0)"]


def test_target_scores_read_each_head_on_its_own_task():
    from mtlheads import nontarget

    def pred(span_answer="", spans=(), generated=None, kind="span", silent=None):
        return {"span_answer": span_answer, "spans": list(spans), "generated": generated, "type": kind,
                "silent": not spans if silent is None else silent}

    # The third answer is the one span decoding adds where the most probable tags mark none.
    spans = [pred("Paris", ["Paris"]), pred(), pred("1905", ["1905"], silent=True), pred("in", ["in"], silent=True)]
    questions = [{"answers": ["Paris"]}, {"answers": ["1905"]}, {"answers": ["1905"]}, {"answers": ["1905"]}]
    control = nontarget.target_scores("span only", 1, [pred(), pred()], [{"answer": "3"}] * 2, spans, questions,
                                      [pred()], [{"answer": "7"}])
    assert control == {"model": "span only", "seed": 1, "exact_match": 50.0, "f1": 50.0, "SQuAD: no span (%)": 75.0}
    arithmetic = [pred(generated="3", kind="generation"), pred(generated="3.0", kind="span"), pred(generated="4")]
    multi = nontarget.target_scores("span + generation", 1, arithmetic, [{"answer": "3"}, {"answer": "3"},
                                                                         {"answer": "5"}],
                                    spans, questions, [pred(generated="7")], [{"answer": "7"}])
    assert multi["arithmetic: generated EM (%)"] == pytest.approx(200 / 3)  # "3.0" is the number 3
    assert multi["type head right on arithmetic (%)"] == pytest.approx(100 / 3)
    assert multi["type head right on SQuAD (%)"] == 100.0 and multi["GSM8K: generated EM (%)"] == 100.0
    assert multi["most common generated answer"] == "3" and multi["share of that answer (%)"] == pytest.approx(100 / 3)
