"""Chapter 8 (READER): the yes/no question builder, the evidence measures, and the two heads on a
tiny random-init encoder."""

import numpy as np
import pytest
import torch

from mtlheads import cache, reader
from mtlheads.data import yesno
from mtlheads.encoder import tiny_encoder

from conftest import fit_batch

PASSAGE = ("The Alpha Company was founded in 1850 by John Smith. In 1901 it moved to Boston, where "
           "Mary Jones became its first president. It closed in 1950.")


def question(text: str, answer: str, qid: str) -> dict:
    return {"id": qid, "title": "Alpha", "context": PASSAGE, "question": text, "answers": [answer],
            "answer_start": PASSAGE.index(answer)}


QUESTIONS = [question("Who founded the Alpha Company?", "John Smith", "a"),
             question("When was the Alpha Company founded?", "1850", "b"),
             question("Who was the first president of the company?", "Mary Jones", "c"),
             question("Who founded the company and where?", "John Smith", "d"),  # "and": no template
             question("What did the company do?", "moved to Boston", "e"),  # no template
             question("When did the company move?", "1901", "f"),
             question("When did the company move and why?", "1901", "g"),  # "and": no template
             question("When did the company moved?", "1901", "h"),  # a past form after "did"
             question("When did the company move after 1850?", "1901", "i")]  # names a year


def test_templates_phrase_only_what_reads_naturally():
    assert [yesno.template_of(q["question"]) for q in QUESTIONS] == ["who did", "when", "who was", None, None, "when", None, None, None]
    assert yesno.phrase("Who founded the Alpha Company?", "Ann Lee") == "Was it Ann Lee who founded the Alpha Company?"
    assert yesno.phrase("When was the Alpha Company founded?", "1901") == "Was the Alpha Company founded in 1901?"
    assert yesno.phrase("When did the company move?", "1950") == "Did the company move in 1950?"
    assert yesno.phrase("Who was the first president of the company?", "Ann Lee") == \
        "Was Ann Lee the first president of the company?"
    with pytest.raises(ValueError, match="no template phrases 'What did the company do\\?'"):
        yesno.phrase("What did the company do?", "x")


def test_pairs_hold_a_same_type_distractor_and_the_evidence_sentence():
    made = {p["id"]: p for p in yesno.pairs(QUESTIONS, seed=0)}
    assert sorted(made) == ["a", "b", "c", "f"]
    who, when, president = made["a"], made["b"], made["c"]
    assert who[yesno.YES] == "Was it John Smith who founded the Alpha Company?"
    # first choice: another who question's answer of the passage
    assert who[yesno.NO] == "Was it Mary Jones who founded the Alpha Company?"
    assert who["distractor_source"] == "another question's answer"
    assert president[yesno.NO] == "Was John Smith the first president of the company?"
    assert when["distractor"] in {"1901", "1950"} and when[yesno.NO] == f"Was the Alpha Company founded in {when['distractor']}?"
    # first choice for a when question: another when question's answer (1850, not the passage's 1950)
    assert made["f"][yesno.NO] == "Did the company move in 1850?" and made["f"][yesno.YES] == "Did the company move in 1901?"
    for p in made.values():
        start, end = p["answer_span"]
        assert PASSAGE[start:end] == p["answer"]
        assert PASSAGE[slice(*p["distractor_span"])] == p["distractor"]
        sentence = PASSAGE[slice(*p["evidence"])]
        assert p["answer"] in sentence and sentence.endswith(".")
    assert PASSAGE[slice(*who["evidence"])] == "The Alpha Company was founded in 1850 by John Smith."


def test_a_question_whose_passage_has_no_distractor_is_dropped():
    lone = {"id": "x", "title": "t", "context": "The bridge was built in 1850.", "question": "When was the bridge built?",
            "answers": ["1850"], "answer_start": 24}
    assert yesno.pairs([lone]) == []
    assert yesno.candidates("In Paris, The Beatles met Ann Lee.", "who did")[0].text == "Paris"  # "In" is no name


ITEM = {"context": "One two. Three four five six. Seven.", "evidence": (9, 29), "answer_span": (15, 19),
        "distractor_span": (30, 35), "answer": "four", yesno.YES: "Was it four?", yesno.NO: "Was it Seven?",
        "template": "who did"}


def test_the_evidence_measures_on_constructed_spans():
    on_answer = {"span": (15, 19), "text": "four", "p_yes": 0.9}
    m = reader.evidence_measures(ITEM, yesno.YES, on_answer)
    assert m == {"evidence": 1.0, "answer": 1.0, "candidate": 1.0, "other_candidate": 0.0, "correct": 1.0}
    m = reader.evidence_measures(ITEM, yesno.NO, on_answer)  # the no question names the distractor
    assert m == {"evidence": 1.0, "answer": 1.0, "candidate": 0.0, "other_candidate": 1.0, "correct": 0.0}
    on_distractor = {"span": (30, 35), "text": "Seven", "p_yes": 0.2}
    m = reader.evidence_measures(ITEM, yesno.NO, on_distractor)
    assert m == {"evidence": 0.0, "answer": 0.0, "candidate": 1.0, "other_candidate": 0.0, "correct": 1.0}
    across = {"span": (4, 14), "text": "two. Three", "p_yes": 0.5}  # middle (8.5) before the evidence sentence
    assert reader.evidence_measures(ITEM, yesno.YES, across)["evidence"] == 0.0
    free = reader.baselines(ITEM)
    assert free[yesno.YES]["random sentence"] == pytest.approx(1 / 3)
    assert free[yesno.YES]["question-overlap sentence"] == 1.0  # "four" is in the evidence sentence
    assert free[yesno.NO]["question-overlap sentence"] == 0.0  # "Seven" is not


def test_the_two_heads_train_and_read_on_a_tiny_encoder():
    encoder = tiny_encoder(num_layers=2, num_heads=4)
    config = reader.ReaderConfig(device="cpu", max_source=64)
    model = reader.build(config, encoder=encoder)
    tok = model.tokenizer
    item = reader.windowed_pair(yesno.pairs(QUESTIONS, seed=0)[0], tok, 64)
    assert item is not None and item["context"][slice(*item["answer_span"])] == item["answer"]
    examples = [reader.span_example(tok, QUESTIONS[0], 64),
                reader.yesno_example(tok, item, yesno.YES, yesno.YES, 64),
                reader.yesno_example(tok, item, yesno.NO, yesno.NO, 64)]
    batch = model.collate(examples)
    assert batch["targets"]["yesno"]["labels"].tolist() == [1, 0]  # classes (no, yes)
    losses = model.losses(batch)
    assert set(losses) == {"span", "yesno"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.decoders["yesno"].proj.weight.grad.abs().sum() > 0
    model.eval()
    read = reader.read(model, reader.questions_of([item]), 64, progress=False)
    assert len(read) == 2 and all(0.0 <= r["p_yes"] <= 1.0 for r in read)
    for r in read:
        start, end = r["span"]
        assert 0 <= start <= end <= len(item["context"]) and r["text"] == item["context"][start:end]


def test_the_yes_no_head_learns_to_tell_a_pairs_two_questions_apart():
    """Fit on the two questions of two pairs (the same window each, one word apart): the head must
    read the candidate, and can (the book's MiniLM head stays at chance at `default`: that is
    scale, not wiring)."""
    torch.manual_seed(0)
    model = reader.build(reader.ReaderConfig(device="cpu", max_source=64), encoder=tiny_encoder(num_layers=2, num_heads=4))
    tok = model.tokenizer
    items = [reader.windowed_pair(p, tok, 64) for p in yesno.pairs(QUESTIONS, seed=0)[:2]]
    examples = [reader.yesno_example(tok, item, version, version, 64) for item in items for version in reader.VERSIONS]
    batch = model.collate(examples)
    first, last = fit_batch(model, batch, "yesno", steps=100, lr=1e-3)
    assert last < 0.1 * first
    model.eval()
    read = reader.read(model, reader.questions_of(items), 64, progress=False)
    assert [r["p_yes"] > 0.5 for r in read] == [True, False, True, False]


def test_the_control_sees_the_same_inputs_with_permuted_labels():
    tok = tiny_encoder().tokenizer
    settings = dict(device="cpu", span_examples=8, yesno_examples=20, max_source=96, seed=3)
    gold = reader.training_examples(reader.ReaderConfig(**settings), tok)
    control = reader.training_examples(reader.ReaderConfig(**settings, yesno_labels="shuffled"), tok)
    assert [e["input_ids"] for e in gold] == [e["input_ids"] for e in control]
    labels = [e["label"] for e in gold if e["task"] == "yesno"]
    shuffled = [e["label"] for e in control if e["task"] == "yesno"]
    assert len(labels) == 40 and labels.count(yesno.YES) == 20  # balanced: both questions of 20 pairs
    assert sorted(labels) == sorted(shuffled) and labels != shuffled
    with pytest.raises(ValueError, match="yesno_labels"):
        reader.ReaderConfig(yesno_labels="random")


def test_two_workers_train_the_same_models_as_one_by_one_and_return_them_in_order(tmp_path, monkeypatch):
    configs = [reader.ReaderConfig(span_examples=8, yesno_examples=4, batch_size=8, max_source=96, seed=seed,
                                   device="cpu", **setting)
               for seed, setting in ((1, {}), (1, {"yesno_labels": "shuffled"}), (2, {}))]
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "parallel"))
    threads = torch.get_num_threads()
    parallel = reader.train_many(configs, workers=2)
    assert len(list((tmp_path / "parallel").iterdir())) == 3  # every model stored by its worker
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "serial"))
    torch.set_num_threads(max(1, threads // 2))  # the workers' thread count
    try:
        serial = reader.train_many(configs, workers=1)
    finally:
        torch.set_num_threads(threads)
    assert [r.config for r in parallel] == configs
    for p, s in zip(parallel, serial):
        assert p.steps == s.steps == 2 and p.examples == s.examples == {"span": 8, "yesno": 8}
        assert all(torch.equal(p.state_dict[k], s.state_dict[k]) for k in s.state_dict)
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        reader.train_many(configs, workers=0)
