"""Each metric against a small hand-worked example."""

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score

from mtlheads.data.ewt5 import spans_from_bio
from mtlheads.tasks.con import bracket_f1, evalb_counts
from mtlheads.tasks.dep import attachment_scores
from mtlheads.tasks.ner import span_f1
from mtlheads.tasks.pos import POS
from mtlheads.tasks.srl import srl_scores


def test_pos_accuracy_by_hand():
    # 5 words, 4 right -> 80%
    assert POS(4, ["NN"]).score([["DT", "NN"], ["VB", "DT", "JJ"]], [["DT", "NN"], ["VB", "DT", "NN"]]) == {"accuracy": 80.0}


def test_span_f1_equals_seqeval():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "O"]]
    # by hand: gold 4 spans, predicted 3, correct 2 -> P 2/3, R 1/2, F1 4/7
    ours = span_f1([spans_from_bio(p) for p in pred], [spans_from_bio(g) for g in gold])
    assert ours["precision"] == pytest.approx(200 / 3)
    assert ours["recall"] == pytest.approx(50.0)
    assert ours["f1"] == pytest.approx(400 / 7)
    assert ours["f1"] == pytest.approx(100 * f1_score(gold, pred))
    assert ours["precision"] == pytest.approx(100 * precision_score(gold, pred))
    assert ours["recall"] == pytest.approx(100 * recall_score(gold, pred))


def test_attachment_scores_skip_punctuation():
    sentences = [{"upos": ["PRON", "VERB", "NOUN", "PUNCT"]}]
    gold = [([2, 0, 2, 2], ["nsubj", "root", "obj", "punct"])]
    pred = [([2, 0, 1, 3], ["nsubj", "root", "iobj", "punct"])]
    # non-punct words: 3. heads right: "She"->2, root, "it"->? gold 2 pred 1: wrong. UAS 2/3; LAS 2/3
    scores = attachment_scores(pred, gold, sentences)
    assert scores["uas"] == pytest.approx(200 / 3) and scores["las"] == pytest.approx(200 / 3)
    pred = [([2, 0, 2, 1], ["nsubj", "root", "iobj", "x"])]  # head right, label wrong on "it"; punct ignored
    scores = attachment_scores(pred, gold, sentences)
    assert scores["uas"] == 100.0 and scores["las"] == pytest.approx(200 / 3)


def test_universal_las_strips_relation_subtypes_and_full_las_does_not():
    sentences = [{"upos": ["PRON", "NOUN", "VERB", "NOUN"]}]
    gold = [([2, 3, 0, 3], ["nmod:poss", "nsubj", "root", "obl:tmod"])]
    pred = [([2, 3, 0, 3], ["nmod", "nsubj:pass", "root", "obl:npmod"])]
    scores = attachment_scores(pred, gold, sentences)
    assert scores["uas"] == 100.0
    assert scores["las"] == pytest.approx(25.0)  # only root agrees in full
    assert scores["las_universal"] == 100.0  # nmod, nsubj, root, obl: all agree once stripped
    pred = [([2, 3, 0, 3], ["amod", "nsubj", "root", "obl"])]
    assert attachment_scores(pred, gold, sentences)["las_universal"] == pytest.approx(75.0)


def test_evalb_drops_punctuation_and_top_and_equates_prt_advp():
    # "He gave up ." : (TOP (S (NP (PRP He)) (VP (VBD gave) (PRT (RP up))) (. .)))
    tags = ["PRP", "VBD", "RP", "."]
    gold = [(0, 3, "S"), (0, 0, "NP"), (1, 2, "VP"), (2, 2, "PRT"), (0, 3, "TOP")]
    pred = [(0, 2, "S"), (0, 0, "NP"), (1, 3, "VP"), (2, 2, "ADVP")]
    # without ".", S (0,3)->(0,2) equals pred S (0,2); VP (1,3)->(1,2); ADVP = PRT; TOP gone
    assert evalb_counts(gold, tags) == evalb_counts(pred, tags)
    sentence = {"tree": "(TOP (S (NP (PRP He)) (VP (VBD gave) (PRT (RP up))) (. .)))"}
    scores = bracket_f1([pred], [gold], [sentence])
    assert scores["f1"] == 100.0
    wrong = [(0, 2, "S"), (0, 1, "NP"), (1, 3, "VP")]  # 2 of 3 right; gold has 4
    scores = bracket_f1([wrong], [gold], [sentence])
    assert scores["precision"] == pytest.approx(200 / 3) and scores["recall"] == pytest.approx(50.0)


def test_srl_scores_by_hand():
    gold = [{(1, 0, 0, "ARG0"), (1, 2, 3, "ARG1"), (5, 4, 4, "ARG0")}]
    pred = [{(1, 0, 0, "ARG0"), (1, 2, 3, "ARG2"), (6, 4, 4, "ARG0")}]
    scores = srl_scores(pred, gold)
    assert scores["f1"] == pytest.approx(100 / 3)  # 1 of 3 right both ways
    # predicates: pred {1, 6}, gold {1, 5}: 1 right -> 50
    assert scores["predicate_f1"] == pytest.approx(50.0)
