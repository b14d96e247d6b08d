"""Training a shared encoder with several heads on mixed batches (chapters 6 and 7).

A model passed to ``fit`` has ``losses(batch) -> {head: loss}``: one encoder pass over a batch
whose examples belong to different heads, each head's loss over its own rows. The step's loss
is the sum. Pretrained parameters and new ones (the heads' fresh layers) get their own learning
rates, with a linear warm-up then linear decay. The steps run through the book's one training
loop, ``optim.optimise``, as the Stem Cell trainer's do.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import itertools
import random
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from mtlheads import cache, devices, optim, pool, profiles
from mtlheads.encoder import fingerprint, load_encoder
from mtlheads.checks import Knob
from mtlheads.model import MultiTaskModel
from mtlheads.runs import RunResult

# The fields every multi-head run's config shares (chapters 6 and 7), with their valid values.
RUN_RULES = {
    "tasks": None, "encoder": Knob("str"), "seed": Knob("int", low=0), "epochs": Knob("float", low=1e-9),
    "batch_size": Knob("int", low=1), "lr": Knob("float", low=0), "lr_new": Knob("float", low=0),
    "warmup": Knob("float", low=0, high=1, below_high=True), "clip": Knob("float", low=1e-9),
    "max_source": Knob("int", low=16), "decoder_layers": Knob("int", low=1), "frozen_layers": Knob("int", low=0),
    "eval_share": Knob("float", low=1e-9, high=1, below_high=True), "device": None, "bf16": Knob("bool"),
}


def built(heads_of, config, encoder=None) -> MultiTaskModel:
    """The ``MultiTaskModel`` of ``config``: torch seeded by ``config.seed``, the encoder the one
    given (a tiny test encoder, say) or ``config.encoder`` loaded, the heads and their routes
    from ``heads_of(encoder, config)``, the embeddings and bottom ``config.frozen_layers`` layers
    frozen; on the config's device."""
    torch.manual_seed(config.seed)
    encoder = encoder if encoder is not None else load_encoder(config.encoder)
    heads, routes = heads_of(encoder, config)
    encoder.freeze_bottom(config.frozen_layers)
    return MultiTaskModel(encoder, heads, routes=routes).to(devices.resolve(config.device))


def profile_configs(config_class, knobs: dict, section: str, settings: tuple[dict, ...]) -> list:
    """One ``config_class`` per seed of a profile and per setting of ``settings`` (in that
    order; each a mapping of the fields that make the setting, its ``tasks`` say): the fields the
    profile's ``section`` sets, with its encoder, device and bf16; the other fields keep their
    defaults."""
    chosen = profiles.section_knobs(knobs, section)
    return [config_class(encoder=knobs["encoder"], seed=seed, device=knobs["device"], bf16=knobs["bf16"],
                         **chosen, **setting) for seed in knobs["seeds"] for setting in settings]


def first_made(made, limit: int | None) -> list:
    """The first ``limit`` items of ``made`` that are not None (None: all). ``made`` is a lazy
    generator of examples (None where one does not fit), so only as many are built as are kept."""
    return list(itertools.islice((e for e in made if e is not None), limit))


def batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def fit(model: MultiTaskModel, examples: list, *, epochs: float, batch_size: int, lr: float, lr_new: float,
        warmup: float, clip: float, seed: int, desc: str, progress: bool = True, bf16: bool = False) -> dict:
    """Train ``model`` in place on shuffled batches of ``examples`` (``model.collate`` makes
    them); its ``new_parameters()`` get ``lr_new``, the other trainable ones ``lr``. Batches are collated on the host and moved to the
    model's device; with ``bf16`` on CUDA the forward pass runs under bfloat16 autocast. Returns
    ``steps``, ``train_seconds`` and ``losses`` (per step, the float loss of each head, read back
    once at the end)."""
    rng = random.Random(seed)
    total = max(1, round(epochs * -(-len(examples) // batch_size)))
    pretrained, new, trained = optim.split_parameters(model)
    optimizer = optim.adamw([{"params": pretrained, "lr": lr}, {"params": new, "lr": lr_new}])
    schedule = optim.warmup_then_decay(optimizer, total, warmup)
    device = devices.module_device(model)
    model.train()
    losses = []
    order: list[int] = []

    def batch_loss(step: int):
        nonlocal order
        if not order:
            order = list(range(len(examples)))
            rng.shuffle(order)
        chosen, order = order[:batch_size], order[batch_size:]
        batch = devices.move(model.collate([examples[i] for i in chosen]), device)
        with devices.autocast(device, bf16):
            parts = {t: v.float() for t, v in model.losses(batch).items()}
        losses.append({t: v.detach() for t, v in parts.items()})
        return sum(parts.values()), losses[-1]

    start = time.perf_counter()
    optim.optimise(total, batch_loss, [optimizer], schedule, trained, clip, device, desc, progress)
    seconds = time.perf_counter() - start
    model.eval()
    return {"steps": total, "train_seconds": seconds, "losses": [{t: float(v) for t, v in d.items()} for d in losses]}


def train_run(model: MultiTaskModel, config, examples: list, progress: bool = True) -> RunResult:
    """``fit`` a multi-head ``model`` on ``examples`` with the optimisation settings of ``config``
    (``epochs``, ``batch_size``, ``lr``, ``lr_new``, ``warmup``, ``clip``, ``seed``, ``label``,
    ``bf16``); its ``new_parameters()`` get ``lr_new``. The trained weights in a ``RunResult``,
    with the examples per task."""
    run = fit(model, examples, epochs=config.epochs,
              batch_size=config.batch_size, lr=config.lr, lr_new=config.lr_new, warmup=config.warmup, clip=config.clip,
              seed=config.seed, desc=config.label, progress=progress, bf16=config.bf16)
    counts = collections.Counter(e["task"] for e in examples)
    return RunResult(config, steps=run["steps"], train_seconds=run["train_seconds"],
                     examples={t: counts[t] for t in config.tasks}, losses=run["losses"],
                     state_dict=devices.to_host(model.state_dict()))


def restored(model: nn.Module, result: RunResult) -> nn.Module:
    """``model`` (built from ``result.config``, on its device) with the trained weights, in eval mode."""
    model.load_state_dict(result.state_dict)
    model.eval()
    return model


@dataclass(frozen=True)
class Experiment:
    """A multi-head experiment (chapters 6 and 7): its profile ``section`` (also the run cache's
    name for its runs), config class, ``heads(encoder, config) -> (heads, routes)``,
    ``examples(config, tokenizer)`` (its training examples), ``inputs(config)`` (the versions of
    the data it reads), its ``settings`` (the config fields of each model a profile trains, the
    model first, then its control) and ``module`` (whose import closure versions its runs' code). The five steps every
    such experiment offers are these methods, once."""

    section: str
    config_class: type
    heads: Callable
    examples: Callable
    inputs: Callable
    settings: tuple[dict, ...]
    module: str

    def build(self, config, encoder=None) -> MultiTaskModel:
        return built(self.heads, config, encoder)

    def train(self, config, progress: bool = True, encoder=None) -> RunResult:
        model = self.build(config, encoder)
        return train_run(model, config, self.examples(config, model.tokenizer), progress)

    def train_cached(self, config, progress: bool = True) -> RunResult:
        """``train`` through the run cache, keyed also by the data's versions and the encoder's checkpoint."""
        return cache.cached(self.section, dataclasses.asdict(config), lambda: self.train(config, progress),
                            inputs=self._inputs(config), code=[self.module])

    def is_cached(self, config) -> bool:
        """Whether ``train_cached(config)`` would read its run from the cache."""
        return cache.has(self.section, dataclasses.asdict(config), self._inputs(config), [self.module])

    def train_many(self, configs: list, workers: int = 1) -> list[RunResult]:
        """``train_cached`` of every config, in order; those not cached train ``workers`` at a time
        in worker processes (``pool.run_jobs``; on two cores, one thread each: 1.05x the throughput
        of one two-thread run after another in ``bench/bench_experiment_workers.py``, 1.14x for
        chapter 8's `default` models), with one progress bar over the models. Runs on a GPU train
        one after another."""
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        if any(c.device != "cpu" for c in configs):
            workers = 1
        jobs = [pool.Job(_experiment_job, _experiment_cached, (self.module, c), 1) for c in configs]
        return pool.run_jobs(jobs, None, workers, desc="models")

    def _inputs(self, config) -> dict[str, str]:
        return {**self.inputs(config), "encoder": fingerprint(config.encoder)}

    def load(self, result: RunResult) -> MultiTaskModel:
        return restored(self.build(result.config), result)

    def profile_configs(self, knobs: dict) -> list:
        """The model and its control for every seed of a profile, from the profile's section."""
        return profile_configs(self.config_class, knobs, self.section, self.settings)


def _experiment(module: str) -> Experiment:
    return importlib.import_module(module).EXPERIMENT


def _experiment_job(job: tuple[str, object], corpus, on_step) -> RunResult:
    """A ``pool.Job``'s run: ``(module, config)`` trained through the run cache by the module's
    ``EXPERIMENT`` (a name and a config cross to a worker process; the experiment's functions need
    not), with a bar over its steps where it runs in the parent."""
    module, config = job
    result = _experiment(module).train_cached(config, progress=not pool.in_worker())
    if on_step is not None:
        on_step()
    return result


def _experiment_cached(job: tuple[str, object]) -> bool:
    module, config = job
    return _experiment(module).is_cached(config)
