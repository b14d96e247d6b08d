"""What a head says where it is not the target (Geva et al., 2021), and the verdicts on it.

Chapter 6: on arithmetic questions, the span head of the multi-head model is not the target (the
generative head answers); ``argument_frame`` scores its spans, and its most likely tagged
numbers, as extractions of the computation's arguments, beside baselines; ``counterfactual_frame``
asks whether its spans move with the generated answer under edited questions. Chapter 7: the
summariser of the QA + summarisation model reads ``question [SEP] context`` inputs it never saw
in training; ``query_focus`` scores whether its summaries answer this question rather than the
passage's other one. ``paired_gap`` and ``focus_difference`` give paired differences with their
95% bootstrap intervals, and ``verdict`` turns an interval into the chapters' words.
"""

from __future__ import annotations

import collections
import itertools
import random

import numpy as np
import pandas as pd

from mtlheads import metrics, numreason, readersum
from mtlheads.data import numeric
from mtlheads.model import MultiTaskModel

VERDICTS = ("holds", "is reversed", "is not shown")


def verdict(effect: dict) -> str:
    """The claim that ``effect`` (a paired difference: ``low``, ``high``, its 95% interval) is
    positive: ``holds`` when the interval lies above zero, ``is reversed`` when below, ``is not
    shown`` when it contains zero. One rule for every chapter."""
    if not effect["low"] <= effect["high"]:
        raise ValueError(f"an interval needs low <= high, got {effect['low']!r} and {effect['high']!r}")
    if effect["low"] > 0:
        return VERDICTS[0]
    return VERDICTS[1] if effect["high"] < 0 else VERDICTS[2]


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


def baseline_spans(item: dict, method: str, rng: random.Random) -> list[str]:
    """Spans of a baseline on ``item``: ``"all numbers"`` of the passage, or ``"random numbers"``,
    as many distinct passage numbers as the question has arguments, drawn at random."""
    found = list({m.value: m.text for m in numeric.mentions(item["context"])}.values())
    if method == "all numbers":
        return found
    if method == "random numbers":
        k = len({m.value for m in item["arguments"]})
        return rng.sample(found, min(k, len(found)))
    raise ValueError(f"unknown baseline {method!r}; valid: {BASELINES}")


BASELINES = ("random numbers", "all numbers")


def argument_frame(predictions: dict[str, list[dict]], items: list[dict], seed: int = 0) -> pd.DataFrame:
    """One row per (method, question): the argument scores of each model's spans and of its top
    numbers (the passage numbers its span head most likely tags, as many as the question has
    arguments), for ``predictions`` (label -> ``predict`` output for ``items``), and of the
    baselines."""
    rows = []
    for label, predicted in predictions.items():
        for i, (item, p) in enumerate(zip(items, predicted)):
            k = len({m.value for m in item["arguments"]})
            for method, texts in ((f"{label}: spans", [s["text"] for s in p["spans"]]),
                                  (f"{label}: top numbers", [n["text"] for n in p["numbers"][:k]])):
                rows.append({"method": method, "question": i, "operation": item["operation"],
                             "template": item.get("template", item["operation"]),
                             **argument_scores(texts, item["arguments"])})
    rng = random.Random(seed)
    for method in BASELINES:
        for i, item in enumerate(items):
            rows.append({"method": method, "question": i, "operation": item["operation"],
                         "template": item.get("template", item["operation"]),
                         **argument_scores(baseline_spans(item, method, rng), item["arguments"])})
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
    presupposes: the span head's SQuAD exact match and F1 and its share of questions with no
    span (``spans``: its predictions on ``span_questions``); with a generative head, its exact
    match on the arithmetic ``items`` and GSM8K, the type head's share routed right on both
    kinds, and the most common generated answer with its share (a head that writes one number
    for everything has not learnt to compute)."""
    row = {"model": label, "seed": seed,
           **metrics.squad_scores([p["span_answer"] for p in spans], [q["answers"] for q in span_questions]),
           "SQuAD: no span (%)": 100 * np.mean([not p["spans"] for p in spans])}
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
    pairs = [(item, kind, edited) for item in items for kind, edited in numeric.counterfactuals(item["generated"], item["context"])]
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


def paired_gap(frame: pd.DataFrame, measure: str, first: str, second: str) -> dict:
    """Mean of ``measure`` for method ``first`` minus method ``second``, paired by question, in
    percent, with its 95% bootstrap interval."""
    def values(method: str) -> pd.Series:
        part = frame[frame["method"] == method]
        if part.empty:
            raise ValueError(f"no rows for method {method!r}; methods: {sorted(frame['method'].unique())}")
        return part.set_index("question")[measure].astype(float)

    return metrics.paired_difference(100 * values(first), 100 * values(second))


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
        frame = argument_frame({label: predictions[(label, seed, dataset)] for label in labels}, items, seed=seed)
        frame["seed"] = seed
        out.append(frame)
    return pd.concat(out, ignore_index=True)


def seed_paired_gap(frame: pd.DataFrame, first: str, second: str, measure: str = "recall") -> dict:
    """``paired_gap`` over a frame of several seeds: paired by (seed, question), the same
    question under each seed's models."""
    keyed = frame.assign(question=frame["seed"].astype(str) + ":" + frame["question"].astype(str))
    return paired_gap(keyed, measure, first, second)


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


def _distinct_answers(a: dict, b: dict) -> bool:
    x, y = (metrics.normalize_answer(q["answers"][0]) for q in (a, b))
    return bool(x) and bool(y) and x not in y and y not in x


def query_focus(model: MultiTaskModel, pairs: list[dict], max_source: int, label: str, progress: bool = True,
                **generation) -> pd.DataFrame:
    """One row per (passage, question, input) for ``pairs`` from ``paired_questions``: the
    summary of ``question [SEP] context`` and of the context alone, whether it contains the
    question's gold answer, the share of the answer's content words it contains (and of the other
    question's answer), its overlap with the question's content words, its length in words, and
    (on question inputs) its query sensitivity: 1 - ROUGE-L between the summaries of the
    passage's two questions."""
    inputs = [(q["question"], p["context"]) for p in pairs for q in p["questions"]] + [(p["context"], None) for p in pairs]
    summaries = readersum.summarize(model, inputs, max_source, progress=progress, desc=f"summaries ({label})", **generation)
    asked, alone = summaries[:2 * len(pairs)], summaries[2 * len(pairs):]
    rows = []
    for i, p in enumerate(pairs):
        mine = asked[2 * i:2 * i + 2]
        sensitivity = metrics.query_sensitivity(*mine)
        for j, q in enumerate(p["questions"]):
            other = p["questions"][1 - j]
            for kind, summary, varies in ((INPUTS[0], mine[j], sensitivity), (INPUTS[1], alone[i], float("nan"))):
                rows.append({"model": label, "passage": i, "question_index": j, "input": kind,
                             "question": q["question"], "answer": q["answers"][0], "summary": summary,
                             "contains_answer": metrics.contains_answer(summary, q["answers"]),
                             "answer_recall": metrics.answer_recall(summary, q["answers"]),
                             "other_answer_recall": metrics.answer_recall(summary, other["answers"]),
                             "question_overlap": metrics.question_overlap(summary, q["question"]),
                             "words": len(summary.split()), "query_sensitivity": varies})
    return pd.DataFrame(rows)


FOCUS_MEASURES = {"contains_answer": "contains the gold answer (%)",
                  "answer_recall": "answer words recalled (%)",
                  "other_answer_recall": "other question's answer words recalled (%)",
                  "question_overlap": "question content words in the summary (%)",
                  "query_sensitivity": "query sensitivity, 1 - ROUGE-L (%)",
                  "words": "length (words)"}


def focus_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% bootstrap interval (over questions) of each measure, per model and input."""
    table = metrics.interval_table(frame, ["model", "input"], FOCUS_MEASURES, scales={"words": 1.0})
    return table.drop(columns="n", errors="ignore")


def focus_difference(frame: pd.DataFrame, measure: str, first: tuple[str, str], second: tuple[str, str]) -> dict:
    """Mean of ``measure`` under ``first`` minus under ``second`` ((model, input) each), paired by
    question, in percent, with its 95% bootstrap interval."""
    def values(model: str, kind: str) -> pd.Series:
        part = frame[(frame["model"] == model) & (frame["input"] == kind)]
        if part.empty:
            raise ValueError(f"no rows for model {model!r} and input {kind!r}: models "
                             f"{sorted(frame['model'].unique())}, inputs {list(INPUTS)}")
        keys = [c for c in ("seed", "passage", "question_index") if c in part]
        return part.set_index(keys)[measure].astype(float)

    return metrics.paired_difference(100 * values(*first), 100 * values(*second))
