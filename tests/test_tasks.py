"""Decoders: they learn a tiny slice, decode well-formed output, and their algorithms are exact."""

import itertools
import math

import numpy as np
import pytest
import torch

from mtlheads.data import ewt5
from mtlheads.encoder import tiny_encoder
from mtlheads.tasks import TASK_CLASSES, build_task, check_tasks
from mtlheads.tasks.con import cky, inside
from mtlheads.tasks.dep import eisner, eisner_charts, eisner_heads, is_tree
from mtlheads.tasks.srl import SRL, FactoredSpanLayer, candidate_spans


@pytest.fixture(scope="module")
def short_sentences():
    train = ewt5.load()["train"]
    picked = [s for s in train.select(range(3000)) if 5 <= len(s["tokens"]) <= 10 and s["srl"]
              and ewt5.spans_from_bio(s["ner"])]
    assert len(picked) >= 4
    return picked[:4]


@pytest.fixture(scope="module")
def label_source():
    return list(ewt5.load()["train"].select(range(1500)))


def memorise(task_name, sentences, label_source, steps=300, seed=0, **settings):
    """Train a tiny encoder and one decoder on one batch. The learning rate decays linearly to a
    tenth: at a constant 3e-3, Adam's late spikes (a loss of 4.3 among 0.01s) made the tail of
    the loss curve depend on the CPU's vector kernels."""
    encoder = tiny_encoder(seed=seed)
    decoder = build_task(task_name, label_source, encoder.hidden_size)
    for name, value in settings.items():
        setattr(decoder, name, value)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - 0.9 * s / steps)
    batch = encoder.tokenize([s["tokens"] for s in sentences])
    targets = decoder.targets(sentences, max(len(s["tokens"]) for s in sentences))
    losses = []
    encoder.train()
    decoder.train()
    for _ in range(steps):
        out = encoder(batch)
        loss = decoder.loss(out.words, out.word_mask, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        out = encoder(batch)
        predictions = decoder.decode(out.words, out.word_mask)
    return losses, predictions, decoder


# The paper's SRL decoder (no unary loss) teaches its pruner only through the frames it keeps:
# it needs more steps, and even then it misses an argument on some initial seeds (F1 88.9 and
# 94.7 of 100 on two of eight runs), so exact memorisation is asserted for SRL with the unary
# loss (the default profile's decoder) and most of the batch for the paper's.
MEMORISE_STEPS = {"srl": 600}
MEMORISED = {"srl": 80.0}


@pytest.mark.parametrize("task_name, settings", [(t, {}) for t in TASK_CLASSES] + [("srl", {"unary_weight": 1.0})],
                         ids=[*TASK_CLASSES, "srl-unary"])
def test_decoder_memorises_a_batch(task_name, settings, short_sentences, label_source):
    """Decoded predictions equal the gold batch, and the loss falls to a fraction of its start.

    Medians, not means: one step's spike cannot move them. Over four initial seeds and two
    kernel sets (native AVX-512 and ATEN_CPU_CAPABILITY=default) the median of the last 20
    losses was at most 0.013 of the first 10's, against the 0.25 asked."""
    plain = not settings
    steps = MEMORISE_STEPS.get(task_name, 300) if plain else 300
    losses, predictions, decoder = memorise(task_name, short_sentences, label_source, steps=steps, **settings)
    assert np.median(losses[-20:]) < 0.25 * np.median(losses[:10]), "loss does not fall"
    golds = [decoder.gold(s) for s in short_sentences]
    score = decoder.score(predictions, golds, short_sentences)
    assert score[decoder.metric] >= (MEMORISED.get(task_name, 100.0) if plain else 100.0), score


def test_srl_unary_loss_labels_gold_predicates_and_arguments_and_skips_padding():
    spans = candidate_spans(4, 2)  # (0,0) (0,1) (1,1) (1,2) (2,2) (2,3) (3,3)
    frames = [{(1, 2, 3): 1, (1, 0, 0): 2}, {(0, 1, 2): 1}]  # sentence 2 has 3 words
    gold_args = [{(2, 3), (0, 0)}, {(1, 2)}]
    a = 4.0  # logits +a on every gold item and -a elsewhere: each item's BCE is log(1 + e^-a)
    arg_scores = torch.tensor([[a if tuple(sp) in g else -a for sp in spans.tolist()] for g in gold_args])
    arg_scores[1, [5, 6]] = float("-inf")  # spans ending on sentence 2's padding
    pred_scores = torch.tensor([[-a, a, -a, -a], [a, -a, -a, float("-inf")]])
    expected = 2 * math.log1p(math.exp(-a))
    assert SRL._unary_loss(spans, arg_scores, pred_scores, frames).item() == pytest.approx(expected, rel=1e-5)
    wrong = SRL._unary_loss(spans, -arg_scores, -pred_scores, frames).item()  # every label flipped
    assert wrong == pytest.approx(2 * math.log1p(math.exp(a)), rel=1e-5)


@pytest.mark.parametrize("task_name", list(TASK_CLASSES))
def test_untrained_decoding_is_well_formed(task_name, label_source):
    sentences = label_source[:12]
    encoder = tiny_encoder(seed=3)
    decoder = build_task(task_name, label_source, encoder.hidden_size).eval()
    with torch.no_grad():
        out = encoder.encode([s["tokens"] for s in sentences])
        predictions = decoder.decode(out.words, out.word_mask)
    for sentence, pred in zip(sentences, predictions):
        n = len(sentence["tokens"])
        if task_name == "pos":
            assert len(pred) == n
        elif task_name == "ner":
            taken = [i for s, e, _ in pred for i in range(s, e + 1)]
            assert len(taken) == len(set(taken)) and all(0 <= i < n for i in taken)
        elif task_name == "dep":
            heads, rels = pred
            assert len(heads) == len(rels) == n and is_tree(heads) and heads.count(0) == 1
        elif task_name == "con":
            spans = {(s, e) for s, e, _ in pred}
            for (a, b), (c, d) in itertools.combinations(spans, 2):  # brackets nest or are disjoint
                assert b < c or d < a or (a <= c and d <= b) or (c <= a and b <= d)
        elif task_name == "srl":
            for p, s, e, _ in pred:
                assert 0 <= p < n and 0 <= s <= e < n and e - s < 30
            for p in {q[0] for q in pred}:
                taken = [i for q, s, e, _ in pred if q == p for i in range(s, e + 1)]
                assert len(taken) == len(set(taken))


def brute_force_trees(n):
    """All single-root projective dependency trees over words 1..n."""
    for heads in itertools.product(range(n + 1), repeat=n):
        if any(h == d + 1 for d, h in enumerate(heads)) or list(heads).count(0) != 1 or not is_tree(list(heads)):
            continue
        arcs = [tuple(sorted((h, d + 1))) for d, h in enumerate(heads)]
        if not any(a < c < b < d or c < a < d < b for (a, b), (c, d) in itertools.combinations(arcs, 2)):
            yield list(heads)  # no two arcs cross


@pytest.mark.parametrize("seed", range(5))
def test_eisner_finds_the_best_single_root_projective_tree(seed):
    rng = np.random.default_rng(seed)
    n = 5
    scores = rng.normal(size=(n + 1, n + 1))
    best = max(brute_force_trees(n), key=lambda hs: sum(scores[h, d + 1] for d, h in enumerate(hs)))
    assert eisner(scores) == best


def loop_eisner_charts(scores):
    """Eisner's back-pointers computed one span at a time (the book's first version), laid out
    as ``eisner_charts``'s: the reference the width-at-once charts must equal, ties included."""
    n = scores.shape[0] - 1
    complete = np.full((n + 1, n + 1, 2), -np.inf)
    incomplete = np.full((n + 1, n + 1, 2), -np.inf)
    complete_back = np.zeros((n + 1, n + 1, 2), dtype=np.int64)
    incomplete_back = np.zeros((n + 1, n + 1, 2), dtype=np.int64)
    for i in range(n + 1):
        complete[i, i] = 0.0
    for width in range(1, n + 1):
        for s in range(0, n + 1 - width):
            t = s + width
            joined = complete[s, s:t, 1] + complete[s + 1:t + 1, t, 0]
            r = int(np.argmax(joined))
            if s > 0:
                incomplete[s, t, 0], incomplete_back[s, t, 0] = joined[r] + scores[t, s], s + r
            incomplete[s, t, 1], incomplete_back[s, t, 1] = joined[r] + scores[s, t], s + r
            left = complete[s, s:t, 0] + incomplete[s:t, t, 0]
            r = int(np.argmax(left))
            complete[s, t, 0], complete_back[s, t, 0] = left[r], s + r
            right = incomplete[s, s + 1:t + 1, 1] + complete[s + 1:t + 1, t, 1]
            r = int(np.argmax(right))
            complete[s, t, 1], complete_back[s, t, 1] = right[r], s + 1 + r
            if s == 0 and t < n:
                complete[0, t, 1] = -np.inf
    return np.moveaxis(complete_back, 2, 0), np.moveaxis(incomplete_back, 2, 0)


def loop_eisner(scores):
    return eisner_heads(*loop_eisner_charts(scores))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 41])
def test_eisner_equals_the_span_by_span_algorithm_ties_included(n):
    rng = np.random.default_rng(n)
    for trial in range(20):
        if trial % 2:  # integer scores: many ties
            scores = rng.integers(-2, 3, size=(n + 1, n + 1)).astype(float)
        else:  # as the decoder builds them: log-probabilities, ROOT's column -1e9
            scores = np.full((n + 1, n + 1), -1e9)
            scores[:, 1:] = np.log(rng.dirichlet(np.ones(n + 1), size=n)).T
        charts, reference = eisner_charts(scores), loop_eisner_charts(scores)
        assert all(np.array_equal(a, b) for a, b in zip(charts, reference))
        heads = eisner(scores)
        assert is_tree(heads) and heads.count(0) == 1


def all_binary_trees(i, j):
    if j == i + 1:
        yield [(i, j)]
        return
    for k in range(i + 1, j):
        for left in all_binary_trees(i, k):
            for right in all_binary_trees(k, j):
                yield [(i, j)] + left + right


def test_inside_and_cky_match_enumeration():
    torch.manual_seed(0)
    scores = torch.randn(2, 6, 6)
    lengths = torch.tensor([5, 3])
    log_z = inside(scores, lengths)
    best = cky(scores, lengths)
    for b, n in enumerate(lengths.tolist()):
        totals = {tuple(sorted(t)): sum(scores[b, i, j].item() for i, j in t) for t in all_binary_trees(0, n)}
        assert log_z[b].item() == pytest.approx(math.log(sum(math.exp(v) for v in totals.values())), abs=1e-5)
        assert tuple(sorted(best[b])) == max(totals, key=totals.get)


def test_factored_span_layer_equals_the_concatenation_mlp_layer():
    torch.manual_seed(0)
    hidden, out, width = 8, 5, 4
    layer = FactoredSpanLayer(hidden, out, width, width_dim=3).double()
    h = torch.randn(2, 6, hidden, dtype=torch.double)
    attention = torch.randn(2, 6, dtype=torch.double)
    starts, ends = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 3, 5, 4])
    got = layer(h, attention, starts, ends)
    w_start, w_end, w_head = layer.words.weight.split(out, 0)
    b_start, b_end, b_head = layer.words.bias.split(out, 0)
    a = 15 * torch.tanh(attention / 15)
    for b in range(2):
        for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            weights = a[b, s:e + 1].softmax(0)
            head = (weights[:, None] * h[b, s:e + 1]).sum(0)
            concat = torch.cat([h[b, s], h[b, e], head])
            w = torch.cat([w_start, w_end, w_head], 1)
            expected = w @ concat + b_start + b_end + b_head + layer.width(torch.tensor(e - s))
            assert torch.allclose(got[b, k], expected, atol=1e-9)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['lemma'\]; valid tasks: pos, ner, dep, con, srl"):
        check_tasks(["pos", "lemma"])


def test_every_task_module_is_found_and_offers_what_the_book_asks(short_sentences):
    """A task is one module of ``mtlheads.tasks``: the registry finds every ``Task`` subclass
    there, in its ``order``, and each says which fields it reads, its labels, its probe items
    (shaped for its probe) and the paper's gate weight."""
    import importlib
    import pkgutil

    import mtlheads.tasks as package
    from mtlheads.tasks import TASKS
    from mtlheads.tasks.base import Task

    defined = {cls.name for module in pkgutil.iter_modules(package.__path__)
               for cls in vars(importlib.import_module(f"mtlheads.tasks.{module.name}")).values()
               if isinstance(cls, type) and issubclass(cls, Task) and cls.name}
    assert set(TASK_CLASSES) == defined and TASKS[:5] == ("pos", "ner", "dep", "con", "srl")  # the paper's five first
    assert set(TASKS) == {n for n in defined if not TASK_CLASSES[n].control} and "ctl" not in TASKS  # the control
    assert len({TASK_CLASSES[t].order for t in TASKS}) == len(TASKS)
    width = {"arc": 3, "predicate span": 4, "centroid": 3}
    for name, cls in TASK_CLASSES.items():
        assert (cls.paper_gate_lambda is None if cls.control else cls.paper_gate_lambda > 0) and cls.columns
        for s in short_sentences:
            labels = cls.labels_of({c: s[c] for c in cls.columns})  # only the columns it names
            assert labels and all(isinstance(label, str) for label in labels)
            items = cls.probe_items(s)
            assert items and all(len(item) == width[cls.probe] and item[-1] for item in items), name
            assert all(1 <= p <= len(s["tokens"]) for item in items for p in item[:-1] if name != "dep"), name


def test_blind_predictions_ignore_the_words_and_score_near_nothing(label_source):
    """The bar a model must clear to have learned its task: predictions from the number of words
    and the training labels' counts only, scored by the task's own metric."""
    test = list(ewt5.load()["test"].select(range(200)))
    for name, cls in TASK_CLASSES.items():
        task = build_task(name, label_source, 8)
        blind = task.blind(label_source, test)
        assert len(blind) == len(test)
        scrambled = [dict(s, tokens=["x"] * len(s["tokens"])) for s in test]
        assert task.blind(label_source, scrambled) == blind, name  # the words themselves are never read
        score = task.blind_score(label_source, test)
        # a control tag is the word type's, drawn from the tag distribution: its most frequent
        # one covers about as many words as the most frequent PTB tag
        assert 0.0 <= score < (30.0 if cls.control else 20.0), (name, score)
    assert build_task("ner", label_source, 8).blind_score(label_source, test) == 0.0  # no entity
    assert build_task("pos", label_source, 8).blind_score(label_source, test) > 5.0  # the most frequent tag
