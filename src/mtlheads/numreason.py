"""Numerical reasoning with several heads on one encoder (Geva et al., 2021, MSEGenBERT): data,
training, inference and the measures of chapter 6.

The model is a shared encoder with three heads over ``question [SEP] passage``: a multi-span
extraction head (``BIOTaggingHead``, over the question and passage tokens), a generative head
(``GenerativeHead`` with a digit vocabulary: numbers are written digit by digit, as in GenBERT)
and a type head on [CLS] that chooses which of the two answers. Every head runs on every input,
so every prediction has a target output and non-target ones. Training supervises the type
(span questions train the span head, arithmetic questions the generative head; both train the
type head), rather than GenBERT's marginal over heads. The control (``arithmetic_answers=
"shuffled"``) is the same model trained on the same inputs, arithmetic passages included, with
the arithmetic answers permuted among the questions: its encoder is exposed to the arithmetic
inputs as much, but no answer follows from its question (an exposure control).

Span questions are SQuAD v1.1's; arithmetic questions are written over the same passages by
``numeric.questions``. Both are split by article (``squad.split_by_article``) and cut to the
window of the passage that holds the answer or the arguments (``windowed``).
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from mtlheads import devices, multihead
from mtlheads.checks import Knob, check_fields
from mtlheads.data import numeric, pairs, sources, squad
from mtlheads.heads import BIOTaggingHead, ClassificationHead, GenerativeHead
from mtlheads.model import MultiTaskModel

TASKS = ("span", "arithmetic")
TYPES = ("span", "generation")  # what the type head chooses between
DIGITS = "0123456789.-"
ANSWERS = ("gold", "shuffled")  # the arithmetic answers trained on: the model's, or the exposure control's


# The config's fields and their valid values (also a profile's ``numreason`` section's).
RULES = {**multihead.RUN_RULES, "span_examples": Knob("int", low=1, nullable=True),
         "arithmetic_examples": Knob("int", low=1, nullable=True), "max_answer": Knob("int", low=3),
         "arithmetic_answers": Knob("str", choices=ANSWERS)}


@dataclass(frozen=True)
class NumReasonConfig:
    """One training run. ``tasks`` is ``("span", "arithmetic")`` (the three-head model; with
    ``arithmetic_answers="shuffled"``, its exposure control) or ``("span",)`` (a span head alone,
    trained on the span questions only)."""

    tasks: tuple[str, ...] = TASKS
    arithmetic_answers: str = "gold"  # "shuffled": the exposure control (``training_examples``)
    encoder: str = "minilm"
    seed: int = 1
    span_examples: int | None = None  # SQuAD questions from the training articles (None: all)
    arithmetic_examples: int | None = None  # generated questions over the training passages (None: all)
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 1e-4  # the encoder and the generative decoder (both start pretrained)
    lr_new: float = 1e-3  # the tagging and type layers and the output bias
    warmup: float = 0.1
    clip: float = 1.0
    max_source: int = 256  # subwords of `question [SEP] passage`
    max_answer: int = 16  # digits of a generated answer, with [CLS] and [SEP]
    decoder_layers: int = 2
    frozen_layers: int = 0  # the embeddings and this many bottom encoder layers are not trained
    eval_share: float = 0.3  # SQuAD articles held out for evaluation
    device: str = "auto"  # 'auto', 'cpu', 'cuda' or 'cuda:N' (mtlheads.devices)
    bf16: bool = True  # bfloat16 autocast on CUDA

    def __post_init__(self):
        if "span" not in self.tasks or any(t not in TASKS for t in self.tasks):
            raise ValueError(f"tasks must include 'span' and come from {TASKS}, not {self.tasks!r}")
        if self.arithmetic_answers == "shuffled" and "arithmetic" not in self.tasks:
            raise ValueError(f"arithmetic_answers='shuffled' needs the arithmetic task, not tasks={self.tasks!r}")
        check_fields(self, RULES)
        devices.settle(self)

    @property
    def label(self) -> str:
        if "arithmetic" not in self.tasks:
            return "span only"
        return "span + generation" + (" (shuffled answers)" if self.arithmetic_answers == "shuffled" else "")


def digit_vocabulary(tokenizer) -> torch.Tensor:
    """Token ids of the digits, the decimal point and the minus sign, and [SEP] to end a number."""
    ids = tokenizer.convert_tokens_to_ids(list(DIGITS))
    if tokenizer.unk_token_id in ids:
        raise ValueError(f"the tokenizer has no single token for some of {DIGITS!r}")
    return torch.tensor(ids + [tokenizer.sep_token_id])


def heads(encoder, config: NumReasonConfig) -> tuple[dict[str, nn.Module], dict]:
    """The span head, and with arithmetic the generative and type heads; and which example tasks
    each trains on (the type head: all)."""
    hidden = encoder.hidden_size
    out = {"span": BIOTaggingHead(hidden)}
    if "arithmetic" in config.tasks:
        out["generation"] = GenerativeHead(encoder, config.decoder_layers, config.max_answer,
                                           output_vocab=digit_vocabulary(encoder.tokenizer))
        out["answer_type"] = ClassificationHead(hidden, TASKS)
    routes = {"span": ("span",), "generation": ("arithmetic",), "answer_type": None}
    return out, {name: route for name, route in routes.items() if name in out}


# Examples ---------------------------------------------------------------------------------------

def span_example(tokenizer, question: dict, max_source: int) -> dict | None:
    """A SQuAD question with every whole-word occurrence of its first answer in the passage; None
    when truncation leaves no occurrence."""
    encoded = pairs.encode(tokenizer, question["question"], question["context"], max_source)
    text = question["answers"][0]
    occurrences = [pairs.token_range(encoded, pairs.SECOND, m.start(), m.end())
                   for m in whole_words(text, question["context"])]
    occurrences = [o for o in occurrences if o is not None]
    if not occurrences:
        return None
    return {"input_ids": encoded.input_ids, "tag_mask": encoded.mask(), "answers": [occurrences], "task": "span"}


def whole_words(text: str, context: str):
    """The whole-word occurrences of ``text`` in ``context`` (``re.Match`` objects)."""
    return re.finditer(rf"(?<!\w){re.escape(text)}(?!\w)", context)


def arithmetic_example(tokenizer, item: dict, max_source: int, max_answer: int) -> dict | None:
    """An arithmetic question with its answer as digit tokens; None when truncation cuts off an
    argument or the answer has too many digits."""
    encoded = pairs.encode(tokenizer, item["question"], item["context"], max_source)
    if any(pairs.token_range(encoded, pairs.SECOND, m.start, m.end) is None for m in item["arguments"]):
        return None
    target = [tokenizer.cls_token_id, *tokenizer.convert_tokens_to_ids(list(item["answer"])), tokenizer.sep_token_id]
    if len(target) > max_answer or tokenizer.unk_token_id in target:
        return None
    return {"input_ids": encoded.input_ids, "tag_mask": encoded.mask(), "answers": [], "task": "arithmetic",
            "target": target}


def arithmetic_items(questions: list[dict]) -> list[dict]:
    """The generated arithmetic questions over the distinct passages of SQuAD ``questions``
    (``numeric.questions``, told each passage's own questions and answers): ``question``,
    ``context``, ``title``, ``answer`` (text), ``operation``, ``template``, ``arguments``
    (``numeric.Mention``s of the passage) and ``asked`` (the passage's questions)."""
    by_context: dict[str, list[dict]] = {}
    for q in questions:
        by_context.setdefault(q["context"], []).append(q)
    items = []
    for context, group in by_context.items():
        asked = tuple((q["question"], q["answers"][0]) for q in group)
        items += [question_item(g, context, group[0]["title"], asked) for g in numeric.questions(context, asked)]
    return items


def balanced(items: list[dict], seed: int = 0) -> list[dict]:
    """As many items of each operation as the rarest operation has, drawn at random, in their order."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item["operation"], []).append(i)
    if not groups:
        return []
    size = min(len(g) for g in groups.values())
    rng = random.Random(seed)
    kept = sorted(i for g in groups.values() for i in rng.sample(g, size))
    return [items[i] for i in kept]


def windowed(item: dict, tokenizer, max_source: int) -> dict | None:
    """``item`` with its context cut to the window (``pairs.window``) that holds what it is
    about: a SQuAD question's first answer (its first whole-word occurrence), an arithmetic question's
    arguments, their offsets moved with it; None where that does not fit, or where the window
    leaves an arithmetic question no distractor number."""
    context = item["context"]
    if "arguments" in item:
        spans = [(m.start, m.end) for m in item["arguments"]]
    else:
        first = next(whole_words(item["answers"][0], context), None)
        if first is None:
            return None
        spans = [first.span()]
    cut = pairs.window(tokenizer, item["question"], context, spans, max_source)
    if cut is None:
        return None
    a, b = cut
    if "arguments" not in item or (a, b) == (0, len(context)):
        return {**item, "context": context[a:b]}
    moved = {m: dataclasses.replace(m, start=m.start - a, end=m.end - a) for m in item["arguments"]}
    generated = item["generated"]
    generated = dataclasses.replace(generated, arguments=tuple(moved[m] for m in generated.arguments),
                                    events=tuple((q, moved[m]) for q, m in generated.events))
    out = question_item(generated, context[a:b], item["title"], item["asked"])
    values = {m.value for m in numeric.mentions(out["context"])}
    return out if values - {m.value for m in out["arguments"]} else None


def question_item(generated: numeric.Question, context: str, title: str = "", asked=()) -> dict:
    return {"question": generated.question, "context": context, "title": title, "answer": generated.answer_text,
            "operation": generated.operation, "template": generated.template, "arguments": list(generated.arguments),
            "generated": generated, "asked": asked}


def squad_parts(config: NumReasonConfig) -> tuple[list[dict], list[dict]]:
    return squad.split_by_article(squad.load(), config.eval_share)


def window_items(items: list[dict], tokenizer, max_source: int) -> list[dict]:
    """``windowed`` of each item, those that fit, in order."""
    return [w for w in (windowed(i, tokenizer, max_source) for i in items) if w is not None]


def fitting(items: list[dict], tokenizer, max_source: int) -> list[dict]:
    """The items whose question and whole context fit in ``max_source`` subwords (GSM8K's, which
    chapter 6 does not cut: its problems are short), in order."""
    return [i for i in items if len(pairs.encode(tokenizer, i["question"], i["context"], 100_000).input_ids) <= max_source]


def training_examples(config: NumReasonConfig, tokenizer) -> list[dict]:
    """The span questions and (with arithmetic) the arithmetic questions of the training articles,
    each cut to its window, shuffled; with ``arithmetic_answers="shuffled"`` (the exposure
    control) the arithmetic questions' answers are permuted among them, so the encoder sees the
    same inputs and the generative head the same kind of targets, but no answer follows from its
    question."""
    rng = random.Random(config.seed)
    passages_in_order = squad_parts(config)[0]
    train_questions = passages_in_order[:]
    rng.shuffle(train_questions)
    # Tokenise only as many questions as are used: stop once enough examples are kept.
    made = (span_example(tokenizer, w, config.max_source) for w in
            (windowed(q, tokenizer, config.max_source) for q in train_questions) if w is not None)
    examples = multihead.first_made(made, config.span_examples)
    if "arithmetic" in config.tasks:
        items = window_items(arithmetic_items(passages_in_order), tokenizer, config.max_source)
        rng.shuffle(items)
        made = (arithmetic_example(tokenizer, item, config.max_source, config.max_answer) for item in items)
        arithmetic = multihead.first_made(made, config.arithmetic_examples)
        if config.arithmetic_answers == "shuffled":
            targets = [e["target"] for e in arithmetic]
            random.Random(config.seed).shuffle(targets)  # a generator of its own: the inputs' order as the model's
            arithmetic = [{**e, "target": t} for e, t in zip(arithmetic, targets)]
        examples += arithmetic
    rng.shuffle(examples)
    return examples


# Training ---------------------------------------------------------------------------------------

EXPERIMENT = multihead.Experiment("numreason", NumReasonConfig, heads, training_examples,
                                  lambda config: {"squad": sources.data_version("SQuAD")},
                                  ({"tasks": TASKS}, {"tasks": TASKS, "arithmetic_answers": "shuffled"}), __name__)
# build(config, encoder=None), train(config, progress, encoder), train_cached(config, progress),
# train_many(configs, workers), load(result), profile_configs(knobs):
# the three-head model and its exposure control (shuffled answers)
build, train, train_cached, load = EXPERIMENT.build, EXPERIMENT.train, EXPERIMENT.train_cached, EXPERIMENT.load
profile_configs, train_many = EXPERIMENT.profile_configs, EXPERIMENT.train_many


# Inference --------------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: MultiTaskModel, items: list[dict], max_source: int, batch_size: int = 32, progress: bool = True,
            desc: str = "predictions", at_least_one: bool = False) -> list[dict]:
    """Every head's output for each ``{"question", "context"}`` item, in one encoder pass:
    ``spans`` (the span head's, each ``{"part": "question" | "context", "start", "end",
    "text"}``), ``numbers`` (the passage's numbers inside the input, most likely tagged first: each
    ``{"text", "value", "score"}``, the score the highest P(B or I) of its tokens; each value once,
    at its best-scored mention), ``silent`` (the most probable tags mark no span; with
    ``at_least_one``, ``spans`` then holds the most probable single span: ``BIOTaggingHead.decode``
    for questions that have an answer), ``span_answer``
    (the spans' texts joined), ``generated`` (the generative head's number,
    None without one), ``p_generation`` (the type head's probability of generation), ``type``
    (its choice) and ``answer``: the chosen head's output."""
    tok = model.tokenizer
    out: list[dict | None] = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i]["question"]) + len(items[i]["context"]))
    for chunk in tqdm(list(multihead.batches(order, batch_size)), desc=desc, disable=not progress, leave=False):
        enc = pairs.encode_batch(tok, [items[i]["question"] for i in chunk], [items[i]["context"] for i in chunk],
                                 max_source)
        states = model.subword_states(enc.input_ids, enc.attention_mask)
        span_head = model.decoders["span"]
        tag_mask, logp = enc.mask(device=states.device), span_head(states)
        spans = span_head.decode(states, tag_mask, at_least_one=at_least_one)
        silent = ((logp.argmax(-1) == BIOTaggingHead.O) | ~tag_mask.bool()).all(-1).tolist()  # no tag marks a span
        tagged = (1 - logp[..., BIOTaggingHead.O].exp()).tolist()  # P(B or I) per token
        generated, p_generation = [None] * len(chunk), [0.0] * len(chunk)
        if "generation" in model.decoders:
            generative = model.decoders["generation"]
            ids = generative.generate(states, enc.attention_mask.to(states.device), tok.cls_token_id,
                                      tok.sep_token_id, max_new=generative.max_length - 1)
            generated = ["".join(tok.convert_ids_to_tokens(row)) for row in ids]
            p_generation = model.decoders["answer_type"](states).softmax(-1)[:, 1].tolist()
        for r, i in enumerate(chunk):
            row, found = enc.rows[r], []
            for s, e in spans[r]:
                part = "question" if row.parts[s] == pairs.FIRST else "context"
                text = items[i][part]
                a, b = pairs.word_span(text, *pairs.char_span(row, s, e))
                span = {"part": part, "start": a, "end": b, "text": text[a:b]}
                if b > a and span not in found:
                    found.append(span)
            numbers = []
            for m in numeric.mentions(items[i]["context"]):
                place = pairs.token_range(row, pairs.SECOND, m.start, m.end)
                if place is not None:
                    numbers.append({"text": m.text, "value": m.value, "score": max(tagged[r][place[0]:place[1] + 1])})
            numbers.sort(key=lambda n: -n["score"])
            best: dict[float, dict] = {}  # each value once, at its best-scored mention, best first
            for n in numbers:
                best.setdefault(n["value"], n)
            numbers = list(best.values())
            chosen = TYPES[int(p_generation[r] > 0.5)]
            span_answer = " ".join(s["text"] for s in found)
            out[i] = {"spans": found, "silent": silent[r], "numbers": numbers, "span_answer": span_answer,
                      "generated": generated[r], "p_generation": p_generation[r], "type": chosen,
                      "answer": generated[r] if chosen == "generation" else span_answer}
    return out
