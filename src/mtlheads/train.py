"""Single-task and multi-task fine-tuning, with the Stem Cell paper's recipe.

STL is MTL with one task. The recipe: AdamW, decoder learning rate 1e-3, encoder 5e-5, 10%
linear warm-up then linear decay, gradient clipping at 1, word dropout 0.2 (subwords replaced
by [MASK]), length-bucketed batches, the best dev checkpoint kept (dev score: the task's metric
for STL, the mean of the tasks' metrics for MTL).

MTL, ``mtl_mode="sample"`` (the paper): each step trains one task, sampled with probability
proportional to (its number of batches)^0.8, its loss weighted by
``w_t = sum_k avg5(L_k) / avg5(L_t)`` (moving averages of each task's last five losses).
``mtl_mode="joint"``: EWT5 annotates all tasks on the same sentences, so one encoder pass can
serve all of them; the step's loss is the sum of the tasks' losses with the same weights.
The steps run through the book's one training loop, ``optim.optimise``.
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Literal

import numpy as np
import torch

from mtlheads import cache, devices, encoder as encoder_module, optim, pool
from mtlheads.checks import Knob, check_fields
from mtlheads.data import ewt5
from mtlheads.encoder import Encoder, WordBatch, load_encoder
from mtlheads.gates import HardConcreteGates
from mtlheads.model import MultiTaskModel
from mtlheads.registry import RunKey
from mtlheads.runs import RunResult
from mtlheads.tasks import TASK_CLASSES, build_task, check_tasks


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run. Defaults are the paper's settings; profiles change only size knobs."""

    tasks: tuple[str, ...]
    encoder: str = "minilm"
    seed: int = 1
    epochs: float = 30.0
    batch_size: int = 32  # sentences per batch
    lr_decoder: float = 1e-3
    lr_encoder: float = 5e-5
    freeze_word_embeddings: bool = False  # not in the paper: a cheaper step for short runs
    srl_unary_loss: float = 0.0  # not in the paper: SRL's pruner also taught directly (tasks.srl)
    warmup: float = 0.1
    schedule: Literal["linear", "constant"] = "linear"  # after warm-up: linear decay to 0, or constant
    clip: float = 1.0
    word_dropout: float = 0.2
    mtl_mode: Literal["sample", "joint"] = "sample"
    # sampled MTL: ``epochs`` passes over the data per task (the paper: as many task updates as
    # each STL run, so n-task MTL makes n times its encoder updates), or ``stl``: as many encoder
    # updates as one STL run of ``epochs`` (each task then gets about 1/n of them)
    updates: Literal["epochs", "stl"] = "epochs"
    sampling_temperature: float = 0.8  # p_t proportional to batches_t ** 0.8
    loss_window: int = 5
    evaluations: int = 10  # dev evaluations over the run, evenly spaced
    eval_fractions: tuple[float, ...] | None = None  # instead: dev evaluations at these shares of the steps
    patience: int | None = None  # stop after this many evaluations without a better dev score
    gate_lambda: float | None = None  # Hard-Concrete head gates with this L0 weight; None: no gates
    lr_gates: float = 1e-3
    train_sentences: int | None = None  # None: all
    dev_sentences: int | None = None
    test_sentences: int | None = None
    device: str = "auto"  # 'auto', 'cpu', 'cuda' or 'cuda:N'; stored resolved (mtlheads.devices)
    bf16: bool = True  # bfloat16 autocast on CUDA; never on the CPU (stored False there)

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(check_tasks(self.tasks)))
        if len(self.tasks) < 2 or self.mtl_mode == "joint":
            object.__setattr__(self, "updates", "epochs")  # the same run either way: one name for it
        if isinstance(self.eval_fractions, list):  # from a profile's yaml
            object.__setattr__(self, "eval_fractions", tuple(self.eval_fractions))
        check_fields(self, TRAIN_RULES)
        devices.settle(self)

    @property
    def label(self) -> str:
        """The model's name (``registry.RunKey.label``): ``STL POS``, ``MTL-5 joint`` ..."""
        return RunKey.of(self).label


_SENTENCES = Knob("int", low=1, nullable=True)
TRAIN_RULES = {
    "tasks": None, "encoder": Knob("str"), "seed": Knob("int", low=0), "epochs": Knob("float", low=1e-9),
    "batch_size": Knob("int", low=1), "lr_decoder": Knob("float", low=0), "lr_encoder": Knob("float", low=0),
    "freeze_word_embeddings": Knob("bool"), "srl_unary_loss": Knob("float", low=0),
    "warmup": Knob("float", low=0, high=1, below_high=True), "schedule": Knob("str", choices=("linear", "constant")),
    "clip": Knob("float", low=1e-9), "eval_fractions": Knob("floats", low=1e-9, high=1, nullable=True),
    "word_dropout": Knob("float", low=0, high=1, below_high=True), "mtl_mode": Knob("str", choices=("sample", "joint")),
    "updates": Knob("str", choices=("epochs", "stl")),
    "sampling_temperature": Knob("float", low=0), "loss_window": Knob("int", low=1), "evaluations": Knob("int", low=1),
    "patience": Knob("int", low=1, nullable=True), "gate_lambda": Knob("float", low=0, nullable=True),
    "lr_gates": Knob("float", low=0), "train_sentences": _SENTENCES, "dev_sentences": _SENTENCES,
    "test_sentences": _SENTENCES, "device": None, "bf16": Knob("bool"),
}
RULES = TRAIN_RULES  # a profile's ``stem_cell`` section sets some of these fields (mtlheads.profiles)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_buckets(lengths: list, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar-length sentences: sort by length (ties broken at random), cut, shuffle.
    A length may be a tuple, compared in order (the trainer's: subwords, then words)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def word_dropout(batch: WordBatch, rate: float, mask_id: int, special_ids: set[int], generator) -> WordBatch:
    """Replace each non-special subword by [MASK] with probability ``rate``."""
    if rate <= 0:
        return batch
    ids = batch.input_ids
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_ids:
        special |= ids == s
    drop = (torch.rand(ids.shape, generator=generator) < rate) & ~special
    return WordBatch(ids.masked_fill(drop, mask_id), batch.attention_mask, batch.mean_pool, batch.sum_pool,
                     batch.word_mask, batch.num_words)


class LossBalancer:
    """Per-task weights from moving averages of the last ``window`` losses (the paper's weighting).

    Losses may be floats or 0-dim tensors. Tensors stay where they are (on a GPU, no step waits
    to read a loss back) and are averaged in float64, so the weights equal those of the same
    losses as Python floats to the last bit (``sum`` adds one after another either way)."""

    def __init__(self, tasks, window: int = 5):
        self.history = {t: deque(maxlen=window) for t in tasks}

    def update(self, task: str, loss) -> None:
        self.history[task].append(loss.detach().double() if isinstance(loss, torch.Tensor) else loss)

    def weight(self, task: str):
        averages = {t: sum(h) / len(h) for t, h in self.history.items() if h}
        if task not in averages or len(averages) < len(self.history):
            return 1.0  # until every task has a loss, weigh them equally
        return sum(averages.values()) / averages[task]


def sampling_probabilities(batches: dict[str, int], temperature: float) -> dict[str, float]:
    weights = {t: n ** temperature for t, n in batches.items()}
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()}


def eval_batch_size(device: torch.device) -> int:
    """Sentences an evaluation batch holds: 16 on the CPU, where a batch costs its padded
    subwords and batches of 16 in length order pad a tenth to a third less than batches of 64
    (``bench/bench_eval.py``: evaluations 1.1-1.3x faster); 64 on an accelerator, which small
    batches leave idle."""
    return 16 if torch.device(device).type == "cpu" else 64


@torch.no_grad()
def evaluate(model: MultiTaskModel, sentences: list[dict], batch_size: int | None = None) -> dict[str, dict[str, float]]:
    """Each task's metrics on ``sentences`` (decoding every task from one encoder pass per batch
    of ``batch_size`` sentences in length order; None: ``eval_batch_size`` of the model's device)."""
    batch_size = batch_size or eval_batch_size(devices.module_device(model))
    model.eval()
    predictions = {t: [None] * len(sentences) for t in model.decoders}
    order = model.encoder.length_order([s["tokens"] for s in sentences])
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        out = model.encode(model.encoder.tokenize([sentences[i]["tokens"] for i in idx]))  # moved to the model's device
        for name, decoder in model.decoders.items():
            for i, pred in zip(idx, decoder.decode(out.words, out.word_mask)):
                predictions[name][i] = pred
    return {name: decoder.score(predictions[name], [decoder.gold(s) for s in sentences], sentences)
            for name, decoder in model.decoders.items()}


def dev_score(config: TrainConfig, scores: dict[str, dict[str, float]]) -> float:
    """The task's metric (STL) or the mean of the tasks' metrics (MTL)."""
    return float(np.mean([scores[t][TASK_CLASSES[t].metric] for t in config.tasks]))


def corpus_split(corpus, split: str, limit: int | None) -> list[dict]:
    data = corpus[split]
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    return list(data)


def build_model(config: TrainConfig, train: list[dict], encoder: Encoder | None = None) -> MultiTaskModel:
    """The encoder named by the config (or the one given, e.g. a tiny test encoder) plus fresh
    decoders; the word embeddings frozen if the config says so."""
    encoder = encoder if encoder is not None else load_encoder(config.encoder)
    if config.freeze_word_embeddings:
        # about half of the encoder's weights: their gradient, clipping and AdamW update skipped
        encoder.freeze_word_embeddings()
    decoders = {t: build_task(t, train, encoder.hidden_size) for t in config.tasks}
    if "srl" in decoders:
        decoders["srl"].unary_weight = config.srl_unary_loss
    gates = HardConcreteGates(encoder.num_layers, encoder.num_heads) if config.gate_lambda is not None else None
    return MultiTaskModel(encoder, decoders, gates).to(devices.resolve(config.device))


def step_loss(model: MultiTaskModel, batch: WordBatch, targets: dict[str, dict], balancer: LossBalancer | None,
              gate_lambda: float | None, bf16: bool) -> torch.Tensor:
    """One step's loss: the batch (built on the host) and each chosen task's targets moved to the
    model's device in one call each, one encoder pass, each task's loss weighted by ``balancer``
    (None: weight 1), plus the gates' L0 penalty. Nothing here reads a value back to the host
    except SRL's loss, which matches gold pairs to the pruner's choices."""
    device = devices.module_device(model)
    with devices.autocast(device, bf16):
        out = model.encode(batch.to(device))
        loss = 0.0
        for name, gold in targets.items():
            task_loss = model.decoders[name].loss(out.words, out.word_mask, devices.move(gold, device)).float()
            weight = 1.0
            if balancer is not None:
                balancer.update(name, task_loss)
                weight = balancer.weight(name)
            loss = loss + (weight.float() if isinstance(weight, torch.Tensor) else weight) * task_loss
        if model.gates is not None:
            loss = loss + gate_lambda * model.gates.penalty()
    return loss


def evaluation_steps(config: TrainConfig, total_steps: int) -> set[int]:
    """The steps after which dev is evaluated: ``config.eval_fractions`` of the run's steps (at
    least step 1), or ``config.evaluations`` evenly spaced ones; the last step always."""
    if config.eval_fractions is not None:
        return {max(1, round(f * total_steps)) for f in config.eval_fractions} | {total_steps}
    return set(np.linspace(0, total_steps, config.evaluations + 1, dtype=int)[1:].tolist())


def planned_steps(config: TrainConfig, n_train: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of a run on ``n_train`` sentences: an epoch of sampled MTL
    is one pass over the data per task (with ``updates="stl"``: one pass in all, as STL's)."""
    batches_per_epoch = -(-n_train // config.batch_size)
    sampled = len(config.tasks) > 1 and config.mtl_mode == "sample" and config.updates == "epochs"
    steps_per_epoch = batches_per_epoch * (len(config.tasks) if sampled else 1)
    return steps_per_epoch, max(1, round(config.epochs * steps_per_epoch))


def train(config: TrainConfig, corpus=None, progress: bool = True, encoder: Encoder | None = None,
          on_step: Callable[[], None] | None = None) -> RunResult:
    """Fine-tune the encoder and decoders of ``config.tasks``; returns scores and the best weights.
    ``on_step`` is called after every optimiser step (a progress report from a worker process)."""
    set_seed(config.seed)
    corpus = corpus if corpus is not None else ewt5.load()
    train_set = corpus_split(corpus, "train", config.train_sentences)
    dev_set = corpus_split(corpus, "dev", config.dev_sentences)
    test_set = corpus_split(corpus, "test", config.test_sentences)
    model = build_model(config, train_set, encoder)
    enc = model.encoder
    model_device = devices.module_device(model)
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    tok = enc.tokenizer
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}

    # batches of similar subword counts (what the encoder computes on; words, what the decoders
    # pad to, break ties): 2% padding on chapter 2's sentences, against 17% by words alone
    lengths = list(zip(enc.subword_counts([s["tokens"] for s in train_set]), (len(s["tokens"]) for s in train_set)))
    batches_per_epoch = -(-len(train_set) // config.batch_size)
    multi = len(config.tasks) > 1
    steps_per_epoch, total_steps = planned_steps(config, len(train_set))
    probs = sampling_probabilities({t: batches_per_epoch for t in config.tasks}, config.sampling_temperature)

    gates = tuple(model.gates.parameters()) if model.gates is not None else ()
    encoder_params, decoder_params, trained = optim.split_parameters(model, exclude=gates)  # decoders start new
    optimizer = optim.adamw([{"params": encoder_params, "lr": config.lr_encoder},
                             {"params": decoder_params, "lr": config.lr_decoder}])
    gate_optimizer = torch.optim.Adam(model.gates.parameters(), lr=config.lr_gates) if model.gates is not None else None
    schedule = optim.warmup_then_decay(optimizer, total_steps, config.warmup, decay=config.schedule == "linear")
    balancer = LossBalancer(config.tasks, config.loss_window)
    eval_at = evaluation_steps(config, total_steps)

    result = RunResult(config, train_sentences=len(train_set))
    best, best_state, since_best = -np.inf, None, 0
    queue: list[list[int]] = []
    start = time.perf_counter()
    eval_seconds = 0.0

    def batch_loss(step: int):
        nonlocal queue
        if not queue:
            queue = length_buckets(lengths, config.batch_size, rng)
        sentences = [train_set[i] for i in queue.pop()]
        model.train()
        batch = word_dropout(enc.tokenize([s["tokens"] for s in sentences]), config.word_dropout,
                             tok.mask_token_id, special, generator)
        result.train_subwords += int(batch.attention_mask.sum())
        num_words = max(len(s["tokens"]) for s in sentences)
        if multi and config.mtl_mode == "sample":
            chosen = [rng.choices(list(probs), weights=list(probs.values()))[0]]
        else:
            chosen = list(config.tasks)
        targets = {name: model.decoders[name].targets(sentences, num_words) for name in chosen}
        loss = step_loss(model, batch, targets, balancer if multi else None, config.gate_lambda, config.bf16)
        return loss, {"loss": loss.detach()}

    def after_step(step: int) -> bool:
        """A dev evaluation where one is due; True when patience has run out."""
        nonlocal best, best_state, since_best, eval_seconds
        if on_step is not None:
            on_step()
        if step not in eval_at:
            return False
        devices.synchronize(model_device)  # the queued steps count as training time
        t0 = time.perf_counter()
        scores = evaluate(model, dev_set)
        eval_seconds += time.perf_counter() - t0
        score = dev_score(config, scores)
        result.dev_curve.append({"step": step, "epoch": step / steps_per_epoch,
                                 "seconds": time.perf_counter() - start - eval_seconds,
                                 "dev": {t: scores[t][TASK_CLASSES[t].metric] for t in config.tasks}})
        if score > best:
            best, since_best = score, 0
            best_state = devices.to_host(model.state_dict())
            result.best_step, result.dev = step, scores
            return False
        since_best += 1
        return config.patience is not None and since_best >= config.patience

    optimizers = [optimizer] + ([gate_optimizer] if gate_optimizer is not None else [])
    step = optim.optimise(total_steps, batch_loss, optimizers, schedule, trained, config.clip, model_device,
                          config.label, progress, after_step)
    result.steps = step
    result.train_seconds = time.perf_counter() - start - eval_seconds
    model.load_state_dict(best_state)
    result.test = evaluate(model, test_set)
    result.state_dict = best_state
    return result


def run_inputs(config: TrainConfig) -> dict[str, str]:
    """Versions of what a run reads: EWT5's data and the encoder's checkpoint."""
    return {"ewt5": ewt5.data_version(), "encoder": encoder_module.fingerprint(config.encoder)}


def train_cached(config: TrainConfig, corpus=None, progress: bool = True, cache_store: cache.RunCache | None = None,
                 on_step: Callable[[], None] | None = None) -> RunResult:
    """``train`` through the run cache: the same config, data, encoder and code return the stored
    run (the code: this module's import closure)."""
    return cache.cached("train", asdict(config), lambda: train(config, corpus, progress, on_step=on_step),
                        inputs=run_inputs(config), code=[sys.modules[__name__]], cache=cache_store)


def is_cached(config: TrainConfig, cache_store: cache.RunCache | None = None) -> bool:
    return cache.has("train", asdict(config), run_inputs(config), [sys.modules[__name__]], cache_store)


def _train_job(config: TrainConfig, corpus, on_step: Callable[[], None] | None) -> RunResult:
    return train_cached(config, corpus, progress=False, on_step=on_step)


def train_job(config: TrainConfig, n_train: int, after: tuple[int, ...] = (), keep: bool = True) -> pool.Job:
    """The ``pool.Job`` of ``train_cached(config)`` on ``n_train`` available sentences."""
    steps = planned_steps(config, min(config.train_sentences or n_train, n_train))[1]
    return pool.Job(_train_job, is_cached, config, steps, after, keep)


def train_many(configs: list[TrainConfig], corpus=None, workers: int = 1) -> list[RunResult]:
    """``train_cached`` for every config, in order; the runs not cached train ``workers`` at a
    time in worker processes, the longest first, with one progress bar over their steps
    (``pool.run_jobs``). At the workers' thread count a one-worker run gives the same weights to
    the bit; at another, Adam's step can turn a rounding difference in a tiny gradient into one of
    up to the learning rate. Runs on a GPU train one after another: its kernels, not the host's
    cores, are the limit."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    corpus = corpus if corpus is not None else ewt5.load()
    if any(c.device != "cpu" for c in configs):
        workers = 1
    jobs = [train_job(c, len(corpus["train"])) for c in configs]
    return pool.run_jobs(jobs, corpus, workers, desc="runs")


def load_model(result: RunResult, corpus=None, device: str | None = None,
               encoder: Encoder | None = None) -> MultiTaskModel:
    """Rebuild a trained model from a ``RunResult`` (label sets are re-read from the same data),
    on ``device`` (None: the device it was trained on); ``encoder`` (a test's tiny one) gives the
    architecture instead of the config's named encoder, its weights then replaced."""
    corpus = corpus if corpus is not None else ewt5.load()
    model = build_model(result.config, corpus_split(corpus, "train", result.config.train_sentences), encoder)
    if device is not None:
        model.to(devices.resolve(device))
    model.load_state_dict(result.state_dict)
    model.eval()
    return model
