"""Text metrics of the non-target-head chapters: SQuAD EM/F1, ROUGE, and the query-focus measures.

The SQuAD measures are the official v1.1 script's: answers and predictions are lower-cased,
stripped of punctuation and of the articles a/an/the, and whitespace-normalised; a prediction
scores its best match over the gold answers. ROUGE is Google's ``rouge-score`` with stemming.
"""

from __future__ import annotations

import collections
import re
import string
from functools import lru_cache

import numpy as np
import pandas as pd

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)

# Function words left out of "content words" (a fixed list, so nothing is downloaded).
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself yourselves
s t d ll m o re ve y many much one also did does whose
""".split())


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: list[str]) -> float:
    return float(max(normalize_answer(prediction) == normalize_answer(a) for a in answers))


def token_f1(prediction: str, answers: list[str]) -> float:
    """Best bag-of-tokens F1 over the gold answers (0 to 1)."""
    def f1(pred: str, gold: str) -> float:
        p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
        common = sum((collections.Counter(p) & collections.Counter(g)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(p), common / len(g)
        return 2 * precision * recall / (precision + recall)

    return max(f1(prediction, a) for a in answers)


def squad_scores(predictions: list[str], answers: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, averaged over questions."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} questions")
    return {"exact_match": 100 * float(np.mean([exact_match(p, a) for p, a in zip(predictions, answers)])),
            "f1": 100 * float(np.mean([token_f1(p, a) for p, a in zip(predictions, answers)]))}


def contains_answer(text: str, answers: list[str]) -> bool:
    """Whether some gold answer occurs in ``text`` as whole tokens, after SQuAD normalisation."""
    padded = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(a)} " in padded for a in answers if normalize_answer(a))


def answer_recall(text: str, answers: list[str]) -> float:
    """Best share, over the gold answers, of an answer's content words that ``text`` contains
    (0 to 1); NaN when no answer has a content word."""
    found = content_words(text)
    shares = [len(words & found) / len(words) for words in map(content_words, answers) if words]
    return max(shares) if shares else float("nan")


def content_words(text: str) -> set[str]:
    """Normalised tokens of ``text`` that are not function words."""
    return {w for w in normalize_answer(text).split() if w not in STOPWORDS}


def question_overlap(summary: str, question: str) -> float:
    """Share of the question's content words that the summary contains (0 to 1; 0 for none)."""
    wanted = content_words(question)
    return len(wanted & content_words(summary)) / len(wanted) if wanted else 0.0


def summary_quality(summaries: list[str]) -> dict[str, float]:
    """Signs of a degenerate summariser, in percent: ``distinct (%)``, the share of distinct
    summaries (after SQuAD normalisation) among them, and ``repeated words (%)``, the mean over
    summaries of the share of their content-word tokens that repeat an earlier one."""
    if not summaries:
        raise ValueError("summary_quality needs at least one summary")
    distinct = len({normalize_answer(s) for s in summaries}) / len(summaries)
    repeated = []
    for s in summaries:
        words = [w for w in normalize_answer(s).split() if w not in STOPWORDS]
        repeated.append(1 - len(set(words)) / len(words) if words else 0.0)
    return {"distinct (%)": 100 * distinct, "repeated words (%)": 100 * float(np.mean(repeated))}


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(prediction: str, references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-measure (0 to 1), each against its best-matching reference."""
    scores = [_scorer().score(ref, prediction) for ref in references]
    return {name: max(s[name].fmeasure for s in scores) for name in ("rouge1", "rouge2", "rougeL")}


def query_sensitivity(summary_a: str, summary_b: str) -> float:
    """1 - ROUGE-L F between two summaries of the same context under different questions
    (F-measure is symmetric, so the order does not matter): 0 when identical."""
    return 1.0 - _scorer().score(summary_a, summary_b)["rougeL"].fmeasure


def bootstrap_interval(values, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (e.g. per-example differences)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def interval_table(frame: pd.DataFrame, keys: list[str], measures: dict[str, str],
                   scales: dict[str, float] | None = None) -> pd.DataFrame:
    """Per group of ``keys``: each measure's mean over rows and its 95% bootstrap interval, and
    the number of rows. ``measures`` maps a column to the name shown; values are scaled by 100
    (percent) unless ``scales`` names another factor. Measures with no values in a group are
    left out of it."""
    scales = scales or {}
    rows = []
    for key, part in frame.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for column, name in measures.items():
            values = scales.get(column, 100.0) * part[column].dropna().astype(float).to_numpy()
            if not len(values):
                continue
            low, high = bootstrap_interval(values)
            rows.append({**dict(zip(keys, key)), "measure": name, "mean": values.mean(), "low": low, "high": high,
                         "n": len(values)})
    return pd.DataFrame(rows)


def paired_difference(first, second) -> dict:
    """Mean of ``first - second`` (pandas Series on the same index, e.g. per question), pairs with a
    missing side dropped, with its 95% bootstrap interval and the number of pairs."""
    difference = (first - second).dropna()
    low, high = bootstrap_interval(difference.to_numpy())
    return {"difference": float(difference.mean()), "low": low, "high": high, "n": len(difference)}
