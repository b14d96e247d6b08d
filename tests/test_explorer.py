"""The head explorer's data and page, and the results page's claims (tiny random-init encoders)."""

import json
import re

import numpy as np
import pytest

from mtlheads import bookrun, explorer, probes, verdicts
from mtlheads.encoder import tiny_encoder

SENTENCES = [["The", "cat", "sat", "down", "."], ["Dogs", "bark", "loudly", "at", "night", "outside", "."]]


def test_word_attention_is_one_map_per_head_over_cls_and_the_words():
    encoder = tiny_encoder(num_layers=2, num_heads=4).train()
    maps = explorer.word_attention(encoder, SENTENCES[1])
    assert maps.shape == (2, 4, 8, 8)
    rows = maps.sum(-1)
    # each word's attention over [CLS] and the words: the rest went to [SEP], so a row sums to at most 1
    assert (maps >= 0).all() and (rows <= 1 + 1e-5).all() and (rows > 0.2).all()
    assert np.array_equal(maps, explorer.word_attention(encoder, SENTENCES[1]))  # read in eval mode: no dropout
    assert encoder.training  # and the mode it had given back


def test_bytes_round_trip_within_half_a_step_and_out_of_range_values_are_named():
    values = np.linspace(0, 100, 37)
    back = explorer.unpack_bytes(explorer.pack_bytes(values, 100.0), 100.0)
    assert np.abs(back - values).max() <= 100 / 510 + 1e-9
    with pytest.raises(ValueError, match=r"\[0, 1.0\], got \[-0.5"):
        explorer.pack_bytes(np.array([-0.5, 0.5]), 1.0)


def _probe(layers=2, heads=4):
    correct = np.zeros((3, layers, heads))
    correct[0, 1, 2] = 9  # label A: head (2, 3) gets 9 of 10
    return probes.LabelProbe("pos", probes.SAME, ["A", "B", "C"], np.array([10, 30, 2]), correct)


def test_explorer_data_packs_every_model_sentence_and_head():
    encoder = tiny_encoder(num_layers=2, num_heads=4)
    models = [explorer.ExplorerModel("one", 2, encoder, {("pos", probes.SAME): _probe(), ("pos", probes.FIT): _probe()}),
              explorer.ExplorerModel("two", 6, tiny_encoder(num_layers=2, num_heads=4, seed=1))]
    gates = {"POS": np.full((2, 4), 0.5)}
    shared = np.zeros((2, 4), dtype=bool)
    shared[1, 0] = True
    data = explorer.explorer_data(models, SENTENCES, gates, shared, min_count=5)
    assert data["sentences"][0] == ["[CLS]", *SENTENCES[0]]
    first = explorer.unpack_bytes(data["models"][0]["attention"][1], 1.0).reshape(2, 4, 8, 8)
    assert np.abs(first - explorer.word_attention(encoder, SENTENCES[1])).max() <= 1 / 510 + 1e-6
    assert data["models"][1]["probes"] is None
    pos = data["models"][0]["probes"]["pos"]
    assert pos["labels"] == ["A", "B"]  # C has 2 test items, under min_count
    accuracy = explorer.unpack_bytes(pos["accuracy"], 100.0).reshape(2, 2, 4)
    assert abs(accuracy[0, 1, 2] - 90) < 0.2 and accuracy[1].max() == 0
    assert data["shared"] == [0, 0, 0, 0, 1, 0, 0, 0] and data["gates"]["POS"] == [0.5] * 8
    with pytest.raises(ValueError, match=r"'POS' must be \(layers, heads\) = \(2, 4\), got \(4, 2\)"):
        explorer.explorer_data(models, SENTENCES, {"POS": np.zeros((4, 2))}, shared, min_count=5)


def test_the_page_is_self_contained():
    data = explorer.explorer_data([explorer.ExplorerModel("one", 2, tiny_encoder())], SENTENCES[:1],
                                  {}, np.zeros((2, 4), dtype=bool), min_count=1)
    page = explorer.page_html(data)
    assert not re.search(r"""\b(src|href)\s*=""", page)  # nothing loaded from elsewhere
    assert not re.search(r"""\b(fetch\(|XMLHttpRequest|import\()""", page)
    payload = re.search(r'<script type="application/json" id="head-explorer-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(payload)["layers"] == 2 and 'mhExplorer("head-explorer")' in page


def test_a_claim_is_glued_whole_and_read_back_from_the_executed_chapter(tmp_path):
    v = verdicts.decide(1.5, 0.5, 2.5, 3, [verdicts.Precondition("learned", True), verdicts.Precondition("converged", False)])
    with pytest.raises(ValueError, match="got 'proven'"):
        bookrun.glue_claim("x", "a claim", "proven", 1.0, 0.0, 2.0)
    record = {"claim": "a claim", "word": v.word, "estimate": 1.5, "low": 0.5, "high": 2.5, "not_met": ["converged"],
              "met": ["learned"], "unit": "points"}
    output = {"output_type": "display_data", "metadata": {"scrapbook": {"name": "claim_ch2_joint", "mime_prefix": ""}},
              "data": {"text/plain": repr(record)}}
    notebook = {"cells": [{"cell_type": "markdown", "source": ["# Chapter two\n"], "metadata": {}},
                          {"cell_type": "code", "source": [], "metadata": {}, "outputs": [output]}]}
    (tmp_path / "02_x.ipynb").write_text(json.dumps(notebook))
    chapter = tmp_path / "02_x.ipynb"
    rows = bookrun.read_claims(tmp_path, [chapter])
    assert rows == [{"chapter": "02_x", "key": "ch2_joint", **record}]
    table = bookrun.claims_table(rows, {"02_x": bookrun.chapter_title(chapter)})
    assert table.loc[0, "preconditions"] == "met: learned; NOT MET: converged"
    assert table.loc[0, "95% interval"] == "[+0.50, +2.50]" and table.loc[0, "verdict"] == verdicts.UNTESTABLE
    assert '<a href="02_x.html">Chapter two</a>' in bookrun.claims_html(table)
    with pytest.raises(FileNotFoundError, match="no executed 03_y.ipynb"):
        bookrun.read_claims(tmp_path, [tmp_path / "03_y.ipynb"])


def test_show_writes_the_table_beside_the_notebook_and_links_it(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    table = pd.DataFrame({"task": ["pos", "ner"], "score": [91.5, 46.75]}).set_index("task")
    assert bookrun.show(table, "ch2_scores") is table
    assert (tmp_path / "ch2_scores.csv").read_text().splitlines() == ["task,score", "pos,91.5", "ner,46.75"]
    assert shown[0] is table and shown[1].data == "{download}`ch2_scores.csv <ch2_scores.csv>`"
    assert not list(tmp_path.glob(".*partial"))
    with pytest.raises(ValueError, match="got 'ch2/scores'"):
        bookrun.show(table, "ch2/scores")
