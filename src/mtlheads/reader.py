"""READER (Geva et al., 2021; chapter 8): a span head that points at the evidence for a yes/no
classification head.

The model is a shared encoder over ``question [SEP] passage window`` with two heads: a yes/no
head on [CLS] (``YesNoHead``) and an extractive span head (``SpanQAHead``). Both run on every
input, so a yes/no question also gets a span from the span head: its non-target output. The
span head trains on SQuAD questions, the yes/no head on verification questions written over the
same training passages (``yesno.pairs``: a SQuAD question asked with its answer, yes, and with a
same-type distractor of the passage, no). The control (``yesno_labels="shuffled"``) is the same
model trained on the same inputs, with the yes/no labels permuted among the questions: its
encoder sees the verification questions as much, but no label follows from its question (an
exposure control, as in chapters 6 and 7).

Every input is cut to the window of the passage that holds the answer (SQuAD), or the answer, the
distractor and the evidence sentence (yes/no; ``windowed_pair``), the same window for both of a
pair's questions. Chapter 8 reads the span head on held-out yes/no questions: is its span in the
evidence sentence, is it the answer, does it move with the candidate the question names.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mtlheads import devices, metrics, multihead, nontarget, readersum, verdicts
from mtlheads.checks import Knob, check_fields
from mtlheads.data import pairs, sources, yesno
from mtlheads.heads import ClassificationHead, SpanQAHead
from mtlheads.model import MultiTaskModel

TASKS = ("span", "yesno")
LABELINGS = ("gold", "shuffled")  # the yes/no labels trained on: the model's, or the exposure control's
VERSIONS = (yesno.YES, yesno.NO)  # a pair's two questions

RULES = {**multihead.RUN_RULES, "span_examples": Knob("int", low=1, nullable=True),
         "yesno_examples": Knob("int", low=1, nullable=True), "yesno_labels": Knob("str", choices=LABELINGS)}
del RULES["decoder_layers"]


@dataclass(frozen=True)
class ReaderConfig:
    """One training run: the two-head model (``yesno_labels="gold"``) or its exposure control
    (``"shuffled"``)."""

    tasks: tuple[str, ...] = TASKS
    yesno_labels: str = "gold"
    encoder: str = "minilm"
    seed: int = 1
    span_examples: int | None = None  # SQuAD questions from the training articles (None: all)
    yesno_examples: int | None = None  # yes/no pairs over the training passages, both questions of each (None: all)
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 1e-4  # the encoder
    lr_new: float = 1e-3  # the two heads (new layers)
    warmup: float = 0.1
    clip: float = 1.0
    max_source: int = 128  # subwords of `question [SEP] passage window`
    frozen_layers: int = 0  # the embeddings and this many bottom encoder layers are not trained
    eval_share: float = 0.3  # SQuAD articles held out for evaluation
    device: str = "auto"  # 'auto', 'cpu', 'cuda' or 'cuda:N' (mtlheads.devices)
    bf16: bool = True  # bfloat16 autocast on CUDA

    def __post_init__(self):
        if tuple(self.tasks) != TASKS:
            raise ValueError(f"tasks must be {TASKS}, not {self.tasks!r}")
        check_fields(self, RULES)
        devices.settle(self)

    @property
    def label(self) -> str:
        return "span + yes/no" + (" (shuffled labels)" if self.yesno_labels == "shuffled" else "")


class YesNoHead(ClassificationHead):
    """``ClassificationHead`` over (no, yes), the class an example's ``label``."""

    def __init__(self, hidden: int):
        super().__init__(hidden, yesno.LABELS)

    def batch_targets(self, examples: list[dict], rows: list[int], width: int, pad_id: int) -> dict:
        return {"rows": torch.tensor(rows, dtype=torch.long),
                "labels": torch.tensor([self.classes.index(examples[i]["label"]) for i in rows])}


def heads(encoder, config: ReaderConfig) -> tuple[dict[str, nn.Module], dict]:
    """The span head (on SQuAD questions) and the yes/no head (on the yes/no questions)."""
    return {"span": SpanQAHead(encoder.hidden_size), "yesno": YesNoHead(encoder.hidden_size)}, {}


# Data -------------------------------------------------------------------------------------------

squad_parts = readersum.squad_parts  # (train, held-out) SQuAD questions: chapters 6-7's split by article


def windowed_pair(pair: dict, tokenizer, max_source: int) -> dict | None:
    """``pair`` (``yesno.pairs``) with its passage cut to the window of at most ``max_source``
    subwords with the longer of its two questions that holds the answer, the distractor and the
    evidence sentence (``pairs.window``), every span moved with it; None where they do not fit."""
    longer = max(pair[yesno.YES], pair[yesno.NO], key=len)
    spans = [pair["answer_span"], pair["distractor_span"], pair["evidence"]]
    cut = pairs.window(tokenizer, longer, pair["context"], spans, max_source)
    if cut is None:
        return None
    start, end = cut
    moved = {key: (pair[key][0] - start, pair[key][1] - start) for key in ("answer_span", "distractor_span", "evidence")}
    return {**pair, **moved, "context": pair["context"][start:end], "answer_start": pair["answer_start"] - start}


def yesno_items(questions: list[dict], tokenizer, max_source: int, seed: int = 0) -> list[dict]:
    """``windowed_pair`` of every ``yesno.pairs`` of ``questions`` that fits, in order."""
    made = (windowed_pair(p, tokenizer, max_source) for p in yesno.pairs(questions, seed))
    return [p for p in made if p is not None]


def span_example(tokenizer, question: dict, max_source: int) -> dict | None:
    example = readersum.qa_example(tokenizer, question, max_source)
    return None if example is None else {**example, "task": "span"}


def yesno_example(tokenizer, item: dict, version: str, label: str, max_source: int) -> dict:
    encoded = pairs.encode(tokenizer, item[version], item["context"], max_source)
    return {"input_ids": encoded.input_ids, "task": "yesno", "label": label}


def training_examples(config: ReaderConfig, tokenizer) -> list[dict]:
    """The SQuAD questions of the training articles (each cut to the window around its answer) and
    the yes/no questions over their passages: both questions of each pair, the one with its answer
    (yes) and the one with its distractor (no), so the labels are balanced and the yes/no head
    must read the candidate, the rest of the input being the same. The control's labels are the
    same labels permuted among the questions (same inputs, no label follows from its question)."""
    rng = random.Random(config.seed)
    train_questions = squad_parts(config)[0]
    shuffled = list(train_questions)
    rng.shuffle(shuffled)
    # Window (tokenise) only as many questions as are used: a lazy generator, stopped once enough are kept.
    windows = (readersum.windowed(q, tokenizer, config.max_source) for q in shuffled)
    made = (span_example(tokenizer, w, config.max_source) for w in windows if w is not None)
    examples = multihead.first_made(made, config.span_examples)
    items = yesno_items(train_questions, tokenizer, config.max_source, seed=config.seed)
    rng.shuffle(items)
    asked = [(item, version) for item in items[:config.yesno_examples] for version in VERSIONS]
    labels = [version for _, version in asked]
    if config.yesno_labels == "shuffled":  # its own generator: the inputs and their order stay the model's
        random.Random(f"labels {config.seed}").shuffle(labels)
    examples += [yesno_example(tokenizer, item, version, label, config.max_source)
                 for (item, version), label in zip(asked, labels)]
    rng.shuffle(examples)
    return examples


EXPERIMENT = multihead.Experiment("reader", ReaderConfig, heads, training_examples,
                                  lambda config: {"squad": sources.data_version("SQuAD")},
                                  ({"tasks": TASKS}, {"tasks": TASKS, "yesno_labels": "shuffled"}), __name__)
# build(config, encoder=None), train(config, progress, encoder), train_cached(config, progress),
# train_many(configs, workers), load(result), profile_configs(knobs):
# the two-head model and its exposure control (shuffled labels)
build, train, train_cached, load = EXPERIMENT.build, EXPERIMENT.train, EXPERIMENT.train_cached, EXPERIMENT.load
profile_configs, train_many = EXPERIMENT.profile_configs, EXPERIMENT.train_many


# Inference --------------------------------------------------------------------------------------

@torch.no_grad()
def read(model: MultiTaskModel, inputs: list[tuple[str, str]], max_source: int, batch_size: int = 32,
         progress: bool = True, desc: str = "reading") -> list[dict]:
    """For each ``(question, passage)``: the yes/no head's probability of yes and the span head's
    span (``span``: character offsets in the passage; ``text``)."""
    tok = model.tokenizer
    out = []
    for chunk in tqdm(list(multihead.batches(inputs, batch_size)), desc=desc, disable=not progress, leave=False):
        enc = pairs.encode_batch(tok, [q for q, _ in chunk], [p for _, p in chunk], max_source)
        states = model.subword_states(enc.input_ids, enc.attention_mask)
        yes = F.softmax(model.decoders["yesno"](states).float(), -1)[:, yesno.LABELS.index(yesno.YES)].tolist()
        spans = model.decoders["span"].decode(states, enc.mask(pairs.SECOND, states.device))
        for (question, passage), row, p, (s, e) in zip(chunk, enc.rows, yes, spans):
            start, end = pairs.char_span(row, s, e)
            out.append({"p_yes": p, "span": (start, end), "text": passage[start:end]})
    return out


def evidence_measures(item: dict, version: str, prediction: dict) -> dict:
    """What the span head's ``prediction`` on ``item``'s ``version`` question marks: ``evidence``
    (its span's middle in the evidence sentence), ``answer`` (its text the answer, SQuAD-normalised),
    ``candidate`` (it overlaps the candidate the question names: the answer for yes, the distractor
    for no), ``other_candidate`` (the one it does not name); and the yes/no head's ``correct``."""
    start, end = prediction["span"]
    middle = (start + end - 1) / 2 if end > start else start
    named, unnamed = (item["answer_span"], item["distractor_span"])[::1 if version == yesno.YES else -1]
    return {"evidence": float(item["evidence"][0] <= middle < item["evidence"][1]),
            "answer": float(metrics.normalize_answer(prediction["text"]) == metrics.normalize_answer(item["answer"])),
            "candidate": float(yesno.overlaps((start, end), named)), "other_candidate": float(yesno.overlaps((start, end), unnamed)),
            "correct": float((prediction["p_yes"] >= 0.5) == (version == yesno.YES))}


def baselines(item: dict) -> dict:
    """What comes free on ``item``: ``random sentence`` (a sentence of the window drawn uniformly is
    the evidence: 1 / sentences) and ``question-overlap sentence`` (the sentence sharing most content
    words with the question is the evidence), per version."""
    spans = yesno.sentence_spans(item["context"])
    evidence = next(i for i, (s, e) in enumerate(spans) if s <= item["evidence"][0] < e)
    out = {}
    for version in VERSIONS:
        wanted = metrics.content_words(item[version])
        overlaps = [len(wanted & metrics.content_words(item["context"][s:e])) for s, e in spans]
        out[version] = {"random sentence": 1 / len(spans), "question-overlap sentence": float(int(np.argmax(overlaps)) == evidence)}
    return out


def evidence_frame(predictions: dict[tuple[str, int], list[dict]], items: list[dict]) -> pd.DataFrame:
    """One row per (method, seed, item, version), the measures of ``evidence_measures`` in percent:
    each model's span head (``predictions[(label, seed)]``: ``read`` of every item's two questions,
    yes then no) and, per seed, the free baselines (``baselines``, their ``evidence`` only)."""
    rows = []
    seeds = sorted({seed for _, seed in predictions})
    free = [baselines(item) for item in items]
    for (label, seed), predicted in predictions.items():
        for i, item in enumerate(items):
            for j, version in enumerate(VERSIONS):
                measures = evidence_measures(item, version, predicted[2 * i + j])
                rows.append({"method": label, "seed": seed, "item": i, "version": version, "template": item["template"],
                             **{k: 100 * v for k, v in measures.items()}})
    for seed in seeds:
        for i, item in enumerate(items):
            for version in VERSIONS:
                for method, hit in free[i][version].items():
                    rows.append({"method": method, "seed": seed, "item": i, "version": version,
                                 "template": item["template"], "evidence": 100 * hit})
    return pd.DataFrame(rows)


def questions_of(items: list[dict]) -> list[tuple[str, str]]:
    """The inputs ``read`` takes for ``evidence_frame``: each item's yes question, then its no question."""
    return [(item[version], item["context"]) for item in items for version in VERSIONS]


def method_effect(frame: pd.DataFrame, first: str, second: str, measure: str = "evidence",
                  version: str | None = None) -> dict:
    """``nontarget.seed_item_effect`` of ``measure`` for method ``first`` minus ``second``, paired by
    (item, version) within each seed (``version``: only that version's questions)."""
    part = frame if version is None else frame[frame["version"] == version]

    def values(method: str) -> pd.Series:
        rows = part[part["method"] == method]
        if rows.empty:
            raise ValueError(f"no rows for method {method!r}; methods: {sorted(frame['method'].unique())}")
        rows = rows.assign(question=rows["item"].astype(str) + "/" + rows["version"])
        return rows.set_index(["seed", "question"])[measure].astype(float)

    return nontarget.seed_item_effect(values(first), values(second))


def counterfactual_table(frame: pd.DataFrame, labels: tuple[str, ...]) -> pd.DataFrame:
    """Per model, on the no questions (the candidate swapped for the distractor): the share of spans
    on the swapped-in candidate (it follows the question), on the answer (it stays on the
    evidence), and elsewhere; and, on the yes questions, on the answer."""
    rows = []
    for label in labels:
        no = frame[(frame["method"] == label) & (frame["version"] == yesno.NO)]
        yes = frame[(frame["method"] == label) & (frame["version"] == yesno.YES)]
        rows.append({"model": label, "no: on the swapped-in candidate (%)": no["candidate"].mean(),
                     "no: on the answer (%)": no["other_candidate"].mean(),
                     "no: elsewhere (%)": 100 - no["candidate"].mean() - no["other_candidate"].mean(),
                     "yes: on the answer (%)": yes["candidate"].mean()})
    return pd.DataFrame(rows).set_index("model")


# What each target head must reach before its non-target span is read (issue 22).
YESNO_ACCURACY, SPAN_F1 = 80.0, 50.0


def target_preconditions(accuracy: float, span_f1: float, who: str = "") -> list[verdicts.Precondition]:
    """The yes/no head right on at least ``YESNO_ACCURACY``% of held-out yes/no questions and the
    span head's F1 at least ``SPAN_F1`` on held-out SQuAD questions (means over seeds)."""
    return [verdicts.Precondition(f"{who}yes/no accuracy >= {YESNO_ACCURACY:g}% ({accuracy:.1f})", accuracy >= YESNO_ACCURACY),
            verdicts.Precondition(f"{who}span head F1 >= {SPAN_F1:g} ({span_f1:.1f})", span_f1 >= SPAN_F1)]


def span_scores(model: MultiTaskModel, questions: list[dict], max_source: int, progress: bool = True) -> dict:
    """SQuAD EM and F1 (percent, ``metrics.squad_scores``) of the span head on ``questions`` (windowed
    around their answers)."""
    predicted = read(model, [(q["question"], q["context"]) for q in questions], max_source, progress=progress,
                     desc="span questions")
    return metrics.squad_scores([p["text"] for p in predicted], [q["answers"] for q in questions])
