import numpy as np
import pandas as pd
import pytest
import torch

from mtlheads import probes
from mtlheads.tasks import TASK_CLASSES
from mtlheads.data import ewt5

# "The unbelievably tall giraffe ate ." : a tree with a word the tokenizer splits.
SENTENCE = {
    "tokens": ["The", "unbelievably", "tall", "giraffe", "ate", "."],
    "xpos": ["DT", "RB", "JJ", "NN", "VBD", "."],
    "heads": [4, 3, 4, 5, 0, 5],
    "deprels": ["det", "advmod", "amod", "nsubj", "root", "punct"],
    "ner": ["O", "O", "O", "B-PER", "O", "O"],
    "tree": "(TOP (S (NP (DT The) (ADJP (RB unbelievably) (JJ tall)) (NN giraffe)) (VP (VBD ate)) (. .)))",
    "srl": [{"predicate": 4, "roleset": "eat.01", "arguments": [{"start": 0, "end": 3, "role": "ARG0"}]}],
}


def one_hot_attention(targets: list[int], layers: int = 1, heads: int = 1) -> torch.Tensor:
    """(1, layers, heads, q, k) attention where query position q attends only to ``targets[q]``."""
    n = len(targets)
    attn = torch.zeros(1, layers, heads, n, n)
    attn[0, :, :, torch.arange(n), torch.tensor(targets)] = 1.0
    return attn


def dep_accuracy(targets: list[int]) -> float:
    most = probes.most_attended(one_hot_attention(targets))
    items = probes.gold_items(SENTENCE, "dep")
    d, p = torch.tensor([i[0] for i in items]), torch.tensor([i[1] for i in items])
    return float(probes.dep_found(most, torch.zeros(len(items), dtype=torch.long), d, p).float().mean())


def test_a_head_attending_to_the_gold_head_finds_every_arc_and_one_attending_to_itself_none():
    gold = [0] + SENTENCE["heads"]  # [CLS] attends to itself; word i to its head (0 = [CLS] = ROOT)
    assert dep_accuracy(gold) == 1.0
    assert dep_accuracy(list(range(7))) == 0.0
    # From the head's side instead: [CLS] attends to the root word; every other word to itself.
    assert dep_accuracy([5, 1, 2, 3, 4, 5, 6]) == pytest.approx(1 / 6)


def test_srl_counts_a_span_word_attending_to_the_predicate_or_the_predicate_into_the_span():
    items = probes.gold_items(SENTENCE, "srl")
    assert items == [(5, 1, 4, "ARG0")]
    p, s, e = (torch.tensor([v]) for v in items[0][:3])
    rows = torch.zeros(1, dtype=torch.long)

    def found(targets):
        return bool(probes.srl_found(probes.most_attended(one_hot_attention(targets)), rows, p, s, e))

    assert not found(list(range(7)))  # all attend to themselves
    assert found([0, 1, 2, 5, 4, 5, 6])  # "tall" (in the span) attends to "ate"
    assert found([0, 1, 2, 3, 4, 1, 6])  # "ate" attends to "The" (in the span)
    assert not found([0, 1, 2, 3, 4, 6, 6])  # "ate" attends to "." (outside)
    assert not found([5, 1, 2, 3, 4, 0, 6])  # only [CLS] <-> "ate": outside the span


def test_centroid_probe_scores_separable_vectors_perfectly_and_shuffled_ones_at_chance():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=400)
    centres = torch.eye(8)[:4] * 10
    good = centres[labels] + torch.randn(400, 8)  # head 0: label-separable
    noise = torch.randn(400, 8)  # head 1: carries nothing
    x = torch.stack([good, noise], 1)[:, None]  # (items, 1 layer, 2 heads, dim)
    correct = probes.nearest_centroid(x, torch.as_tensor(labels), x, torch.as_tensor(labels), 4)
    acc = correct.sum(0) / len(labels)
    assert acc[0, 0] == 1.0
    assert acc[0, 1] < 0.5


def test_a_label_missing_from_the_fit_data_is_never_predicted():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])[:, None, None]
    fit_y = torch.tensor([0, 0, 0])  # only label 0 seen in fitting
    correct = probes.nearest_centroid(x[:1], fit_y[:1], x, torch.tensor([0, 1, 1]), 2)
    assert correct[:, 0, 0].tolist() == [1.0, 0.0]


def test_lowest_phrases_are_the_height_three_subtrees():
    assert probes.lowest_phrases(SENTENCE["tree"]) == [(1, 2, "ADJP"), (4, 4, "VP")]


def test_read_heads_pools_split_words_and_agrees_with_a_direct_reading(tiny):
    readings = probes.read_heads(tiny, [SENTENCE, SENTENCE], progress=False)
    layer = 1
    seen = {}  # the subword context vectors entering layer 1's output projection, read independently
    dense = tiny.model.encoder.layer[layer].attention.output.dense
    handle = dense.register_forward_pre_hook(lambda module, args: seen.setdefault("ctx", args[0]))
    with torch.no_grad():
        out = tiny.encode([SENTENCE["tokens"]], capture=True)
        batch = tiny.tokenize([SENTENCE["tokens"]])
    handle.remove()
    # POS item 1 is "unbelievably", split into several subwords: its vector is their mean context.
    columns = batch.sum_pool[0, 2].nonzero().squeeze(-1)
    assert len(columns) > 1
    subword_ctx = seen["ctx"][0, columns].view(len(columns), tiny.num_heads, tiny.head_dim)
    assert torch.allclose(readings.vectors["pos"][1, layer], subword_ctx.mean(0), atol=1e-5)
    # NER item: the entity "giraffe" (word 3): the mean over its one word.
    assert torch.allclose(readings.vectors["ner"][0, layer], out.contexts[0, layer, :, 4], atol=1e-5)
    # CON item 0: ADJP "unbelievably tall": the mean of its two words' vectors.
    adjp = out.contexts[0, layer, :, 2:4].mean(1)
    assert torch.allclose(readings.vectors["con"][0, layer], adjp, atol=1e-5)
    # DEP flags: recomputed by hand from the word-level attention, per head.
    most = out.attentions[0].argmax(-1)  # (layers, heads, positions)
    for i, (d, p, _) in enumerate(probes.gold_items(SENTENCE, "dep")):
        expected = (most[..., d] == p) | (most[..., p] == d)
        assert np.array_equal(readings.found["dep"][i], expected.numpy())
    assert readings.found["dep"].shape == (12, tiny.num_layers, tiny.num_heads)  # two sentences


def test_probes_on_real_test_sentences_give_one_result_per_probe_and_valid_accuracies(tiny):
    corpus = ewt5.load()
    test, fit = list(corpus["test"].select(range(20))), list(corpus["train"].select(range(20)))
    results = probes.probe_all(probes.read_heads(tiny, test, progress=False),
                               probes.read_heads(tiny, fit, progress=False))
    expected = {("pos", "same"), ("pos", "fit"), ("ner", "same"), ("ner", "fit"), ("dep", "attention"),
                ("con", "same"), ("con", "fit"), ("srl", "attention")}
    variants = {"centroid": ("same", "fit"), "arc": ("attention",), "predicate span": ("attention",)}
    assert set(results) == {(t, v) for t in probes.PROBED_TASKS for v in variants[TASK_CLASSES[t].probe]} >= expected
    n_words = sum(len(s["tokens"]) for s in test)
    assert results[("pos", "same")].counts.sum() == n_words
    assert results[("dep", "attention")].counts.sum() == n_words
    for probe in results.values():
        acc = probe.accuracy()
        assert acc.shape == (len(probe.labels), tiny.num_layers, tiny.num_heads)
        assert (acc >= 0).all() and (acc <= 100).all()
        best = probe.best_heads()
        assert len(best) == len(probe.labels)
        assert (best["accuracy"].to_numpy() == acc.max(axis=(1, 2))).all()


def test_unknown_task_lists_the_valid_ones(tiny):
    with pytest.raises(ValueError, match="'lemma'.*pos, ner, dep, con, srl"):
        probes.read_heads(tiny, [SENTENCE], tasks=("lemma",))


def test_label_deltas_take_each_task_from_its_own_stl_model_and_pairs_containing_it():
    import pandas as pd

    from mtlheads.experiments import label_deltas
    from mtlheads.registry import MTL, PRETRAINED, RunKey

    keys = {PRETRAINED: RunKey.pretrained(), "STL POS": RunKey.stl("pos", 1), "STL NER": RunKey.stl("ner", 1),
            MTL: RunKey.mtl(1), "MTL POS+NER": RunKey.mtl(1, ("pos", "ner"))}
    rows = [("pos", "NN", PRETRAINED, 0, 50.0), ("pos", "NN", "STL POS", 1, 70.0), ("pos", "NN", "STL POS", 2, 74.0),
            ("pos", "NN", "STL NER", 1, 10.0), ("pos", "NN", MTL, 1, 60.0), ("pos", "NN", MTL, 2, 64.0),
            ("pos", "NN", "MTL POS+NER", 1, 66.0)]
    best = pd.DataFrame([{"task": t, "label": lab, "model": m, "seed": s, "key": keys[m], "accuracy": a, "count": 100,
                          "layer": 0, "head": 0} for t, lab, m, s, a in rows])
    row = label_deltas(best).iloc[0]
    assert row["STL"] == 72.0 and row["STL sd"] == pytest.approx(np.std([70, 74], ddof=1))
    assert row[f"{MTL} - STL"] == -10.0
    assert row[f"{PRETRAINED} - STL"] == -22.0
    assert row["MTL +NER - STL"] == -6.0


def noisy_probe(p_by_head: list[float], items: int = 400, seed: int = 0) -> probes.LabelProbe:
    """An attention probe of one label over ``items`` items in as many sentences, where head h
    finds each item with probability ``p_by_head[h]`` (1 layer)."""
    rng = np.random.default_rng(seed)
    found = rng.random((items, 1, len(p_by_head))) < np.array(p_by_head)[None, None, :]
    sentence_items = probes.Items(np.arange(items), np.zeros((items, 2), dtype=np.int64), ["nsubj"] * items)
    return probes.attention_probe("dep", sentence_items, found)


def test_the_held_out_head_choice_removes_the_in_sample_maximums_bias():
    """60 heads that each find half the items by chance: the best of them, chosen and scored on
    the same items, is well above 50; chosen on one half and scored on the other, it is not.
    With one head that really finds 90%, both choose it, and held-out equals in-sample nearly."""
    chance = pd.concat([noisy_probe([0.5] * 60, seed=seed).held_out_best_heads() for seed in range(60)]).mean(
        numeric_only=True)  # over 60 draws: the held-out mean's standard error is about 0.35 points
    assert chance["in-sample"] > 54 and abs(chance["held-out"] - 50) < 1.5 and chance["inflation"] > 4
    real = noisy_probe([0.5] * 59 + [0.9]).held_out_best_heads().iloc[0]
    assert real["held-out"] > 85 and abs(real["inflation"]) < 3


def test_blocks_and_halves_add_up_to_the_whole_probe_and_a_label_in_one_half_has_no_held_out_score(tiny):
    sentences = list(ewt5.load()["test"].select(range(44)))
    results = probes.probe_all(probes.read_heads(tiny, sentences, progress=False))
    for probe in results.values():
        assert probe.block_counts.shape[0] == probes.BLOCKS
        assert np.array_equal(probe.block_counts.sum(0), probe.counts)
        assert np.allclose(probe.block_correct.sum(0), probe.correct)
        assert np.array_equal(probe.half_counts.sum(0), probe.counts)
        assert np.allclose(probe.half_correct.sum(0), probe.correct)
    # sentence 21 is in block 1 (odd) and so in the odd half
    one = probes.attention_probe("dep", probes.Items(np.array([21]), np.zeros((1, 2), dtype=np.int64), ["a"]),
                                 np.ones((1, 1, 1), bool))
    assert one.block_counts[1, 0] == 1 and one.half_counts.tolist() == [[0], [1]]
    one_sided = probes.Items(np.array([0, 2, 4]), np.zeros((3, 2), dtype=np.int64), ["a", "a", "b"])
    table = probes.attention_probe("dep", one_sided, np.ones((3, 1, 2), bool)).held_out_best_heads()
    assert table["held-out"].isna().all()  # every item in the even half: nothing to score on
    with pytest.raises(ValueError, match="kept no sentence blocks"):
        probes.LabelProbe("dep", "attention", ["a"], np.array([1]), np.ones((1, 1, 1))).held_out_best_heads()


def test_positional_heads_find_arcs_to_neighbours_and_to_root_and_nothing_by_attending_to_themselves():
    probe = probes.positional_probe("dep", [SENTENCE])
    found = dict(zip(probes.POSITIONAL, probe.correct.sum(0)[0]))
    # arcs: The->giraffe, unbelievably->tall (next), tall->giraffe (next), giraffe->ate (next),
    # ate->ROOT, .->ate (previous)
    assert found == {"previous word": 4, "next word": 4, "itself": 0, "[CLS]": 1}
    srl = probes.positional_probe("srl", [SENTENCE])  # "ate" attends to "giraffe", the span's last word
    assert dict(zip(probes.POSITIONAL, srl.correct.sum(0)[0])) == {"previous word": 1, "next word": 1,
                                                                   "itself": 0, "[CLS]": 0}
    with pytest.raises(ValueError, match=r"positional baselines are for the attention probes \('dep', 'srl'\), got 'pos'"):
        probes.positional_probe("pos", [SENTENCE])


def test_the_majority_baseline_is_the_most_frequent_labels_share():
    probe = probes.LabelProbe("pos", "same", ["NN", "DT"], np.array([3, 1]), np.zeros((2, 1, 1)))
    assert probes.majority_accuracy(probe) == 75.0


def test_the_random_init_encoder_has_the_named_shape_fresh_seeded_weights_and_leaves_the_generator():
    from mtlheads import experiments
    from mtlheads.encoder import load_encoder

    trained = load_encoder("minilm")
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    first = experiments.random_init_encoder("minilm", seed=0)
    assert torch.equal(torch.rand(3), expected_next)  # torch's generator as it was
    again, other = experiments.random_init_encoder("minilm", seed=0), experiments.random_init_encoder("minilm", seed=1)
    assert (first.num_layers, first.num_heads, first.head_dim) == (trained.num_layers, trained.num_heads, trained.head_dim)
    weights = {k: v for k, v in first.model.state_dict().items() if k.endswith("query.weight")}
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in weights.items())
    assert not any(torch.equal(v, other.model.state_dict()[k]) for k, v in weights.items())
    assert not any(torch.allclose(v, trained.model.state_dict()[k]) for k, v in weights.items())


def test_the_baseline_and_held_out_tables_set_each_setting_beside_what_comes_free(tiny):
    from mtlheads import experiments
    from mtlheads.registry import RunKey

    corpus = ewt5.load()
    knobs = {"probe_test_sentences": 24}
    test = list(corpus["test"].select(range(24)))
    probed_once = probes.probe_all(probes.read_heads(tiny, test, progress=False))
    probed = {RunKey.pretrained(): probed_once, **{RunKey.stl(t, 1): probed_once for t in probes.PROBED_TASKS},
              experiments.probed_mtl(1): probed_once}
    table = experiments.baseline_table(probed, probed_once, corpus, knobs)
    assert list(table.index) == list(probes.PROBED_TASKS)
    # the same readings in every role: each setting equals the random-init column, and no one beats the best free
    for role in ("pretrained", "STL", experiments.PROBED_MTL):
        assert np.allclose(table[role], table[experiments.RANDOM_INIT]) and (table[f"{role} - best free"] <= 1e-9).all()
    dep = probes.positional_probe("dep", test)
    assert table.loc["dep", "positional"] == pytest.approx(dep.head_accuracy().max())
    assert table.loc["pos", "majority label"] == pytest.approx(probes.majority_accuracy(probed_once[("pos", "same")]))
    held = experiments.held_out_table(probed, min_count=1)
    assert set(held.index.get_level_values(0)) == set(probes.PROBED_TASKS)
    assert np.allclose(held["inflation"], held["in-sample"] - held["held-out"], equal_nan=True)


def test_a_resample_of_every_block_once_is_the_in_sample_best_and_of_one_block_that_blocks_best():
    """Labels "a" (even sentences) and "b" (odd), two heads: head 0 finds every item of sentence
    block 0, head 1 every other item; the bootstrap statistic re-chooses the best head on each
    resample."""
    n = 4 * probes.BLOCKS
    sentence = np.arange(n)  # one item per sentence
    labels = ["a", "b"] * (n // 2)
    found = np.zeros((n, 1, 2), bool)
    found[sentence % probes.BLOCKS == 0, 0, 0] = True
    found[sentence % probes.BLOCKS != 0, 0, 1] = True
    probe = probes.attention_probe("dep", probes.Items(sentence, np.zeros((n, 2), dtype=np.int64), labels), found)
    assert probe.best_accuracy().tolist() == [90.0, 100.0]  # "a": block 0 is 4 of its 40 items
    every_once = np.ones((1, probes.BLOCKS))
    assert np.allclose(probe.resampled_best(every_once)[0], probe.best_accuracy())
    only_block_0 = np.zeros((1, probes.BLOCKS))
    only_block_0[0, 0] = 3  # block 0: even sentences, "a" only, found by head 0
    out = probe.resampled_best(only_block_0)[0]
    assert out[0] == 100.0 and np.isnan(out[1])
    only_block_1 = np.zeros((1, probes.BLOCKS))
    only_block_1[0, 1] = 1
    out = probe.resampled_best(only_block_1)[0]
    assert np.isnan(out[0]) and out[1] == 100.0
    with pytest.raises(ValueError, match=r"weights must be \(resamples, 20\), got \(1, 3\)"):
        probe.resampled_best(np.ones((1, 3)))


def test_bootstrap_weights_draw_every_block_count_in_all_and_are_seeded():
    w = probes.bootstrap_weights(500, seed=3)
    assert w.shape == (500, probes.BLOCKS) and (w.sum(1) == probes.BLOCKS).all()
    assert np.array_equal(w, probes.bootstrap_weights(500, seed=3))
    assert not np.array_equal(w, probes.bootstrap_weights(500, seed=4))
    assert abs(w.mean() - 1.0) < 0.02  # each block drawn once on average
    with pytest.raises(ValueError, match="at least 2 resamples, got 1"):
        probes.bootstrap_weights(1)
