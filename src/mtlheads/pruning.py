"""Chapter 3's gated phase: Hard-Concrete head gates put on a trained model, along a lambda path.

``gate_path`` takes a trained, ungated Stem Cell model (chapter 2's run of ``base``, from the
run cache), puts a fresh gate on every head (``init``: Glorot-uniform log-alphas, as the
paper's code), and trains only the gates (Adam, ``lr_gates``) on the model's own tasks for
``steps`` batches at each L0 weight of ``lambdas``, in increasing order, each stage starting
where the last ended (a warm-started regularisation path, as for the lasso). The model's
weights stay those of the trained run and its dropout is off, so the gates choose among the
heads as fine-tuning left them (Michel et al. and Voita et al. also prune trained models).

A path records the evaluation gate values every ``record_every`` steps, and at each stage's end
the heads kept and the dev scores. ``survival`` (the share of the path a head stays open) orders
the heads by how long they resist the penalty: the closing order chapter 3 compares across
tasks, at every sparsity at once instead of at one cut.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from mtlheads import cache, devices, pool
from mtlheads.checks import Knob, check_fields
from mtlheads.data import ewt5
from mtlheads.gates import INITS, OPEN_THRESHOLD, FixedGates, HardConcreteGates
from mtlheads.tasks import TASK_CLASSES
from mtlheads.encoder import Encoder
from mtlheads.runs import RunResult
from mtlheads.train import (TrainConfig, corpus_split, evaluate, length_buckets, load_model, run_inputs,
                            set_seed, train_cached, train_job)

PATH_LAMBDAS = (2e-4, 1e-3, 1e-2, 0.1, 1.0)  # every value the paper gives a task (or MTL) is on it


@dataclass(frozen=True)
class GatePathConfig:
    """A gated phase on the trained model of ``base`` (an ungated ``TrainConfig``)."""

    base: TrainConfig
    lambdas: tuple[float, ...] = PATH_LAMBDAS  # increasing L0 weights, one stage each
    steps: int = 30  # gate updates per lambda
    lr_gates: float = 0.05
    init: Literal["constant", "xavier"] = "xavier"
    record_every: int = 5  # gate values recorded every this many steps
    dev_sentences: int | None = None  # dev sentences scored after each stage (None: the base's)

    def __post_init__(self):
        if not isinstance(self.base, TrainConfig) or self.base.gate_lambda is not None:
            raise ValueError(f"a gate path starts from a trained ungated TrainConfig, got base={self.base!r}")
        lambdas = tuple(float(x) for x in self.lambdas)
        if not lambdas or any(b <= a for a, b in zip(lambdas, lambdas[1:])) or lambdas[0] < 0:
            raise ValueError(f"lambdas must be non-negative and increasing, got {self.lambdas!r}")
        object.__setattr__(self, "lambdas", lambdas)
        check_fields(self, PATH_RULES)

    @property
    def label(self) -> str:
        return self.base.label


PATH_RULES = {"base": None, "lambdas": None, "steps": Knob("int", low=1), "lr_gates": Knob("float", low=1e-12),
              "init": Knob("str", choices=INITS), "record_every": Knob("int", low=1),
              "dev_sentences": Knob("int", low=1, nullable=True)}


@dataclass
class GatePath:
    """What a gated phase left: gate values over the path and, per stage, heads kept and dev."""

    config: GatePathConfig
    record_steps: list[int] = field(default_factory=list)
    records: np.ndarray | None = None  # (records, layers, heads) evaluation gate values
    stages: list[dict] = field(default_factory=list)  # lambda, step, kept (layers, heads), dev per task
    base_dev: dict[str, float] = field(default_factory=dict)  # the ungated model's, on the same dev sentences
    seconds: float = 0.0

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.config.base.tasks

    def survival(self) -> np.ndarray:
        """(layers, heads): the share of recorded steps each head is open (gate > 1e-3)."""
        return (self.records > OPEN_THRESHOLD).mean(0)

    def ranking(self) -> np.ndarray:
        """(layers, heads) ranks, 0 the head that stays open longest: by survival, ties broken
        by the last gate value, then by position."""
        survival, last = self.survival().ravel(), self.records[-1].ravel()
        order = np.lexsort((np.arange(survival.size), -last, -survival))
        ranks = np.empty(survival.size, dtype=int)
        ranks[order] = np.arange(survival.size)
        return ranks.reshape(self.records.shape[1:])

    def top(self, m: int) -> np.ndarray:
        """Boolean (layers, heads): the ``m`` heads that stay open longest."""
        return self.ranking() < m

    def kept(self, lam: float) -> np.ndarray:
        """Boolean (layers, heads): the heads open at the end of the stage of L0 weight ``lam``."""
        for stage in self.stages:
            if np.isclose(stage["lambda"], lam):
                return stage["kept"]
        raise ValueError(f"lambda {lam!r} is not on this path; its lambdas: {list(self.config.lambdas)}")


def _metric(scores: dict, task: str) -> float:
    return float(scores[task][TASK_CLASSES[task].metric])


def gate_path(config: GatePathConfig, corpus=None, progress: bool = True, base: RunResult | None = None,
              encoder: Encoder | None = None, on_step: Callable[[], None] | None = None) -> GatePath:
    """Run the gated phase of ``config`` on the trained model of ``base`` (default: the run of
    ``config.base`` from the run cache, trained if absent; ``encoder``: see ``train.load_model``).
    ``on_step`` is called after every gate update (a progress report from a worker process)."""
    corpus = corpus if corpus is not None else ewt5.load()
    base = base if base is not None else train_cached(config.base, corpus, progress)
    set_seed(config.base.seed)  # the gates' noise: the same path whatever ran before in the process
    model = load_model(base, corpus, encoder=encoder)  # evaluation mode: no dropout, no word dropout
    model.requires_grad_(False)
    device = devices.module_device(model)
    dev_set = corpus_split(corpus, "dev", config.dev_sentences or config.base.dev_sentences)
    ungated = evaluate(model, dev_set)  # before the gates, on the sentences the stages are scored on
    generator = torch.Generator().manual_seed(config.base.seed)
    model.gates = HardConcreteGates(model.encoder.num_layers, model.encoder.num_heads, init=config.init,
                                    generator=generator).to(device)
    model.gates.train()  # sampled gates; the rest stays in evaluation mode
    optimizer = torch.optim.Adam(model.gates.parameters(), lr=config.lr_gates)
    train_set = corpus_split(corpus, "train", config.base.train_sentences)
    enc = model.encoder
    lengths = list(zip(enc.subword_counts([s["tokens"] for s in train_set]), (len(s["tokens"]) for s in train_set)))
    rng, queue = random.Random(config.base.seed), []
    path = GatePath(config, base_dev={t: _metric(ungated, t) for t in config.base.tasks})
    records, step, start = [], 0, time.perf_counter()
    bar = tqdm(total=config.steps * len(config.lambdas), desc=f"{config.label} gates", disable=not progress)
    for lam in config.lambdas:
        for _ in range(config.steps):
            if not queue:
                queue = length_buckets(lengths, config.base.batch_size, rng)
            sentences = [train_set[i] for i in queue.pop()]
            num_words = max(len(s["tokens"]) for s in sentences)
            with devices.autocast(device, config.base.bf16):
                out = model.encode(enc.tokenize([s["tokens"] for s in sentences]).to(device))
                loss = lam * model.gates.penalty()
                for name, decoder in model.decoders.items():
                    gold = devices.move(decoder.targets(sentences, num_words), device)
                    loss = loss + decoder.loss(out.words, out.word_mask, gold).float()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update(1)
            if on_step is not None:
                on_step()
            if step % config.record_every == 0:
                records.append(model.gates.values().cpu().numpy())
                path.record_steps.append(step)
        scores = evaluate(model, dev_set)
        model.gates.train()
        path.stages.append({"lambda": lam, "step": step, "kept": model.gates.open_mask().cpu().numpy(),
                            "dev": {t: _metric(scores, t) for t in config.base.tasks}})
    bar.close()
    path.records = np.stack(records)
    path.seconds = time.perf_counter() - start
    return path


def gate_path_cached(config: GatePathConfig, corpus=None, progress: bool = True,
                     on_step: Callable[[], None] | None = None) -> GatePath:
    return cache.cached("gatepath", asdict(config), lambda: gate_path(config, corpus, progress, on_step=on_step),
                        **_cache_args(config))


def _cache_args(config: GatePathConfig) -> dict:
    return {"inputs": run_inputs(config.base), "code": [sys.modules[__name__]]}


def is_cached(config: GatePathConfig) -> bool:
    return cache.has("gatepath", asdict(config), **_cache_args(config))


def _path_job(config: GatePathConfig, corpus, on_step: Callable[[], None] | None) -> GatePath:
    return gate_path_cached(config, corpus, progress=False, on_step=on_step)


def gate_paths(configs: list[GatePathConfig], corpus=None, workers: int = 1) -> list[GatePath]:
    """``gate_path_cached`` for every config, in order, ``workers`` at a time (``pool.run_jobs``):
    the trained runs they start from first (each once; those not in the run cache are trained,
    then left there), each path once its run is done; one progress bar over them all."""
    corpus = corpus if corpus is not None else ewt5.load()
    bases = list(dict.fromkeys(c.base for c in configs))
    if any(b.device != "cpu" for b in bases):
        workers = 1  # a GPU runs one computation at a time (``train.train_many``)
    jobs = [train_job(b, len(corpus["train"]), keep=False) for b in bases]
    jobs += [pool.Job(_path_job, is_cached, c, c.steps * len(c.lambdas), after=(bases.index(c.base),))
             for c in configs]
    return pool.run_jobs(jobs, corpus, workers, desc="trained runs and gate paths")[len(bases):]


def masked_scores(config: TrainConfig, masks: list[np.ndarray], corpus=None, sentences: int | None = None,
                  base: RunResult | None = None, encoder: Encoder | None = None) -> list[dict]:
    """Dev scores (each task's metric) of the trained model of ``config`` (or ``base``) with each
    0/1 head mask (layers, heads) applied, on the first ``sentences`` dev sentences (None: the
    config's)."""
    corpus = corpus if corpus is not None else ewt5.load()
    model = load_model(base if base is not None else train_cached(config, corpus), corpus, encoder=encoder)
    dev_set = corpus_split(corpus, "dev", sentences or config.dev_sentences)
    out = []
    for mask in masks:
        model.gates = FixedGates(torch.as_tensor(mask, dtype=torch.float32)).to(devices.module_device(model))
        scores = evaluate(model, dev_set)
        out.append({t: _metric(scores, t) for t in config.tasks})
    model.gates = None
    return out


# Statistics on gate maps ---------------------------------------------------------------------

def consistency(first: np.ndarray, second: np.ndarray, third: np.ndarray) -> float:
    """The Stem Cell paper's run consistency: the square root of the adjusted R^2 of a linear fit
    of ``third``'s gate map on ``first``'s and ``second``'s (all heads as points); 0 when the
    adjusted R^2 is negative, NaN when ``third`` is constant."""
    y = np.asarray(third, dtype=float).ravel()
    x = np.column_stack([np.ones_like(y), np.asarray(first, float).ravel(), np.asarray(second, float).ravel()])
    total = ((y - y.mean()) ** 2).sum()
    if total == 0:
        return float("nan")
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = ((y - x @ coef) ** 2).sum()
    n, p = len(y), 2
    adjusted = 1 - (residual / total) * (n - 1) / (n - p - 1)
    return float(np.sqrt(max(adjusted, 0.0)))


def pair_coincidences(masks: np.ndarray) -> np.ndarray:
    """For boolean masks (..., tasks, heads): the (task pair, head) coincidences, i.e. the sum
    over heads of k(k-1)/2 for a head kept by k tasks."""
    k = masks.sum(-2)
    return (k * (k - 1) // 2).sum(-1)


def layer_stratified_test(masks: dict[str, np.ndarray], permutations: int = 10000, seed: int = 0) -> dict:
    """Do the tasks keep the same heads beyond what the number each keeps in each layer explains?
    Statistic: ``pair_coincidences``. Null: each task's kept heads shuffled within each layer
    (its count per layer fixed), so a preference for some layers that every task shares, or any
    task-independent preference of that kind, is in the null. One-sided p (observed >= null)."""
    stack = np.stack([np.asarray(m, bool) for m in masks.values()])  # (tasks, layers, heads)
    n_tasks, layers, heads = stack.shape
    rng = np.random.default_rng(seed)
    counts = stack.sum(-1)  # (tasks, layers)
    ranks = rng.random((permutations, n_tasks, layers, heads)).argsort(-1).argsort(-1)
    null = ranks < counts[None, :, :, None]  # within each layer, the first c heads of a random order
    null_stat = pair_coincidences(null.reshape(permutations, n_tasks, -1))
    observed = int(pair_coincidences(stack.reshape(n_tasks, -1)))
    return {"statistic": observed, "null_mean": float(null_stat.mean()), "null_sd": float(null_stat.std()),
            "excess": observed - float(null_stat.mean()),
            "p_value": float((1 + (null_stat >= observed).sum()) / (1 + permutations))}


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's correlation of two head rankings (or any two maps, ranked with ties averaged)."""
    from scipy import stats

    return float(stats.spearmanr(np.ravel(a), np.ravel(b)).statistic)


def same_layer_draws(mask: np.ndarray, draws: int, seed: int = 0) -> list[np.ndarray]:
    """``draws`` random masks with as many heads in each layer as ``mask`` has."""
    rng = np.random.default_rng(seed)
    mask = np.asarray(mask, bool)
    out = []
    for _ in range(draws):
        drawn = np.zeros_like(mask)
        for layer, count in enumerate(mask.sum(-1)):
            drawn[layer, rng.choice(mask.shape[1], size=int(count), replace=False)] = True
        out.append(drawn)
    return out
