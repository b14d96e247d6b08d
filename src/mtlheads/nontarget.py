"""What a head says where it is not the target (Geva et al., 2021), and the tests of it.

Chapter 6: on arithmetic questions, the span head of the multi-head model is not the target (the
generative head answers); ``argument_frame`` scores its spans, and its most likely tagged
numbers, as extractions of the computation's arguments, beside chance and the all-numbers
baseline; ``counterfactual_frame`` asks whether its spans move with the generated answer under
edited questions. Chapter 7: the summariser of the QA + summarisation model reads
``question [SEP] context`` inputs it never saw in training; ``query_focus`` scores whether its
summaries answer this question rather than the passage's other one.

``seed_item_effect`` gives a paired difference with its 95% interval over both seeds and test
items (``verdicts.seed_and_sentence_interval``); ``target_preconditions`` and
``summary_preconditions`` say whether the target heads learnt their own tasks, which every
reading of a non-target head presupposes; ``verdicts.decide`` turns the two into the verdict.
"""

from __future__ import annotations

import collections
import itertools
import math
import random
import re

import numpy as np
import pandas as pd

from mtlheads import metrics, numreason, readersum, verdicts
from mtlheads.data import numeric
from mtlheads.model import MultiTaskModel


def seed_item_effect(first: pd.Series, second: pd.Series, resamples: int = 2000, seed: int = 0) -> dict:
    """The mean of ``first - second`` (Series indexed by (seed, item), in the same units), with its
    95% interval over seeds and items: each seed's mean paired difference over the items, and
    ``resamples`` bootstrap resamples of the items, the same for every seed
    (``verdicts.seed_and_sentence_interval``). Keys: ``difference``, ``low``, ``high``, ``n``
    (seeds), ``items``, ``sd`` (over seeds) and ``item se``. Pairs with a missing side are dropped."""
    difference = (first - second).dropna()
    if difference.index.nlevels != 2:
        raise ValueError(f"seed_item_effect needs a (seed, item) index, got {difference.index.nlevels} level(s)")
    table = difference.unstack(level=1)  # seeds x items, NaN where a seed lacks an item
    if table.shape[1] < 2:
        raise ValueError(f"seed_item_effect needs at least 2 paired items, got {table.shape[1]}")
    values = table.to_numpy(dtype=float)
    drawn = np.random.default_rng(seed).integers(0, values.shape[1], size=(resamples, values.shape[1]))
    with np.errstate(all="ignore"):
        per_resample = np.nanmean(np.nanmean(values[:, drawn], axis=2), axis=0)
    interval = verdicts.seed_and_sentence_interval(np.nanmean(values, axis=1), per_resample)
    return {"difference": interval["mean"], "low": interval["low"], "high": interval["high"], "n": interval["n"],
            "items": values.shape[1], "sd": interval["sd"], "item se": interval["sentence se"]}


def decided(effect: dict, preconditions=()) -> verdicts.Verdict:
    """``verdicts.decide`` on an effect of ``seed_item_effect``."""
    return verdicts.decide(effect["difference"], effect["low"], effect["high"], effect["n"], list(preconditions))


# What each target head must reach before its non-target heads are read (issue 21).
SPAN_F1, GENERATED_EM, ABOVE_MAJORITY, TYPE_RIGHT, QA_F1 = 50.0, 50.0, 30.0, 95.0, 50.0


def target_preconditions(scores: dict, majority: float, who: str = "") -> list[verdicts.Precondition]:
    """Whether a chapter-6 model's target heads learnt their own tasks, from its ``target_scores``
    (means over seeds): the span head's F1 on held-out SQuAD questions at least ``SPAN_F1``; with a
    generative head, its exact match on the held-out arithmetic questions at least
    ``GENERATED_EM`` and ``ABOVE_MAJORITY`` points above ``majority`` (the share of the most
    common gold answer), and the type head right on at least ``TYPE_RIGHT``% of each kind of
    question. Each precondition is named with the value it was decided on."""
    pre = [verdicts.Precondition(f"{who}span head F1 >= {SPAN_F1:g} ({scores['f1']:.1f})", scores["f1"] >= SPAN_F1)]
    if "arithmetic: generated EM (%)" not in scores:
        return pre
    em = scores["arithmetic: generated EM (%)"]
    pre += [verdicts.Precondition(f"{who}generative head exact match >= {GENERATED_EM:g} ({em:.1f})", em >= GENERATED_EM),
            verdicts.Precondition(f"{who}generative head >= {ABOVE_MAJORITY:g} points above the majority answer "
                                  f"({em - majority:+.1f})", em - majority >= ABOVE_MAJORITY)]
    for kind in ("arithmetic", "SQuAD"):
        right = scores[f"type head right on {kind} (%)"]
        pre.append(verdicts.Precondition(f"{who}type head right on {kind} >= {TYPE_RIGHT:g}% ({right:.1f})",
                                         right >= TYPE_RIGHT))
    return pre


# A summariser is degenerate when it writes the same few summaries, repeats itself, or does no
# better than copying the document's first sentence.
DISTINCT_SUMMARIES, REPEATED_WORDS = 50.0, 10.0


def summary_preconditions(quality: dict, lead_rouge: float, qa_f1: float | None = None,
                          who: str = "") -> list[verdicts.Precondition]:
    """Whether a chapter-7 model's target heads work: the QA head's F1 at least ``QA_F1`` on held-out
    SQuAD questions (where given), and its summaries not degenerate: at least
    ``DISTINCT_SUMMARIES``% distinct summaries, at most ``REPEATED_WORDS``% repeated content
    words (``metrics.summary_quality``, in ``quality`` with ``rouge1``) and ROUGE-1 above
    ``lead_rouge``, the first sentence of each document's."""
    pre = [] if qa_f1 is None else [verdicts.Precondition(f"{who}QA F1 >= {QA_F1:g} ({qa_f1:.1f})", qa_f1 >= QA_F1)]
    distinct, repeated, rouge1 = quality["distinct (%)"], quality["repeated words (%)"], quality["rouge1"]
    return pre + [
        verdicts.Precondition(f"{who}distinct summaries >= {DISTINCT_SUMMARIES:g}% ({distinct:.1f})",
                              distinct >= DISTINCT_SUMMARIES),
        verdicts.Precondition(f"{who}repeated words <= {REPEATED_WORDS:g}% ({repeated:.1f})",
                              repeated <= REPEATED_WORDS),
        verdicts.Precondition(f"{who}ROUGE-1 above the lead sentence's ({rouge1:.1f} vs {lead_rouge:.1f})",
                              rouge1 > lead_rouge)]


# Chapter 6: arguments among the non-target spans --------------------------------------------

def values_in(text: str) -> set[float]:
    """The numbers a text mentions (``numeric.mentions``), by value."""
    values = {m.value for m in numeric.mentions(text)}
    whole = numeric.parse_number(text)
    return values | ({whole} if whole is not None else set())


def argument_scores(span_texts: list[str], arguments: list[numeric.Mention]) -> dict:
    """How well spans pick out gold ``arguments``, matched by value (so "1,200" and "twelve
    hundred" are the same argument): ``recall`` (share of the distinct argument values found
    among the spans), ``precision`` (share of spans that name an argument; NaN with no spans),
    ``all`` (every argument found) and ``spans`` (how many)."""
    gold = {m.value for m in arguments}
    if not gold:
        raise ValueError("argument_scores needs at least one gold argument")
    found = [values_in(t) for t in span_texts]
    recalled = gold & set().union(*found) if found else set()
    precision = float(np.mean([bool(v & gold) for v in found])) if found else float("nan")
    return {"recall": len(recalled) / len(gold), "precision": precision, "all": float(recalled == gold),
            "spans": len(span_texts)}


def baseline_spans(item: dict, method: str) -> list[str]:
    """Spans of the ``"all numbers"`` baseline on ``item``: every distinct number of its passage."""
    if method != "all numbers":
        raise ValueError(f"unknown baseline {method!r}; valid: 'all numbers' ({BASELINES[0]!r} is computed, "
                         f"chance_scores)")
    return list({m.value: m.text for m in numeric.mentions(item["context"])}.values())


def chance_scores(item: dict) -> dict:
    """The expected ``argument_scores`` of as many distinct passage numbers as ``item`` has
    arguments (k of its passage's n distinct numbers), drawn uniformly: recall k/n, precision
    (each drawn number an argument) k/n, every argument found 1/C(n, k). Exact, per question."""
    n = len({m.value for m in numeric.mentions(item["context"])})
    k = len({m.value for m in item["arguments"]})
    if not 0 < k <= n:
        raise ValueError(f"chance needs 1 <= arguments <= passage numbers, got {k} of {n}")
    return {"recall": k / n, "precision": k / n, "all": 1 / math.comb(n, k), "spans": k}


BASELINES = ("chance", "all numbers")


def argument_frame(predictions: dict[str, list[dict]], items: list[dict]) -> pd.DataFrame:
    """One row per (method, question): the argument scores of each model's spans and of its top
    numbers (the passage numbers its span head most likely tags, as many as the question has
    arguments), for ``predictions`` (label -> ``predict`` output for ``items``), and of the
    baselines (chance, exact; all numbers)."""
    rows = []
    for label, predicted in predictions.items():
        for i, (item, p) in enumerate(zip(items, predicted)):
            k = len({m.value for m in item["arguments"]})
            for method, texts in ((f"{label}: spans", [s["text"] for s in p["spans"]]),
                                  (f"{label}: top numbers", [n["text"] for n in p["numbers"][:k]])):
                rows.append({"method": method, "question": i, "operation": item["operation"],
                             "template": item.get("template", item["operation"]),
                             **argument_scores(texts, item["arguments"])})
    for i, item in enumerate(items):
        for method, scores in (("chance", chance_scores(item)),
                               ("all numbers", argument_scores(baseline_spans(item, "all numbers"), item["arguments"]))):
            rows.append({"method": method, "question": i, "operation": item["operation"],
                         "template": item.get("template", item["operation"]), **scores})
    return pd.DataFrame(rows)


ARGUMENT_MEASURES = {"recall": "argument recall (%)", "precision": "span precision (%)",
                     "all": "every argument extracted (%)"}


def argument_table(frame: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Mean and 95% bootstrap interval of each measure, per method (and per ``by`` group)."""
    return metrics.interval_table(frame, ["method"] + ([by] if by else []), ARGUMENT_MEASURES)


def same_number(prediction: str | None, answer: str) -> bool:
    """Whether a generated number equals the gold answer's value."""
    if not prediction:
        return False
    try:
        return float(prediction) == float(answer)
    except ValueError:
        return False


def target_scores(label: str, seed: int, arithmetic: list[dict], items: list[dict], spans: list[dict],
                  span_questions: list[dict], gsm: list[dict], gsm_items: list[dict]) -> dict:
    """One chapter-6 model's target heads on their own tasks, what every non-target reading
    presupposes: the span head's SQuAD exact match and F1 and its share of questions whose most
    probable tags mark no span (``spans``: its predictions on ``span_questions``, ``silent``);
    with a generative head, its exact match on the arithmetic ``items`` and GSM8K, the type
    head's share routed right on both kinds, and the most common generated answer with its share
    (a head that writes one number for everything has not learnt to compute)."""
    row = {"model": label, "seed": seed,
           **metrics.squad_scores([p["span_answer"] for p in spans], [q["answers"] for q in span_questions]),
           "SQuAD: no span (%)": 100 * np.mean([p["silent"] for p in spans])}
    if all(p["generated"] is None for p in arithmetic):
        return row  # the span-only control
    generated = collections.Counter(p["generated"] for p in arithmetic).most_common(1)[0]
    return row | {
        "arithmetic: generated EM (%)": 100 * np.mean([same_number(p["generated"], i["answer"])
                                                      for p, i in zip(arithmetic, items)]),
        "type head right on arithmetic (%)": 100 * np.mean([p["type"] == "generation" for p in arithmetic]),
        "type head right on SQuAD (%)": 100 * np.mean([p["type"] == "span" for p in spans]),
        "GSM8K: generated EM (%)": 100 * np.mean([same_number(p["generated"], i["answer"])
                                                 for p, i in zip(gsm, gsm_items)]),
        "most common generated answer": generated[0],
        "share of that answer (%)": 100 * generated[1] / len(arithmetic)}


def counterfactual_frame(model: MultiTaskModel, items: list[dict], max_source: int, progress: bool = True) -> pd.DataFrame:
    """For each item with a counterfactual (``numeric.counterfactuals``), whether the span head's
    number set and the generated answer change between the original and the edited question,
    and (for an argument swap) whether the spans take up the new argument."""
    pairs = [(item, kind, edited) for item in items for kind, edited in numeric.counterfactuals(item["generated"], item["context"],
                                                                                         item.get("asked", ()))]
    if not pairs:
        return pd.DataFrame(columns=["kind", "spans_moved", "answer_moved", "together", "follows", "correct"])
    originals = numreason.predict(model, [p[0] for p in pairs], max_source, progress=progress, desc="originals")
    edits = numreason.predict(model, [numreason.question_item(p[2], p[0]["context"]) for p in pairs], max_source, progress=progress,
                    desc="counterfactuals")
    rows = []
    for (item, kind, edited), before, after in zip(pairs, originals, edits):
        numbers_before = set().union(*[values_in(s["text"]) for s in before["spans"]])
        numbers_after = set().union(*[values_in(s["text"]) for s in after["spans"]])
        spans_moved = numbers_before != numbers_after
        answer_moved = before["generated"] != after["generated"]
        new = {m.value for m in edited.arguments} - {m.value for m in item["arguments"]}
        rows.append({"kind": kind, "spans_moved": spans_moved, "answer_moved": answer_moved,
                     "together": spans_moved == answer_moved,
                     "follows": (new <= numbers_after) if new else float("nan"),
                     "correct": same_number(after["generated"], edited.answer_text)})
    return pd.DataFrame(rows)


def highlighted(item: dict, prediction: dict) -> str:
    """HTML of an item's question and passage with the span head's spans marked and the gold
    arguments underlined."""
    import html

    def mark(text: str, part: str, underline: list[tuple[int, int]]) -> str:
        marks = sorted((s["start"], s["end"]) for s in prediction["spans"] if s["part"] == part)
        edges = sorted({0, len(text), *[x for span in marks + underline for x in span]})
        out = []
        for a, b in zip(edges, edges[1:]):
            piece = html.escape(text[a:b])
            if any(s <= a and b <= e for s, e in underline):
                piece = f"<u>{piece}</u>"
            if any(s <= a and b <= e for s, e in marks):
                piece = f"<mark>{piece}</mark>"
            out.append(piece)
        return "".join(out)

    arguments = [(m.start, m.end) for m in item["arguments"]]
    return (f"<p><b>Q:</b> {mark(item['question'], 'question', [])} <b>gold:</b> {html.escape(item['answer'])} "
            f"<b>generated:</b> {html.escape(str(prediction['generated']))} "
            f"<b>type head:</b> {prediction['type']}<br>{mark(item['context'], 'context', arguments)}</p>")

def argument_frames(predictions: dict, labels: tuple[str, ...], seeds: list[int], dataset: str,
                    items: list[dict]) -> pd.DataFrame:
    """``argument_frame`` for every seed, with a ``seed`` column; ``predictions`` is keyed
    (label, seed, dataset)."""
    out = []
    for seed in seeds:
        frame = argument_frame({label: predictions[(label, seed, dataset)] for label in labels}, items)
        frame["seed"] = seed
        out.append(frame)
    return pd.concat(out, ignore_index=True)


def method_effect(frame: pd.DataFrame, first: str, second: str, measure: str = "recall") -> dict:
    """``seed_item_effect`` of ``measure`` (in percent) for method ``first`` minus ``second`` over an
    ``argument_frames`` frame: paired by question within each seed, the same questions resampled
    for every seed."""
    def values(method: str) -> pd.Series:
        part = frame[frame["method"] == method]
        if part.empty:
            raise ValueError(f"no rows for method {method!r}; methods: {sorted(frame['method'].unique())}")
        return 100 * part.set_index(["seed", "question"])[measure].astype(float)

    return seed_item_effect(values(first), values(second))


# Chapter 7: query focus of the non-target summariser --------------------------------------------

INPUTS = ("question + context", "context alone")


def paired_questions(questions: list[dict], contexts: int | None, seed: int = 0) -> list[dict]:
    """Up to ``contexts`` passages (None: all), each with two of its questions whose answers differ
    (neither normalised answer contains the other), chosen at random with ``seed``:
    ``{"context", "title", "questions": [q1, q2]}``."""
    by_context: dict[str, list[dict]] = collections.defaultdict(list)
    for q in questions:
        by_context[q["context"]].append(q)
    rng = random.Random(seed)
    out = []
    for context in sorted(by_context):
        candidates = by_context[context][:]
        rng.shuffle(candidates)
        pair = next(((a, b) for a, b in itertools.combinations(candidates, 2) if _distinct_answers(a, b)), None)
        if pair is not None:
            out.append({"context": context, "title": pair[0]["title"], "questions": list(pair)})
    rng.shuffle(out)
    return out[:contexts]


def windowed_pairs(pairs: list[dict], tokenizer, max_source: int) -> list[dict]:
    """Each passage of ``paired_questions`` cut to one window that holds both its questions'
    answers, with room for the longer question (``readersum.windowed``), the answers' offsets moved
    with it; passages whose answers do not fit one window are left out."""
    out = []
    for p in pairs:
        first, second = p["questions"]
        longer = max(p["questions"], key=lambda q: len(tokenizer(q["question"], add_special_tokens=False)["input_ids"]))
        cut = readersum.windowed(longer, tokenizer, max_source,
                                 [readersum.answer_span(first), readersum.answer_span(second)])
        if cut is None:
            continue
        questions = [readersum.moved_into(q, longer, cut) for q in (first, second)]
        out.append({**p, "context": cut["context"], "questions": questions})
    return out


def _distinct_answers(a: dict, b: dict) -> bool:
    x, y = (metrics.normalize_answer(q["answers"][0]) for q in (a, b))
    return bool(x) and bool(y) and x not in y and y not in x


def sentences(text: str) -> list[str]:
    """``text`` split after each ., ! or ? that ends a word before white space."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def question_sentence(context: str, question: str) -> int:
    """Index of the sentence of ``context`` that holds most of ``question``'s content words (the
    first such sentence on a tie)."""
    wanted = metrics.content_words(question)
    overlaps = [len(wanted & metrics.content_words(s)) for s in sentences(context)]
    return int(np.argmax(overlaps)) if overlaps else 0


def extract(context: str, words: int, start_sentence: int = 0) -> str:
    """The first ``words`` words of ``context`` from its sentence ``start_sentence`` on (running into
    the next sentences where that one is shorter): an extractive baseline of a given length."""
    return " ".join(" ".join(sentences(context)[start_sentence:]).split()[:max(words, 0)])


def query_focus(model: MultiTaskModel, pairs: list[dict], max_source: int, label: str, progress: bool = True,
                **generation) -> pd.DataFrame:
    """One row per (passage, question, input) for ``pairs`` from ``paired_questions``: the
    summary of ``question [SEP] context`` and of the context alone, whether it contains the
    question's gold answer, the share of the answer's content words it contains (and of the other
    question's answer), its overlap with the question's content words, its length in words, and
    (on question inputs) its query sensitivity: 1 - ROUGE-L between the summaries of the
    passage's two questions. Two extractive baselines of the summary's own length, in words, are
    scored the same way (answer recall, and the other answer's): the passage's lead, and the text
    from the sentence that shares most content words with the question (``question_sentence``),
    so that a longer summary's recall can be told from a better one's."""
    inputs = [(q["question"], p["context"]) for p in pairs for q in p["questions"]] + [(p["context"], None) for p in pairs]
    summaries = readersum.summarize(model, inputs, max_source, progress=progress, desc=f"summaries ({label})", **generation)
    asked, alone = summaries[:2 * len(pairs)], summaries[2 * len(pairs):]
    rows = []
    for i, p in enumerate(pairs):
        mine = asked[2 * i:2 * i + 2]
        sensitivity = metrics.query_sensitivity(*mine)
        for j, q in enumerate(p["questions"]):
            other = p["questions"][1 - j]
            start = question_sentence(p["context"], q["question"])
            for kind, summary, varies in ((INPUTS[0], mine[j], sensitivity), (INPUTS[1], alone[i], float("nan"))):
                words = len(summary.split())
                lead, sentence = extract(p["context"], words), extract(p["context"], words, start)
                rows.append({"model": label, "passage": i, "question_index": j, "input": kind,
                             "question": q["question"], "answer": q["answers"][0], "summary": summary,
                             "contains_answer": metrics.contains_answer(summary, q["answers"]),
                             "answer_recall": metrics.answer_recall(summary, q["answers"]),
                             "other_answer_recall": metrics.answer_recall(summary, other["answers"]),
                             "question_overlap": metrics.question_overlap(summary, q["question"]),
                             "words": words, "query_sensitivity": varies,
                             "lead_answer_recall": metrics.answer_recall(lead, q["answers"]),
                             "lead_other_answer_recall": metrics.answer_recall(lead, other["answers"]),
                             "sentence_answer_recall": metrics.answer_recall(sentence, q["answers"]),
                             "sentence_other_answer_recall": metrics.answer_recall(sentence, other["answers"])})
    return pd.DataFrame(rows)


FOCUS_MEASURES = {"contains_answer": "contains the gold answer (%)",
                  "answer_recall": "answer words recalled (%)",
                  "other_answer_recall": "other question's answer words recalled (%)",
                  "question_overlap": "question content words in the summary (%)",
                  "query_sensitivity": "query sensitivity, 1 - ROUGE-L (%)",
                  "words": "length (words)",
                  "lead_answer_recall": "same-length lead: answer words recalled (%)",
                  "sentence_answer_recall": "same-length question sentence: answer words recalled (%)"}


def focus_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% bootstrap interval (over questions) of each measure, per model and input."""
    table = metrics.interval_table(frame, ["model", "input"], FOCUS_MEASURES, scales={"words": 1.0})
    return table.drop(columns="n", errors="ignore")


def focus_difference(frame: pd.DataFrame, measure: str, first: tuple[str, str],
                     second: tuple[str, str] | None = None) -> dict:
    """Mean of ``measure`` under ``first`` minus under ``second`` ((model, input) each; None: its level
    against zero), in percent, paired by passage (its two questions averaged) within each seed, with
    its 95% interval over seeds and passages (``seed_item_effect``; a frame without a ``seed``
    column is one seed)."""
    frame = frame if "seed" in frame else frame.assign(seed=0)

    def values(model: str, kind: str) -> pd.Series:
        part = frame[(frame["model"] == model) & (frame["input"] == kind)]
        if part.empty:
            raise ValueError(f"no rows for model {model!r} and input {kind!r}: models "
                             f"{sorted(frame['model'].unique())}, inputs {list(INPUTS)}")
        return 100 * part.groupby(["seed", "passage"])[measure].mean().astype(float)

    mine = values(*first)
    return seed_item_effect(mine, values(*second) if second is not None else 0 * mine)
