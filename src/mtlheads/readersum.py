"""QA and summarisation on one encoder (Geva et al., 2021, READERSUM): data, training, evaluation.

The model is a shared encoder with an extractive QA head (``SpanQAHead``) and a summarisation
head (``GenerativeHead``). QA inputs are ``question [SEP] context``; summarisation inputs are
the document alone. Training batches mix the two tasks: one encoder pass over the batch, each
example's states go to its own head and loss. The control (``qa_answers="shuffled"``) is the
same model trained on the same inputs, SQuAD passages and questions included, with each QA
answer taken from another question of the same passage: its encoder sees the passages and the
questions as much, and learns which spans of a passage are answers, but not which span a
question asks for (an exposure control; a summarisation-only model is ``tasks=("summ",)``). At evaluation the summarisation head is also given SQuAD inputs it never
saw in training (``question [SEP] context``, and the context alone): its non-target outputs.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mtlheads import devices, metrics, multihead
from mtlheads.checks import Knob, check_fields
from mtlheads.data import pairs, scitldr, sources, squad
from mtlheads.heads import GenerativeHead, SpanQAHead
from mtlheads.model import MultiTaskModel

TASKS = ("qa", "summ")
ANSWERS = ("gold", "shuffled")  # the QA answers trained on: the questions' own, or the exposure control's


# The config's fields and their valid values (also a profile's ``readersum`` section's).
RULES = {**multihead.RUN_RULES, "qa_examples": Knob("int", low=1, nullable=True),
         "summ_examples": Knob("int", low=1, nullable=True), "max_summary": Knob("int", low=3), "copy": Knob("bool"),
         "output_vocab": Knob("int", low=1, nullable=True), "qa_answers": Knob("str", choices=ANSWERS)}


@dataclass(frozen=True)
class ReaderSumConfig:
    """One training run. ``tasks`` is ``("qa", "summ")`` (the multi-task model; with
    ``qa_answers="shuffled"``, its exposure control) or ``("summ",)`` (summarisation alone)."""

    tasks: tuple[str, ...] = TASKS
    qa_answers: str = "gold"  # "shuffled": each answer another question's of its passage (``training_examples``)
    encoder: str = "minilm"
    seed: int = 1
    qa_examples: int | None = None  # SQuAD questions from the training articles (None: all)
    summ_examples: int | None = None  # SciTLDR-A training documents (None: all)
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 1e-4  # encoder and decoder (both start pretrained)
    lr_new: float = 1e-3  # the QA projection and the output bias
    warmup: float = 0.1
    clip: float = 1.0
    max_source: int = 256  # subwords of an input
    max_summary: int = 48  # subwords of a summary, with [CLS] and [SEP]
    decoder_layers: int = 2
    copy: bool = True  # the summariser may copy source tokens (pointer-generator)
    output_vocab: int | None = 2000  # generate only the most frequent summary tokens (None: all); copy the rest
    frozen_layers: int = 0  # the embeddings and this many bottom encoder layers are not trained
    eval_share: float = 0.3  # SQuAD articles held out for evaluation
    device: str = "auto"  # 'auto', 'cpu', 'cuda' or 'cuda:N' (mtlheads.devices)
    bf16: bool = True  # bfloat16 autocast on CUDA

    def __post_init__(self):
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or "summ" not in self.tasks:
            raise ValueError(f"tasks must include 'summ' and come from {TASKS}, not {self.tasks!r}")
        if self.qa_answers == "shuffled" and "qa" not in self.tasks:
            raise ValueError(f"qa_answers='shuffled' needs the qa task, not tasks={self.tasks!r}")
        check_fields(self, RULES)
        devices.settle(self)

    @property
    def label(self) -> str:
        if "qa" not in self.tasks:
            return "summarisation only"
        return "QA + summarisation" + (" (shuffled answers)" if self.qa_answers == "shuffled" else "")


def heads(encoder, config: ReaderSumConfig) -> tuple[dict[str, nn.Module], dict]:
    """The QA head and the summarisation head, each trained on the examples of its own task (every
    control has the same architecture)."""
    vocab = None if config.output_vocab is None else summary_vocabulary(encoder.tokenizer, config.output_vocab)
    return {"qa": SpanQAHead(encoder.hidden_size),
            "summ": GenerativeHead(encoder, config.decoder_layers, config.max_summary, copy=config.copy,
                                   output_vocab=vocab)}, {}


# Examples ---------------------------------------------------------------------------------------

def qa_example(tokenizer, question: dict, max_source: int) -> dict | None:
    """Token ids of ``question [SEP] context`` with the first answer's subword span; None when
    truncation cuts the answer off."""
    encoded = pairs.encode(tokenizer, question["question"], question["context"], max_source)
    start_char = question["answer_start"]
    place = pairs.token_range(encoded, pairs.SECOND, start_char, start_char + len(question["answers"][0]))
    if place is None:
        return None
    return {"input_ids": encoded.input_ids, "context_mask": encoded.mask(pairs.SECOND), "start": place[0],
            "end": place[1], "task": "qa"}


def answer_span(question: dict) -> tuple[int, int]:
    """The character span of a SQuAD question's first answer in its context."""
    return question["answer_start"], question["answer_start"] + len(question["answers"][0])


def windowed(question: dict, tokenizer, max_source: int, spans: list[tuple[int, int]] | None = None) -> dict | None:
    """``question`` with its context cut to the window of at most ``max_source`` subwords with the
    question (``pairs.window``) that holds ``spans`` (None: its answer), ``answer_start`` moved with
    it; None where they do not fit. Chapter 7 trains and evaluates on such windows."""
    cut = pairs.window(tokenizer, question["question"], question["context"], spans or [answer_span(question)],
                       max_source)
    if cut is None:
        return None
    start, end = cut
    return {**question, "context": question["context"][start:end], "answer_start": question["answer_start"] - start}


def moved_into(question: dict, windowed_from: dict, window: dict) -> dict:
    """``question`` (of the same passage) moved into the window that ``windowed`` cut from
    ``windowed_from`` as ``window``: the window's context, its answer offset shifted alike."""
    shift = windowed_from["answer_start"] - window["answer_start"]
    return {**question, "context": window["context"], "answer_start": question["answer_start"] - shift}


def window_questions(questions: list[dict], tokenizer, max_source: int) -> list[dict]:
    """``windowed`` of each question around its answer, those that fit, in order."""
    return [w for w in (windowed(q, tokenizer, max_source) for q in questions) if w is not None]


def summary_vocabulary(tokenizer, size: int) -> torch.Tensor:
    """Ids of the ``size`` most frequent subwords of the SciTLDR-A training summaries, with
    [CLS] and [SEP]."""
    counts = collections.Counter()
    for document in scitldr.load("train"):
        for summary in document["summaries"]:
            counts.update(tokenizer(summary, add_special_tokens=False)["input_ids"])
    ids = [token for token, _ in counts.most_common(size)] + [tokenizer.cls_token_id, tokenizer.sep_token_id]
    return torch.tensor(sorted(set(ids)))


def summ_example(tokenizer, document: str, summary: str, max_source: int, max_summary: int) -> dict:
    source = tokenizer(document, truncation=True, max_length=max_source)["input_ids"]
    target = tokenizer(summary, truncation=True, max_length=max_summary)["input_ids"]
    return {"input_ids": source, "target": target, "task": "summ"}


def squad_parts(config: ReaderSumConfig) -> tuple[list[dict], list[dict]]:
    return squad.split_by_article(squad.load(), config.eval_share)


def shuffled_answers(questions: list[dict], seed: int) -> list[tuple[dict, dict]]:
    """``(question, control)`` for each of ``questions`` (SQuAD's) whose passage has another
    question with a different answer (neither normalised answer contains the other): ``control``
    is the question given such an answer, drawn at random. The QA targets of the exposure control;
    both models train on the same questions (``training_examples``)."""
    by_context: dict[str, list[dict]] = collections.defaultdict(list)
    for q in questions:
        by_context[q["context"]].append(q)
    rng = random.Random(seed)
    out = []
    for q in questions:
        others = [o for o in by_context[q["context"]] if _different(q["answers"][0], o["answers"][0])]
        if others:
            other = rng.choice(others)
            out.append((q, {**q, "answers": [other["answers"][0]], "answer_start": other["answer_start"]}))
    return out


def _window_pair(tokenizer, own: dict, other: dict, max_source: int) -> tuple[dict | None, dict | None]:
    """The QA examples of a question with its own answer and with another, over the same window
    (holding both answers)."""
    cut = windowed(own, tokenizer, max_source, [answer_span(own), answer_span(other)])
    if cut is None:
        return None, None
    return qa_example(tokenizer, cut, max_source), qa_example(tokenizer, moved_into(other, own, cut), max_source)


def _different(a: str, b: str) -> bool:
    x, y = metrics.normalize_answer(a), metrics.normalize_answer(b)
    return bool(x) and bool(y) and x not in y and y not in x


def training_examples(config: ReaderSumConfig, tokenizer) -> list[dict]:
    """The SciTLDR-A abstracts and (with QA) the SQuAD questions of the training articles,
    shuffled, each question's passage cut to the window that holds its answer and the other answer
    ``shuffled_answers`` gives it. The questions are those whose passage has another answer and
    whose two answers fit one window, for both models, so that the exposure control
    (``qa_answers="shuffled"``) sees the same inputs, each question's answer another question's of
    the same passage."""
    rng = random.Random(config.seed)
    examples = []
    docs = scitldr.load("train")
    rng.shuffle(docs)
    for d in docs[:config.summ_examples]:
        examples.append(summ_example(tokenizer, d["document"], d["summaries"][0], config.max_source, config.max_summary))
    if "qa" in config.tasks:
        both = shuffled_answers(squad_parts(config)[0], config.seed)
        rng.shuffle(both)
        shuffled = config.qa_answers == "shuffled"
        # each question cut to the window that holds both its answers, so that both models see it
        made = (None if None in made else made[shuffled] for made in
                (_window_pair(tokenizer, own, other, config.max_source) for own, other in both))
        examples += multihead.first_made(made, config.qa_examples)
    rng.shuffle(examples)
    return examples


# Training ---------------------------------------------------------------------------------------

EXPERIMENT = multihead.Experiment("readersum", ReaderSumConfig, heads, training_examples,
                                  lambda config: {"squad+scitldr": sources.data_version("SQuAD", "scitldr")},
                                  ({"tasks": TASKS}, {"tasks": TASKS, "qa_answers": "shuffled"}), __name__)
# build(config, encoder=None), train(config, progress, encoder), train_cached(config, progress),
# train_many(configs, workers), load(result), profile_configs(knobs):
# the multi-task model and its exposure control (shuffled answers)
build, train, train_cached, load = EXPERIMENT.build, EXPERIMENT.train, EXPERIMENT.train_cached, EXPERIMENT.load
profile_configs, train_many = EXPERIMENT.profile_configs, EXPERIMENT.train_many


# Inference --------------------------------------------------------------------------------------

@torch.no_grad()
def summarize(model: MultiTaskModel, inputs: list[tuple[str, str | None]], max_source: int, max_new: int = 40,
              beams: int = 1, no_repeat: int = 3, batch_size: int = 16, progress: bool = True,
              desc: str = "summaries") -> list[str]:
    """Summaries of ``(text, None)`` (a document alone) or ``(question, context)`` inputs; no
    ``no_repeat``-gram of subwords occurs twice in a summary."""
    tok = model.tokenizer
    out: list[str | None] = [None] * len(inputs)
    # Documents alone and (question, context) pairs are tokenised apart; the order is kept.
    groups = [[i for i, (_, b) in enumerate(inputs) if b is None], [i for i, (_, b) in enumerate(inputs) if b is not None]]
    chunks = [chunk for group in groups for chunk in multihead.batches(group, batch_size)]
    for chunk in tqdm(chunks, desc=desc, disable=not progress, leave=False):
        seconds = None if inputs[chunk[0]][1] is None else [inputs[i][1] for i in chunk]
        enc = pairs.encode_batch(tok, [inputs[i][0] for i in chunk], seconds, max_source)
        states = model.subword_states(enc.input_ids, enc.attention_mask)
        ids = model.decoders["summ"].generate(states, enc.attention_mask.to(states.device), tok.cls_token_id,
                                        tok.sep_token_id, max_new=max_new, beams=beams,
                                        source=enc.input_ids.to(states.device), no_repeat=no_repeat)
        for i, text in zip(chunk, tok.batch_decode(ids, skip_special_tokens=True)):
            out[i] = text
    return out


@torch.no_grad()
def answer(model: MultiTaskModel, questions: list[dict], max_source: int, batch_size: int = 32,
           progress: bool = True) -> list[str]:
    """The QA head's answer text per SQuAD question (character span of the context)."""
    tok = model.tokenizer
    out: list[str] = []
    for chunk in tqdm(list(multihead.batches(questions, batch_size)), desc="answers", disable=not progress, leave=False):
        enc = pairs.encode_batch(tok, [q["question"] for q in chunk], [q["context"] for q in chunk], max_source)
        states = model.subword_states(enc.input_ids, enc.attention_mask)
        for q, row, (s, e) in zip(chunk, enc.rows, model.decoders["qa"].decode(states, enc.mask(pairs.SECOND, states.device))):
            out.append(q["context"][slice(*pairs.char_span(row, s, e))])
    return out


def rouge_scores(model: MultiTaskModel, documents: list[dict], max_source: int, progress: bool = True,
                 **generation) -> dict[str, float]:
    """ROUGE-1/2/L F (percent) of the summaries of SciTLDR ``documents`` against their gold
    summaries, with their ``metrics.summary_quality`` (distinct summaries, repeated words)."""
    summaries = summarize(model, [(d["document"], None) for d in documents], max_source, progress=progress,
                          desc="SciTLDR summaries", **generation)
    return {**summary_rouge(summaries, documents), **metrics.summary_quality(summaries)}


def summary_rouge(summaries: list[str], documents: list[dict]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F (percent) of ``summaries`` against the ``documents``' gold summaries."""
    scores = [metrics.rouge(s, d["summaries"]) for s, d in zip(summaries, documents, strict=True)]
    return {name: 100 * float(np.mean([s[name] for s in scores])) for name in ("rouge1", "rouge2", "rougeL")}


def lead_rouge(documents: list[dict]) -> dict[str, float]:
    """ROUGE of the lead-sentence baseline: each SciTLDR document's first sentence as its summary."""
    return summary_rouge([d["sentences"][0] if d["sentences"] else "" for d in documents], documents)
