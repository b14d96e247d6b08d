import math

import pandas as pd
import pytest
import torch

from mtlheads import dropout, metrics, nontarget, readersum
from mtlheads.data import scitldr, squad


def test_squad_split_keeps_every_article_on_one_side():
    questions = squad.load()
    assert len(questions) == 10570
    train, held_out = squad.split_by_article(questions, eval_share=0.3)
    assert len(train) + len(held_out) == len(questions)
    assert not {q["title"] for q in train} & {q["title"] for q in held_out}
    assert len({q["title"] for q in held_out}) == round(0.3 * 48)
    assert squad.split_by_article(questions, 0.3)[1] == held_out  # the same split every time


def test_scitldr_test_documents_have_one_or_more_summaries():
    test = scitldr.load("test")
    assert len(test) == 618 and all(d["document"] and d["summaries"] for d in test)
    with pytest.raises(ValueError, match="'validation'.*train, dev, test"):
        scitldr.load("validation")


def test_squad_measures_follow_the_official_normalisation():
    assert metrics.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert metrics.exact_match("the Eiffel tower", ["Eiffel Tower", "Paris"]) == 1.0
    assert metrics.token_f1("in Paris France", ["Paris"]) == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert metrics.squad_scores(["Denver Broncos", "a cat"], [["Denver Broncos"], ["dog"]]) == {
        "exact_match": 50.0, "f1": 50.0}


def test_answer_recall_counts_content_words_of_the_best_answer():
    assert metrics.answer_recall("prices rose in 1973", ["October 1973", "1973"]) == 1.0
    assert metrics.answer_recall("prices rose in October", ["October 1973"]) == 0.5
    assert math.isnan(metrics.answer_recall("anything", ["the", "of it"]))


def test_answer_containment_needs_whole_tokens():
    assert metrics.contains_answer("It began in October 1973, in Cairo.", ["october 1973"])
    assert not metrics.contains_answer("It was the 19733rd try.", ["1973"])
    assert not metrics.contains_answer("anything", ["the"])  # an answer that normalises to nothing


def test_rouge_l_based_query_sensitivity_is_symmetric_and_zero_for_identical_summaries():
    a, b = "the model learns heads for each task", "heads learn a model"
    assert metrics.query_sensitivity(a, a) == pytest.approx(0.0)
    assert metrics.query_sensitivity(a, b) == pytest.approx(metrics.query_sensitivity(b, a))
    assert 0.0 < metrics.query_sensitivity(a, b) < 1.0
    assert metrics.rouge("the cat sat", ["a dog ran", "the cat sat"])["rougeL"] == pytest.approx(1.0)


def test_question_overlap_counts_content_words_only():
    assert metrics.content_words("When did the oil crisis begin?") == {"oil", "crisis", "begin"}
    assert metrics.question_overlap("The oil crisis of 1973", "When did the oil crisis begin?") == pytest.approx(2 / 3)


def test_bootstrap_interval_brackets_the_mean():
    low, high = metrics.bootstrap_interval([0, 1] * 50)
    assert low < 0.5 < high and high - low < 0.3


def test_qa_examples_point_at_the_answer_subwords(tiny):
    question = squad.load()[0]
    example = readersum.qa_example(tiny.tokenizer, question, max_source=256)
    span = tiny.tokenizer.decode(example["input_ids"][example["start"]:example["end"] + 1])
    assert span == question["answers"][0].lower()
    assert all(example["context_mask"][example["start"]:example["end"] + 1])
    far = dict(question, answer_start=len(question["context"]) - len(question["answers"][0]))
    assert readersum.qa_example(tiny.tokenizer, far, max_source=24) is None  # truncated away


def test_a_mixed_batch_sends_each_example_to_its_own_head_and_loss(tiny):
    config = readersum.ReaderSumConfig(decoder_layers=1, max_summary=24)
    model = readersum.build(config, encoder=tiny)
    model.eval()
    tok = model.tokenizer
    qa = [e for e in (readersum.qa_example(tok, q, 64) for q in squad.load()[:40]) if e is not None][:3]
    assert len(qa) == 3
    docs = scitldr.load("dev")[:2]
    summ = [readersum.summ_example(tok, d["document"], d["summaries"][0], 64, 24) for d in docs]
    mixed = model.losses(model.collate([qa[0], summ[0], qa[1], summ[1], qa[2]]))
    qa_only = model.losses(model.collate(qa))
    summ_only = model.losses(model.collate(summ))
    assert set(qa_only) == {"qa"} and set(summ_only) == {"summ"}
    assert torch.allclose(mixed["qa"], qa_only["qa"], atol=1e-5)
    assert torch.allclose(mixed["summ"], summ_only["summ"], atol=1e-5)


def test_controls_must_summarise_and_unknown_tasks_are_named():
    with pytest.raises(ValueError, match="'ner'"):
        readersum.ReaderSumConfig(tasks=("summ", "ner"))
    with pytest.raises(ValueError, match="include 'summ'"):
        readersum.ReaderSumConfig(tasks=("qa",))


def test_summarize_keeps_the_order_of_mixed_inputs(tiny):
    model = readersum.build(readersum.ReaderSumConfig(decoder_layers=1, max_summary=12), encoder=tiny)
    model.eval()
    q = squad.load()[0]
    inputs = [(q["context"], None), (q["question"], q["context"]), ("another document", None)]
    mixed = readersum.summarize(model, inputs, max_source=64, max_new=5, progress=False)
    alone = [readersum.summarize(model, [x], max_source=64, max_new=5, progress=False)[0] for x in inputs]
    assert mixed == alone


def test_paired_questions_take_two_questions_with_different_answers_from_one_passage():
    held_out = squad.split_by_article(squad.load(), 0.3)[1]
    pairs = nontarget.paired_questions(held_out, contexts=30, seed=0)
    assert len(pairs) == 30 and len({p["context"] for p in pairs}) == 30
    for p in pairs:
        a, b = p["questions"]
        assert a["context"] == b["context"] == p["context"] and a["id"] != b["id"]
        x, y = (metrics.normalize_answer(q["answers"][0]) for q in (a, b))
        assert x not in y and y not in x
    assert nontarget.paired_questions(held_out, contexts=30, seed=0) == pairs
    same = [dict(held_out[0], id="x"), dict(held_out[0], id="y")]  # one answer twice: no pair
    assert nontarget.paired_questions(same, contexts=None) == []


def test_query_focus_measures_each_summary_against_its_own_and_the_other_answer(tiny, monkeypatch):
    model = readersum.build(readersum.ReaderSumConfig(decoder_layers=1, max_summary=12), encoder=tiny)
    model.eval()
    pairs = nontarget.paired_questions(squad.load()[:60], contexts=2, seed=0)
    answers = [q["answers"][0] for p in pairs for q in p["questions"]]

    def scripted(model, inputs, max_source, **kwargs):  # question inputs: their own answer; passages: nothing
        return [f"so {answers.pop(0)} it is" if b is not None else "no idea" for _, b in inputs]

    monkeypatch.setattr(readersum, "summarize", scripted)
    frame = nontarget.query_focus(model, pairs, 64, "m", progress=False)
    asked = frame[frame["input"] == "question + context"]
    alone = frame[frame["input"] == "context alone"]
    assert len(asked) == len(alone) == 4
    assert asked["contains_answer"].all() and (asked["answer_recall"] == 1.0).all()
    assert (asked["other_answer_recall"] < 1.0).all()
    assert not alone["contains_answer"].any() and alone["query_sensitivity"].isna().all()
    assert (asked["query_sensitivity"] > 0).all()
    effect = nontarget.focus_difference(frame, "contains_answer", ("m", "question + context"), ("m", "context alone"))
    assert effect["difference"] == 100.0 and effect["items"] == 2 and effect["n"] == 1  # 2 passages, 1 seed
    table = nontarget.focus_table(frame)
    assert table.query("input == 'question + context'").set_index("measure").loc[
        "contains the gold answer (%)", "mean"] == 100.0
    with pytest.raises(ValueError, match="'control'.*models \\['m'\\]"):
        nontarget.focus_difference(frame, "contains_answer", ("control", "context alone"), ("m", "context alone"))


def test_encoding_without_gradients_takes_the_fused_kernel_with_the_same_states(tiny, monkeypatch):
    model = readersum.build(readersum.ReaderSumConfig(decoder_layers=1, max_summary=12), encoder=tiny)
    model.eval()
    batch = model.collate([readersum.summ_example(model.tokenizer, d["document"], d["summaries"][0], 48, 12)
                           for d in scitldr.load("dev")[:3]])
    calls = []
    fused_kernel = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or fused_kernel(*a, **k))
    eager = model.subword_states(batch["input_ids"], batch["attention_mask"])  # gradients on: eager
    assert not calls
    with torch.no_grad():
        fused = model.subword_states(batch["input_ids"], batch["attention_mask"])
    assert len(calls) == tiny.num_layers and torch.allclose(eager, fused, atol=1e-5)
    assert model.encoder.config._attn_implementation == dropout.ATTENTION  # restored


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_profile_configs_take_every_prefixed_knob_that_names_a_field(profile):
    import dataclasses

    from mtlheads import numreason, profiles

    knobs = profiles.load(profile)
    for module, cls, prefix in ((numreason, numreason.NumReasonConfig, "numreason"),
                                (readersum, readersum.ReaderSumConfig, "readersum")):
        configs = module.profile_configs(knobs)
        assert len(configs) == 2 * len(knobs["seeds"]) and [c.seed for c in configs[::2]] == knobs["seeds"]
        assert configs[0].tasks == module.TASKS and configs[0].label != configs[1].label  # the model, then its control
        named = {k[len(prefix) + 1:] for k in knobs if k.startswith(prefix + "_")}
        fields = {f.name for f in dataclasses.fields(cls)}
        assert named & fields, prefix  # some knobs do reach the config
        for c in configs:
            assert all(getattr(c, f) == knobs[f"{prefix}_{f}"] for f in named & fields)
            assert c.encoder == knobs["encoder"] and c.device == knobs["device"]


def test_the_lead_baseline_summarises_each_document_by_its_first_sentence():
    from mtlheads import metrics
    from mtlheads.data import scitldr

    documents = scitldr.load("test")[:5]
    assert all(d["document"] == " ".join(d["sentences"]) for d in documents)
    lead = readersum.lead_rouge(documents)
    by_hand = [metrics.rouge(d["sentences"][0], d["summaries"])["rouge1"] for d in documents]
    assert lead["rouge1"] == pytest.approx(100 * sum(by_hand) / len(by_hand))
    copied = [{**d, "summaries": [d["sentences"][0]]} for d in documents]  # a gold summary that is the lead
    assert readersum.lead_rouge(copied)["rouge1"] == pytest.approx(100.0)


def test_the_exposure_control_answers_each_question_with_another_of_its_passage(tiny, monkeypatch):
    questions = squad.load()[:400]
    pairs = readersum.shuffled_answers(questions, seed=3)
    assert len(pairs) >= 0.9 * len(questions)  # most passages have questions with other answers
    assert [own for own, _ in pairs] == [q for q in questions if any(own is q for own, _ in pairs)]  # in order
    for own, s in pairs:
        assert (s["context"], s["question"]) == (own["context"], own["question"])
        assert s["context"][s["answer_start"]:].startswith(s["answers"][0])
        a, b = (metrics.normalize_answer(x) for x in (own["answers"][0], s["answers"][0]))
        assert a not in b and b not in a  # never its own answer, nor one that contains it
        assert any(o["answers"][0] == s["answers"][0] for o in questions if o["context"] == s["context"])
    assert readersum.shuffled_answers(questions, seed=3) == pairs  # seeded
    lone = [{**questions[0], "context": "A passage with a single question."}]
    assert readersum.shuffled_answers(lone, seed=0) == []

    monkeypatch.setattr(readersum, "squad_parts", lambda config: (questions, []))
    common = dict(qa_examples=30, summ_examples=10, max_source=96, max_summary=16, seed=2)
    gold = readersum.training_examples(readersum.ReaderSumConfig(**common), tiny.tokenizer)
    control = readersum.training_examples(readersum.ReaderSumConfig(qa_answers="shuffled", **common), tiny.tokenizer)
    assert sum(e["task"] == "qa" for e in control) == sum(e["task"] == "qa" for e in gold) == 30
    assert [e["input_ids"] for e in control] == [e["input_ids"] for e in gold]  # the same inputs, in order
    assert [e for e in control if e["task"] == "summ"] == [e for e in gold if e["task"] == "summ"]
    qa = [(g, c) for g, c in zip(gold, control) if g["task"] == "qa"]
    assert sum((g["start"], g["end"]) != (c["start"], c["end"]) for g, c in qa) >= 25  # other answers
    assert readersum.ReaderSumConfig(qa_answers="shuffled").label == "QA + summarisation (shuffled answers)"
    with pytest.raises(ValueError, match="shuffled.*needs the qa task"):
        readersum.ReaderSumConfig(tasks=("summ",), qa_answers="shuffled")
    with pytest.raises(ValueError, match="'other'"):
        readersum.ReaderSumConfig(qa_answers="other")


def test_extractive_baselines_take_the_summarys_length_from_the_lead_or_the_question_sentence():
    context = "The fort was built in 1820. Its walls are stone. General Reed took it in 1862 after a siege."
    assert nontarget.sentences(context) == ["The fort was built in 1820.", "Its walls are stone.",
                                            "General Reed took it in 1862 after a siege."]
    assert nontarget.question_sentence(context, "Who took the fort after a siege?") == 2
    assert nontarget.question_sentence(context, "What colour is the sky?") == 0  # no overlap: the first
    assert nontarget.extract(context, 3) == "The fort was"
    assert nontarget.extract(context, 7, 1) == "Its walls are stone. General Reed took"  # runs on
    assert nontarget.extract(context, 0, 2) == "" and nontarget.extract(context, 99, 2).endswith("siege.")


def test_query_focus_scores_same_length_baselines_beside_each_summary(tiny, monkeypatch):
    model = readersum.build(readersum.ReaderSumConfig(decoder_layers=1, max_summary=12), encoder=tiny)
    pairs = [{"context": "The fort was built in 1820. Its walls are stone. General Reed took it in 1862 after a siege.",
              "title": "t", "questions": [{"question": "Who took the fort after a siege?", "answers": ["General Reed"]},
                                          {"question": "When was the fort built?", "answers": ["1820"]}]}]
    monkeypatch.setattr(readersum, "summarize", lambda model, inputs, max_source, **kw: ["a b c d"] * len(inputs))
    frame = nontarget.query_focus(model, pairs, 64, "m", progress=False)
    first = frame[(frame["question_index"] == 0) & (frame["input"] == "question + context")].iloc[0]
    assert first["words"] == 4
    assert first["lead_answer_recall"] == 0.0  # "The fort was built": not the general
    assert first["sentence_answer_recall"] == 1.0  # "General Reed took it"
    assert first["sentence_other_answer_recall"] == 0.0
    second = frame[(frame["question_index"] == 1) & (frame["input"] == "question + context")].iloc[0]
    assert second["sentence_answer_recall"] == 0.0  # "The fort was built": the year is the fifth word
    monkeypatch.setattr(readersum, "summarize", lambda model, inputs, max_source, **kw: ["a b c d e f"] * len(inputs))
    longer = nontarget.query_focus(model, pairs, 64, "m", progress=False)
    assert longer.iloc[2]["lead_answer_recall"] == 1.0  # six words of lead reach 1820


def test_focus_difference_without_a_second_side_is_the_level_against_zero():
    rows = [{"model": "m", "input": "question + context", "seed": seed, "passage": p, "x": 0.1 * p + 0.01 * seed}
            for seed in (1, 2) for p in range(6)]
    frame = pd.DataFrame(rows)
    level = nontarget.focus_difference(frame, "x", ("m", "question + context"))
    assert level["difference"] == pytest.approx(100 * frame["x"].mean())
    assert level["low"] < level["difference"] < level["high"] and level["n"] == 2 and level["items"] == 6


def test_a_window_holds_the_answer_and_moves_its_offset(tiny):
    questions = squad.load()[:200]
    long = max(questions, key=lambda q: len(q["context"]))
    cut = readersum.windowed(long, tiny.tokenizer, 64)
    assert cut is not None and len(cut["context"]) < len(long["context"]) and cut["context"] in long["context"]
    assert cut["context"][cut["answer_start"]:].startswith(long["answers"][0])
    assert len(readersum.qa_example(tiny.tokenizer, cut, 64)["input_ids"]) <= 64
    assert readersum.windowed(long, tiny.tokenizer, 4096) == long  # fits whole: unchanged
    far = [(0, 5), (len(long["context"]) - 5, len(long["context"]))]  # both ends of a long passage
    assert readersum.windowed(long, tiny.tokenizer, 64, far) is None
    kept = readersum.window_questions(questions, tiny.tokenizer, 64)
    assert 0 < len(kept) <= len(questions)
    assert all(q["context"][q["answer_start"]:].startswith(q["answers"][0]) for q in kept)


def test_windowed_pairs_hold_both_answers_in_one_window(tiny):
    held_out = squad.split_by_article(squad.load(), 0.3)[1]
    pairs = nontarget.paired_questions(held_out, contexts=40, seed=0)
    cut = nontarget.windowed_pairs(pairs, tiny.tokenizer, 96)
    assert 0 < len(cut) < len(pairs)  # some passages' two answers lie too far apart for 96 subwords
    for p in cut:
        assert p["context"] in next(o["context"] for o in pairs if o["title"] == p["title"] and p["context"] in o["context"])
        for q in p["questions"]:
            assert q["context"] == p["context"] and p["context"][q["answer_start"]:].startswith(q["answers"][0])
            assert len(pairs_encode(tiny.tokenizer, q["question"], p["context"])) <= 96


def pairs_encode(tokenizer, first, second):
    from mtlheads.data import pairs

    return pairs.encode(tokenizer, first, second, 100_000).input_ids
