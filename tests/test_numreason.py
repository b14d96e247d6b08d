import itertools
import random

import pytest
import torch

from mtlheads import nontarget, numreason
from mtlheads.data import gsm8k, numeric, pairs, squad
from mtlheads.heads import BIOTaggingHead, marginal_log_likelihood

from conftest import fit_batch

O, B, I = BIOTaggingHead.O, BIOTaggingHead.B, BIOTaggingHead.I


def brute_force_marginal(logp, mask, answers):
    """Sum of the probabilities of every valid tagging, enumerated."""
    covered = {i for occurrences in answers for s, e in occurrences for i in range(s, e + 1)}
    positions = [i for i in range(len(mask)) if mask[i]]
    total = 0.0
    for tags in itertools.product((O, B, I), repeat=len(positions)):
        tag = dict(zip(positions, tags))
        if any(tag[i] != O for i in positions if i not in covered):
            continue
        valid = True
        for occurrences in answers:
            exact = [tag[s] == B and all(tag[i] == I for i in range(s + 1, e + 1)) for s, e in occurrences]
            empty = [all(tag[i] == O for i in range(s, e + 1)) for s, e in occurrences]
            valid &= all(x or y for x, y in zip(exact, empty)) and any(exact)
        if valid:
            total += float(sum(logp[i, tag[i]] for i in positions).exp())
    return total


@pytest.mark.parametrize("answers", [[[(1, 1)]], [[(1, 1), (3, 4)]], [[(1, 2)], [(4, 4), (5, 5)]], []])
def test_bio_marginal_likelihood_equals_the_sum_over_valid_taggings(answers):
    torch.manual_seed(0)
    logp = torch.randn(6, 3).log_softmax(-1)
    mask = torch.tensor([False, True, True, True, True, True])  # position 0 ([CLS]) is never tagged
    assert float(marginal_log_likelihood(logp, mask, answers).exp()) == pytest.approx(
        brute_force_marginal(logp, mask, answers), rel=1e-5)


def test_bio_decoding_reads_spans_and_never_tags_outside_the_mask():
    head = BIOTaggingHead(3)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(3) * 10)
        head.proj.bias.zero_()
    tags = [O, B, I, O, I, I, B, B, I]  # an I after an O starts a span
    states = torch.nn.functional.one_hot(torch.tensor([tags]), 3).float()
    mask = torch.ones(1, len(tags), dtype=torch.bool)
    assert head.decode(states, mask) == [[(1, 2), (4, 5), (6, 6), (7, 8)]]
    mask[0, 7] = False
    assert head.decode(states, mask) == [[(1, 2), (4, 5), (6, 6), (8, 8)]]


def brute_force_best_single_span(logp, mask):
    """The most probable tagging with exactly one span B I..., every other taggable token O, enumerated."""
    best, where = float("-inf"), None
    positions = [i for i in range(len(mask)) if mask[i]]
    for s in positions:
        for e in range(s, len(mask)):
            if not all(mask[s:e + 1]):
                break
            tags = {i: O for i in positions} | {s: B} | {i: I for i in range(s + 1, e + 1)}
            score = float(sum(logp[i, t] for i, t in tags.items()))
            if score > best:
                best, where = score, (s, e)
    return where


def test_at_least_one_decoding_adds_the_most_probable_span_only_where_argmax_tags_none():
    head = BIOTaggingHead(3)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(3))
        head.proj.bias.zero_()
    torch.manual_seed(0)
    for trial in range(40):
        # Tag scores whose argmax is O everywhere (O's logit the largest), and a mask with a gap.
        logits = torch.randn(9, 3)
        logits[:, O] = logits.max(-1).values + torch.rand(9) + 0.01
        mask = torch.ones(9, dtype=torch.bool)
        mask[[0, 5]] = False  # [CLS] and a [SEP]: no span may reach them
        assert head.decode(logits[None], mask[None]) == [[]]
        (span,) = head.decode(logits[None], mask[None], at_least_one=True)[0]
        assert span == brute_force_best_single_span(logits.log_softmax(-1), mask.tolist())
    tags = [O, B, I, O, O]  # argmax already tags a span: at_least_one changes nothing
    states = torch.nn.functional.one_hot(torch.tensor([tags]), 3).float() * 10
    mask = torch.ones(1, len(tags), dtype=torch.bool)
    assert head.decode(states, mask, at_least_one=True) == head.decode(states, mask) == [[(1, 2)]]


@pytest.fixture(scope="module")
def examples():
    from mtlheads.encoder import tiny_encoder

    tok = tiny_encoder().tokenizer
    questions = squad.load()[:40]
    spans = [e for e in (numreason.span_example(tok, q, 128) for q in questions) if e is not None][:6]
    items = [i for i in numreason.arithmetic_items(squad.load()[:400])
             if numreason.arithmetic_example(tok, i, 128, 16) is not None]  # all arguments within 128 subwords
    arithmetic = [numreason.arithmetic_example(tok, i, 128, 16) for i in items[:4]]
    return spans, arithmetic, numreason.arithmetic_items(squad.load()[:400])


def test_examples_mark_the_answer_occurrences_and_spell_answers_in_digits(examples, tiny):
    spans, arithmetic, items = examples
    tok = tiny.tokenizer
    assert len(spans) == 6 and len(arithmetic) == 4
    counts = []
    for question in squad.load()[:200]:
        example = numreason.span_example(tok, question, 128)
        if example is not None:  # every occurrence of the answer is marked, and only those
            occurrences = example["answers"][0]
            assert {tok.decode(example["input_ids"][s:e + 1]) for s, e in occurrences} == {
                tok.decode(tok(question["answers"][0], add_special_tokens=False)["input_ids"])}
            counts.append(len(occurrences))
    assert max(counts) >= 2
    target = arithmetic[0]["target"]
    assert target[0] == tok.cls_token_id and target[-1] == tok.sep_token_id
    fitting = [i for i in items if numreason.arithmetic_example(tok, i, 128, 16) is not None]
    assert "".join(tok.convert_ids_to_tokens(target[1:-1])) == fitting[0]["answer"]
    # An argument cut off by truncation: no example.
    late = next(i for i in items if i["template"] != "years between" and i["arguments"][0].start > 400)
    assert numreason.arithmetic_example(tok, late, 32, 16) is None


def test_three_heads_give_every_output_and_the_type_head_routes_the_answer(examples, tiny):
    spans, arithmetic, items = examples
    model = numreason.build(numreason.NumReasonConfig(max_answer=8), tiny)
    batch = model.collate(spans + arithmetic)
    losses = model.losses(batch)
    assert set(losses) == {"span", "generation", "answer_type"} and all(torch.isfinite(v) for v in losses.values())
    states = model.subword_states(batch["input_ids"], batch["attention_mask"])
    assert model.decoders["span"](states).shape == (*batch["input_ids"].shape, 3)
    assert model.decoders["answer_type"](states).shape == (len(spans) + len(arithmetic), 2)
    # each head's targets are its own rows: span rows for the span head, arithmetic rows for the
    # generative head, every row for the type head (labelled by its task)
    assert batch["targets"]["span"]["rows"].tolist() == list(range(len(spans)))
    assert batch["targets"]["generation"]["rows"].tolist() == list(range(len(spans), len(spans) + len(arithmetic)))
    assert batch["targets"]["answer_type"]["labels"].tolist() == [0] * len(spans) + [1] * len(arithmetic)
    model.eval()
    for choice in (0, 1):
        with torch.no_grad():
            model.decoders["answer_type"].proj.bias.copy_(torch.tensor([10.0, -10.0]) if choice == 0 else torch.tensor([-10.0, 10.0]))
        out = numreason.predict(model, items[:3], 128, progress=False)
        for p in out:
            assert p["type"] == numreason.TYPES[choice]
            assert p["answer"] == (p["span_answer"] if choice == 0 else p["generated"])
            assert p["generated"] is not None and set(p["generated"]) <= set(numreason.DIGITS)
            scores = [n["score"] for n in p["numbers"]]  # the passage's numbers, most likely tagged first
            assert scores == sorted(scores, reverse=True) and all(0.0 <= x <= 1.0 for x in scores)
            assert len({n["value"] for n in p["numbers"]}) == len(p["numbers"])  # each value once
    # At least one span: an answer everywhere; where the most probable tags mark spans, those spans.
    forced = numreason.predict(model, items[:3], 128, progress=False, at_least_one=True)
    assert all(f["spans"] and f["silent"] == p["silent"] for p, f in zip(out, forced))
    assert all(f["spans"] == p["spans"] for p, f in zip(out, forced) if not p["silent"])
    assert all(p["silent"] == (not p["spans"]) for p in out)
    control = numreason.build(numreason.NumReasonConfig(tasks=("span",)), tiny)
    assert set(control.losses(control.collate(spans))) == {"span"}
    control.eval()
    assert all(p["generated"] is None and p["type"] == "span" for p in numreason.predict(control, items[:2], 128,
                                                                                         progress=False))


def test_span_head_learns_a_memorised_batch(examples, tiny):
    spans, _, _ = examples
    torch.manual_seed(0)
    model = numreason.build(numreason.NumReasonConfig(tasks=("span",)), tiny)
    batch = model.collate(spans[:2])
    first, last = fit_batch(model, batch, "span", steps=150, lr=3e-3)
    assert last < 0.05 * first
    states = model.subword_states(batch["input_ids"], batch["attention_mask"])
    tag_mask = torch.zeros(batch["input_ids"].shape, dtype=torch.bool)
    for i, e in enumerate(spans[:2]):
        tag_mask[i, :len(e["tag_mask"])] = torch.tensor(e["tag_mask"])
    decoded = model.decoders["span"].decode(states, tag_mask)
    assert [d[0] in e["answers"][0] for d, e in zip(decoded, spans[:2])] == [True, True]


def test_arguments_match_by_value_whatever_the_spelling():
    text = "It had 1,200 men in 1805 and twelve hundred horses."
    arguments = [m for m in numeric.mentions(text) if m.text in ("1,200", "1805")]
    assert nontarget.values_in("twelve hundred") == {1200.0}
    assert nontarget.argument_scores(["1200", "in 1805", "horses"], arguments) == {
        "recall": 1.0, "precision": pytest.approx(2 / 3), "all": 1.0, "spans": 3}
    assert nontarget.argument_scores(["twelve hundred"], arguments)["recall"] == 0.5
    none = nontarget.argument_scores([], arguments)
    assert none["recall"] == 0.0 and none["all"] == 0.0 and none["precision"] != none["precision"]  # NaN
    with pytest.raises(ValueError, match="at least one gold argument"):
        nontarget.argument_scores(["1200"], [])


def test_chance_is_exact_per_question_and_all_numbers_takes_every_value():
    item = {"context": "In 1973 there were 1,200 men, 300 horses and 40 dogs; 300 of the horses were old.",
            "arguments": [m for m in numeric.mentions("1,200 men, 300 horses")]}
    assert nontarget.baseline_spans(item, "all numbers") == ["1973", "1,200", "300", "40"]
    # 2 arguments among 4 distinct values: recall 2/4, every argument 1/C(4, 2)
    assert nontarget.chance_scores(item) == {"recall": 0.5, "precision": 0.5, "all": pytest.approx(1 / 6), "spans": 2}
    rng = random.Random(0)  # the exact value is what random draws average to
    values = [m.text for m in numeric.mentions(item["context"])][:4]
    draws = [nontarget.argument_scores(rng.sample(values, 2), item["arguments"]) for _ in range(4000)]
    assert sum(d["recall"] for d in draws) / len(draws) == pytest.approx(0.5, abs=0.02)
    assert sum(d["all"] for d in draws) / len(draws) == pytest.approx(1 / 6, abs=0.02)
    with pytest.raises(ValueError, match="'random numbers'.*'all numbers'"):
        nontarget.baseline_spans(item, "random numbers")


def test_windows_hold_what_the_question_is_about_and_fit_the_input(tiny):
    tok = tiny.tokenizer
    questions = squad.load()[:600]
    items = numreason.arithmetic_items(questions)
    windowed = numreason.window_items(items, tok, 96)
    assert 0 < len(windowed) < len(items)  # some arguments lie too far apart for 96 subwords
    for item in windowed:
        assert len(pairs.encode(tok, item["question"], item["context"], 10_000).input_ids) <= 96
        assert all(item["context"][m.start:m.end] == m.text for m in item["arguments"])
        assert numreason.arithmetic_example(tok, item, 96, 16) is not None  # nothing truncated
        values = {m.value for m in numeric.mentions(item["context"])}
        assert values - {m.value for m in item["arguments"]}  # a distractor is left in the window
        full = next(i for i in items if i["question"] == item["question"] and item["context"] in i["context"])
        assert item["answer"] == full["answer"]
    spans = numreason.window_items(questions[:100], tok, 64)
    assert spans and all(s["answers"][0] in s["context"] for s in spans)
    assert all(numreason.span_example(tok, s, 64) is not None for s in spans)


def test_balanced_items_mix_the_operations_evenly():
    items = [{"operation": "sum", "i": i} for i in range(7)] + [{"operation": "difference", "i": i} for i in range(3)]
    kept = numreason.balanced(items, seed=1)
    assert [k["operation"] for k in kept].count("sum") == 3 and len(kept) == 6
    assert [k for k in kept if k["operation"] == "difference"] == items[7:]
    assert kept == [i for i in items if i in kept]  # in their order
    assert numreason.balanced([]) == []


def test_the_exposure_control_sees_the_same_inputs_with_answers_shuffled(tiny, monkeypatch):
    questions = squad.load()[:900]
    monkeypatch.setattr(numreason, "squad_parts", lambda config: (questions, []))
    common = dict(span_examples=20, max_source=128, seed=3)
    gold = numreason.training_examples(numreason.NumReasonConfig(**common), tiny.tokenizer)
    shuffled = numreason.training_examples(numreason.NumReasonConfig(arithmetic_answers="shuffled", **common),
                                           tiny.tokenizer)
    assert [e["input_ids"] for e in gold] == [e["input_ids"] for e in shuffled]
    arithmetic = [i for i, e in enumerate(gold) if e["task"] == "arithmetic"]
    assert len(arithmetic) >= 10
    targets = [gold[i]["target"] for i in arithmetic]
    moved = [shuffled[i]["target"] for i in arithmetic]
    assert sorted(map(tuple, targets)) == sorted(map(tuple, moved))  # the same answers ...
    assert sum(a != b for a, b in zip(targets, moved)) > len(targets) // 2  # ... mostly on other questions
    assert all(gold[i] == shuffled[i] for i in range(len(gold)) if i not in arithmetic)
    assert numreason.NumReasonConfig(arithmetic_answers="shuffled").label == "span + generation (shuffled answers)"
    with pytest.raises(ValueError, match="shuffled.*needs the arithmetic task"):
        numreason.NumReasonConfig(tasks=("span",), arithmetic_answers="shuffled")
    with pytest.raises(ValueError, match="'mixed'"):
        numreason.NumReasonConfig(arithmetic_answers="mixed")


def test_word_spans_widen_to_whole_numbers_without_punctuation():
    text = 'It cost 1,200, said "Smith".'
    start = text.index("1,200")
    assert pairs.word_span(text, start, start + 1) == (start, start + 5)
    quoted = text.index("Smith")
    assert text[slice(*pairs.word_span(text, quoted, quoted + 2))] == "Smith"


def test_gsm8k_items_split_off_the_question_and_keep_context_arguments():
    items = gsm8k.items(numeric.gsm8k("test")[:50])
    assert items and all(i["question"].endswith("?") or i["question"] for i in items)
    for item in items:
        assert item["arguments"] and not item["context"].endswith(item["question"])
        assert all(item["context"][m.start:m.end] == m.text for m in item["arguments"])


def test_generated_numbers_compare_by_value():
    assert nontarget.same_number("18", "18") and nontarget.same_number("18.0", "18")
    assert not nontarget.same_number("1.8", "18") and not nontarget.same_number("", "18")
    assert not nontarget.same_number("1-8", "18")


def test_unknown_tasks_are_named():
    with pytest.raises(ValueError, match=r"'arithmetic'\), not \('span', 'sum'\)"):
        numreason.NumReasonConfig(tasks=("span", "sum"))
