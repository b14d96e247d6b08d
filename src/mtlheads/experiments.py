"""The runs a chapter asks for, built from a profile's knobs, and the tables made from them."""

from __future__ import annotations

import sys

from dataclasses import asdict

import numpy as np
import pandas as pd
import torch

from tqdm.auto import tqdm

from mtlheads import cache, devices, patching, probes, profiles, pruning, verdicts
from mtlheads.data import ewt5
from mtlheads.encoder import Encoder, fingerprint, load_encoder
from mtlheads.pruning import GatePath, GatePathConfig
from mtlheads.registry import MTL, MTL_JOINT, MTL_STL_UPDATES, PRETRAINED, RunKey
from mtlheads.tasks import CONTROL_TASKS, TASK_CLASSES, TASKS, build_task
from mtlheads.train import (TrainConfig, RunResult, corpus_split, evaluate, load_model, run_inputs, train_cached,
                            train_many)

def run_knobs(knobs: dict) -> dict:
    """The ``TrainConfig`` fields a profile sets for every Stem Cell run: its ``stem_cell``
    section (the scale, and the recipe changes short runs need), its device and bf16."""
    return {**profiles.section_knobs(knobs, "stem_cell"), "device": knobs["device"], "bf16": knobs["bf16"]}


def stl_mtl_seeds(knobs: dict) -> list[int]:
    """Chapter 2's seeds: ``stl_mtl_seeds``, or the book's ``seeds`` when that is null. The later
    chapters use ``seeds``, so they find their models of chapter 2 in the run cache."""
    return list(knobs["stl_mtl_seeds"] or knobs["seeds"])


def stem_cell_runs(knobs: dict) -> dict[RunKey, TrainConfig]:
    """Every Stem Cell run a profile asks for, by key, at its scale (``run_knobs``): chapter 2's
    STL, MTL-5 and MTL-5 joint runs for each of its seeds; for each of the book's seeds the STL
    and MTL-5 runs chapters 4-5 probe (chapter 2's own where the seeds agree); the task pairs of
    ``pairwise_mtl`` (``pairwise_keys``); chapter 3's control-task STL runs (``control_keys``),
    whose gated phases, like the other models', start from the trained run (``pruning``). The
    chapters select their runs from this one table."""
    scale = run_knobs(knobs)
    keys = stl_mtl_keys(knobs) + pairwise_keys(knobs) + control_keys(knobs)

    def config(key: RunKey) -> TrainConfig:
        return TrainConfig(**{**scale, "tasks": key.tasks, "encoder": knobs["encoder"], "seed": key.seed,
                              "mtl_mode": key.mtl_mode, "updates": key.updates})

    return {key: config(key) for key in dict.fromkeys(keys)}


def stl_mtl_keys(knobs: dict) -> list[RunKey]:
    """Chapter 2's runs: for each of its seeds an STL run per task and the two MTL-5 runs that make
    as many encoder updates as one STL run (joint; sampled with ``updates="stl"``), and with
    ``paper_mtl`` the paper's MTL-5 (sampled, the STL runs' epochs per task: five times the
    updates); then the STL and MTL-5 joint runs of the book's seeds (chapters 4-5 probe them)."""
    keys = [key for seed in stl_mtl_seeds(knobs) for key in [RunKey.stl(t, seed) for t in TASKS] + [
        RunKey.mtl(seed, mtl_mode="joint"), RunKey.mtl(seed, updates="stl")] + ([RunKey.mtl(seed)] if knobs["paper_mtl"] else [])]
    keys += [key for seed in knobs["seeds"] for key in [RunKey.stl(t, seed) for t in TASKS] + [probed_mtl(seed)]]
    return list(dict.fromkeys(keys))


def pairwise_keys(knobs: dict) -> list[RunKey]:
    """The task-pair MTL runs ``pairwise_mtl`` asks for (``all``: every pair; a task's name: the
    four pairs with it; ``none``), for each of chapter 2's seeds. A pair trains as the MTL-5 model
    chapters 4-5 probe does (``probed_mtl``: joint, as many encoder updates as one STL run), so
    that STL, a pair and MTL-5 differ in their tasks only."""
    which = knobs.get("pairwise_mtl") or "none"
    pairs = [(a, b) for i, a in enumerate(TASKS) for b in TASKS[i + 1:] if which == "all" or which in (a, b)]
    return [RunKey.mtl(seed, pair, mtl_mode="joint") for seed in stl_mtl_seeds(knobs) for pair in pairs]


def stl_mtl_configs(knobs: dict) -> list[TrainConfig]:
    """The configs of ``stl_mtl_keys``, from the one run table."""
    runs = stem_cell_runs(knobs)
    return [runs[key] for key in stl_mtl_keys(knobs)]


def word_embedding_share(encoder: str) -> float:
    """The fraction of the encoder's weights in its word-embedding matrix (what freezing it spares)."""
    return load_encoder(encoder).word_embedding_share()


def run_all(configs: list[TrainConfig], corpus=None, workers: int = 1) -> list[RunResult]:
    """Train (or fetch from the run cache) every config, in order, ``workers`` runs at a time."""
    return train_many(configs, corpus, workers)


def setting(result: RunResult) -> str:
    """``STL``, ``MTL-5`` or ``MTL-5 joint``: the column a run belongs to (``RunKey.setting``)."""
    return RunKey.of(result.config).setting


def score_table(results: list[RunResult], split: str = "test") -> pd.DataFrame:
    """Per task: mean and standard deviation over seeds of each setting, and each MTL's difference to STL."""
    rows = []
    for r in results:
        for task, score in r.main_scores(split).items():
            rows.append({"task": task, "setting": setting(r), "seed": r.config.seed, "score": score})
    long = pd.DataFrame(rows)
    stats = long.groupby(["task", "setting"])["score"].agg(["mean", "std", "count"]).reset_index()
    table = stats.pivot(index="task", columns="setting", values=["mean", "std"])
    table = table.reindex([t for t in TASKS if t in table.index])
    out = pd.DataFrame(index=table.index)
    settings = [s for s in ("STL", MTL_JOINT, MTL_STL_UPDATES, MTL) if ("mean", s) in table.columns]
    for s in settings:
        out[f"{s}"] = table[("mean", s)]
        out[f"{s} sd"] = table[("std", s)]
    for s in settings[1:]:
        out[f"{s} - STL"] = out[s] - out["STL"]
    out.insert(0, "metric", [TASK_CLASSES[t].metric for t in out.index])
    return out


def seed_spread(table: pd.DataFrame) -> dict:
    """Of ``score_table``'s standard deviations over seeds: the mean, the largest, and where
    (``"NER STL"``); NaN with one seed."""
    sds = table[[c for c in table.columns if c.endswith(" sd")]].stack()
    if sds.empty or sds.isna().all():
        return {"mean": float("nan"), "max": float("nan"), "where": "one seed: none"}
    task, column = sds.idxmax()
    return {"mean": float(sds.mean()), "max": float(sds.max()), "where": f"{task.upper()} {column[:-3]}"}


def dev_curves(results: list[RunResult]) -> pd.DataFrame:
    """Long table of dev scores: task, setting, seed, epoch, score."""
    rows = [{"task": task, "setting": setting(r), "seed": r.config.seed, "epoch": point["epoch"], "score": score}
            for r in results for point in r.dev_curve for task, score in point["dev"].items()]
    return pd.DataFrame(rows)


def timing_table(results: list[RunResult]) -> pd.DataFrame:
    """Training time and throughput per model (mean over seeds)."""
    rows = [{"model": r.config.label, "seed": r.config.seed, "train seconds": r.train_seconds, "steps": r.steps,
             "subwords/s": r.train_subwords / max(r.train_seconds, 1e-9), "best step": r.best_step}
            for r in results]
    return pd.DataFrame(rows).groupby("model", sort=False).mean(numeric_only=True).drop(columns="seed")


def all_scores(results: list[RunResult], split: str = "test") -> pd.DataFrame:
    """Every metric of every run: one row per (run, task)."""
    rows = []
    for r in results:
        for task, metrics in getattr(r, split).items():
            rows.append({"model": r.config.label, "seed": r.config.seed, "task": task,
                         **{k: float(v) for k, v in metrics.items()}})
    return pd.DataFrame(rows)


def mean_difference(table: pd.DataFrame, column: str) -> float:
    return float(np.nanmean(table[column].to_numpy(dtype=float)))


# Chapter 2: convergence, the verdicts, the learning curve ----------------------------------

CONVERGENCE_GAIN = 0.5  # dev points: a run has converged when it gains less than this ...
CONVERGENCE_SHARE = 0.25  # ... over this last share of its training


def run_dev(point: dict, tasks) -> float:
    """A dev-curve point's score for a run of ``tasks``: the task's metric, or the mean of the tasks'."""
    return float(np.mean([point["dev"][t] for t in tasks]))


def convergence(result: RunResult, gain: float = CONVERGENCE_GAIN, share: float = CONVERGENCE_SHARE) -> dict:
    """The book's convergence criterion: a run has converged when every dev evaluation after the
    last one at or before ``1 - share`` of its steps (rounded to a step, as the trainer places its
    evaluations) is within ``gain`` points of that evaluation's score: it neither still rises nor
    falls (a run whose dev score drops has not settled either). ``gain``: the largest rise;
    ``largest change``: the largest move either way. Not measurable (``converged`` False, NaN)
    without an evaluation on each side of that point."""
    tasks, cut = result.config.tasks, max(1, round((1 - share) * result.steps))
    before = [p for p in result.dev_curve if p["step"] <= cut]
    after = [p for p in result.dev_curve if p["step"] > cut]
    if not before or not after:
        return {"from step": float("nan"), "dev then": float("nan"), "best dev after": float("nan"),
                "gain": float("nan"), "largest change": float("nan"), "converged": False}
    start = run_dev(before[-1], tasks)
    moves = [run_dev(p, tasks) - start for p in after]
    return {"from step": before[-1]["step"], "dev then": start, "best dev after": start + max(moves),
            "gain": max(moves), "largest change": max(moves, key=abs),
            "converged": bool(max(abs(m) for m in moves) < gain)}


def convergence_table(results: list[RunResult]) -> pd.DataFrame:
    """``convergence`` of every run: one row per model and seed."""
    return pd.DataFrame([{"model": r.config.label, "seed": r.config.seed, "steps": r.steps, **convergence(r)}
                         for r in results])


STL_FLOORS = {"pos": 93.0, "ner": 55.0, "dep": 72.0, "con": 78.0, "srl": 45.0}
"""STL test scores (each task's metric; DEP: LAS over full labels) that the `default` scale aims
near: what a short schedule can reach, far below converged scores."""


def floor_table(results: list[RunResult], floors: dict[str, float] = STL_FLOORS) -> pd.DataFrame:
    """Per task: STL's test score (mean over seeds) against its floor (``STL_FLOORS``), how far
    short it falls, whether it is reached, how many STL runs converged, and their mean dev gain
    over the last quarter of training (``convergence``): what more updates still buy."""
    rows = []
    for task in TASKS:
        stl = [r for r in results if r.config.tasks == (task,)]
        if not stl:
            continue
        score = float(np.mean([r.main_scores("test")[task] for r in stl]))
        ends = [convergence(r) for r in stl]
        rows.append({"task": task, "metric": TASK_CLASSES[task].metric, "STL": score, "floor": floors[task],
                     "short by": max(0.0, floors[task] - score), "reached": score >= floors[task],
                     "runs converged": sum(e["converged"] for e in ends), "runs": len(stl),
                     "last-quarter gain": float(np.nanmean([e["gain"] for e in ends]))})
    return pd.DataFrame(rows).set_index("task")


def _by_task_and_seed(results: list[RunResult]) -> dict[tuple[str, str, int], RunResult]:
    return {(setting(r), task, r.config.seed): r for r in results for task in r.config.tasks}


def blind_scores(corpus, knobs: dict, split: str = "test", sentences: int | None = None,
                 tasks=TASKS) -> dict[str, float]:
    """Each task's score (its metric) on ``split`` of predictions that ignore the words
    (``Task.blind``), from the profile's training sentences and ``sentences`` of the split (None:
    the profile's count for it): what a model must beat to have learned."""
    scale = run_knobs(knobs)
    train = corpus_split(corpus, "train", scale["train_sentences"])
    scored = corpus_split(corpus, split, sentences or scale[f"{split}_sentences"])
    return {t: build_task(t, train, 8).blind_score(train, scored) for t in tasks}


def stl_mtl_verdicts(results: list[RunResult], mtl_setting: str, blind: dict[str, float],
                     split: str = "test") -> pd.DataFrame:
    """The claim "``mtl_setting`` falls behind STL", per task and on the mean over tasks, by the
    verdict rule (``verdicts``): ``MTL - STL`` per seed (paired by seed), its mean and Student's
    t interval over seeds; preconditions: every STL run beat its task's input-blind score
    (``blind``, from ``blind_scores``) and converged (``convergence``), and the two settings made
    as many encoder updates (optimiser steps). The claim's support is STL - MTL."""
    runs = _by_task_and_seed(results)
    rows, per_seed = [], {}
    tasks = [t for t in TASKS if any(k[0] == "STL" and k[1] == t for k in runs)]
    for task in tasks:
        seeds = sorted(seed for (s, t, seed) in runs if s == "STL" and t == task and (mtl_setting, task, seed) in runs)
        if not seeds:
            continue
        stl = [runs["STL", task, seed] for seed in seeds]
        mtl = [runs[mtl_setting, task, seed] for seed in seeds]
        diffs = [m.main_scores(split)[task] - s.main_scores(split)[task] for s, m in zip(stl, mtl)]
        per_seed[task] = dict(zip(seeds, diffs))
        rows.append(_verdict_row(task, diffs, _stl_preconditions(stl, mtl, blind, split,
                                                                 f"STL {task.upper()}", f"seeds; bar {blind[task]:.1f}")))
    if per_seed:
        common = sorted(set.intersection(*(set(d) for d in per_seed.values())))
        means = [float(np.mean([per_seed[t][seed] for t in per_seed])) for seed in common]
        stl = [runs["STL", t, seed] for t in per_seed for seed in common]
        mtl = [runs[mtl_setting, t, seed] for t in per_seed for seed in common]
        rows.append(_verdict_row("mean", means, _stl_preconditions(stl, mtl, blind, split, "every STL run", "runs")))
    return pd.DataFrame(rows).set_index("task")


def _stl_preconditions(stl: list[RunResult], mtl: list[RunResult], blind: dict[str, float], split: str,
                       who: str, of: str) -> list["verdicts.Precondition"]:
    """Chapter 2's preconditions on paired STL and MTL runs: the STL runs beat their tasks'
    input-blind scores and converged, and the pairs made as many encoder updates."""
    learned = sum(r.main_scores(split)[r.config.tasks[0]] > blind[r.config.tasks[0]] for r in stl)
    converged = sum(convergence(r)["converged"] for r in stl)
    ratio = float(np.mean([m.steps / max(s.steps, 1) for s, m in zip(stl, mtl)]))
    return [verdicts.Precondition(f"{who} beat the input-blind score ({learned} of {len(stl)} {of})", learned == len(stl)),
            verdicts.Precondition(f"{who} converged ({converged} of {len(stl)} {of.split(';')[0]})", converged == len(stl)),
            verdicts.Precondition(f"equal encoder updates (MTL made {ratio:.1f}x STL's)", bool(np.isclose(ratio, 1.0)))]


def _verdict_row(task: str, diffs: list[float], preconditions: list) -> dict:
    """A table row of ``MTL - STL`` over seeds; the rule decides on its negation (the claim's support)."""
    v = verdicts.decide_over_seeds([-d for d in diffs], preconditions)
    return {"task": task, "MTL - STL": -v.estimate, "low": -v.high, "high": -v.low, "seeds": v.n,
            "verdict": v.word, "not met": "; ".join(v.failed), "met": "; ".join(v.met)}


SWEEP_RATES = (5e-5, 1e-4, 2e-4)  # encoder learning rates: the paper's, then two doublings
SWEEP_SEED = 0  # not one of the book's seeds: the choice is made apart from the runs it is used in


def lr_sweep_configs(knobs: dict, rates=SWEEP_RATES) -> list[TrainConfig]:
    """An STL run per task and encoder learning rate, at the profile's scale and recipe, one seed."""
    scale = run_knobs(knobs)
    return [TrainConfig(**{**scale, "tasks": (t,), "encoder": knobs["encoder"], "seed": SWEEP_SEED, "lr_encoder": rate})
            for rate in rates for t in TASKS]


def lr_sweep(knobs: dict, corpus=None, rates=SWEEP_RATES) -> pd.DataFrame:
    """The short-schedule recipe, chosen on dev: each task's best dev score (its metric) per
    encoder learning rate, the mean over tasks, and each rate's mean rank over tasks (1: best);
    the rate of the best mean rank is the choice (ties: the smaller rate). Runs are cached."""
    results = run_all(lr_sweep_configs(knobs, rates), corpus, knobs["workers"])
    rows = {}
    for r in results:
        task = r.config.tasks[0]
        rows.setdefault(r.config.lr_encoder, {})[task] = r.dev[task][TASK_CLASSES[task].metric]
    table = pd.DataFrame(rows).T.reindex(columns=list(TASKS)).sort_index()
    table.index.name = "lr_encoder"
    ranks = table.rank(ascending=False, method="min")
    table["mean"], table["mean rank"] = table[list(TASKS)].mean(axis=1), ranks.mean(axis=1)
    table["chosen"] = table.index == table["mean rank"].idxmin()
    return table


def print_lr_sweep(profile: str) -> None:
    """``make lr-sweep``: the sweep at ``profile``, printed (its runs go to the run cache)."""
    table = lr_sweep(profiles.load(profile))
    print(table.round(2).to_string())
    print(f"chosen encoder learning rate: {table.index[table['chosen']][0]:g} (set lr_encoder in params/{profile}.yaml)")


def interval_text(low: float, high: float) -> str:
    """``[-1.23, 4.56]``, or ``none`` when there is no interval (one seed)."""
    return "none" if np.isnan(low) or np.isnan(high) else f"[{low:+.2f}, {high:+.2f}]"


def gap_curve(results: list[RunResult], mtl_setting: str) -> pd.DataFrame:
    """The learning curve of the gap: per task, seed and dev evaluation (encoder updates so far),
    ``mtl_setting``'s dev score minus STL's at the same step. Both runs evaluate at the same steps
    when they make as many updates; steps only one of them has are left out."""
    runs = _by_task_and_seed(results)
    rows = []
    for (name, task, seed), mtl in runs.items():
        stl = runs.get(("STL", task, seed))
        if name != mtl_setting or stl is None:
            continue
        stl_at = {p["step"]: p["dev"][task] for p in stl.dev_curve}
        rows += [{"task": task, "seed": seed, "updates": p["step"], "STL": stl_at[p["step"]], "MTL": p["dev"][task],
                  "gap": p["dev"][task] - stl_at[p["step"]]} for p in mtl.dev_curve if p["step"] in stl_at]
    return pd.DataFrame(rows, columns=["task", "seed", "updates", "STL", "MTL", "gap"])


FLAT = 0.5  # dev points: a gap that moves less than this between two budgets stays


def gap_trend(curve: pd.DataFrame) -> pd.DataFrame:
    """Per task: the mean gap over seeds at the fewest and the most updates, and whether it
    ``changes sign``, ``shrinks``, ``grows`` or ``stays`` (moves by less than ``FLAT`` points)
    between them."""
    rows = []
    for task, sub in curve.groupby("task", sort=False):
        mean = sub.groupby("updates")["gap"].mean().sort_index()
        first, last = float(mean.iloc[0]), float(mean.iloc[-1])
        word = ("stays" if abs(last - first) < FLAT else "changes sign" if first * last < 0
                else "shrinks" if abs(last) < abs(first) else "grows")
        rows.append({"task": task, "first updates": int(mean.index[0]), "gap then": first,
                     "last updates": int(mean.index[-1]), "gap at the end": last, "trend": word})
    return pd.DataFrame(rows).set_index("task")


# Chapter 3: head pruning with Hard-Concrete gates ------------------------------------------

# The paper's L0 weights: each task's (``Task.paper_gate_lambda``) and MTL's.
PAPER_LAMBDAS = {**{t: TASK_CLASSES[t].paper_gate_lambda for t in TASKS}, "mtl": 1e-3}
GATED_MTL = MTL_JOINT  # the MTL-5 model gated: chapter 2's, with as many encoder updates as an STL run
STL_NAMES = tuple(t.upper() for t in TASKS)
CONTROL_NAMES = tuple(t.upper() for t in CONTROL_TASKS)
MIDDLE_LAYERS_OF_12 = (6, 7)  # the paper's (1-based) almost fully kept layers of BERT-base ...
TOP_LAYERS_OF_12 = (11, 12)  # ... and its pruned ones, in its official repository's 15-model average


def gate_seeds(knobs: dict) -> list[int]:
    """Chapter 3's seeds: chapter 2's, whose trained models the gates start from."""
    return stl_mtl_seeds(knobs)


def control_keys(knobs: dict) -> list[RunKey]:
    """The control task's ungated STL runs, one per seed of chapter 3 (trained there, at
    chapter 2's scale and recipe)."""
    return [RunKey.stl(t, seed) for seed in gate_seeds(knobs) for t in CONTROL_TASKS]


def gate_path_configs(knobs: dict, seeds: list[int] | None = None) -> dict[tuple[str, int], GatePathConfig]:
    """(setting, seed) -> the gated phase on that trained model: each task's STL model (``POS``
    ...), MTL-5 joint and the control task's STL model (``CTL``), with the profile's lambda path,
    steps per lambda, gate learning rate and dev sentences scored after each lambda."""
    runs = stem_cell_runs(knobs)
    bases = {}
    for seed in seeds or gate_seeds(knobs):
        bases |= {(t.upper(), seed): runs[RunKey.stl(t, seed)] for t in TASKS}
        bases[GATED_MTL, seed] = runs[RunKey.mtl(seed, mtl_mode="joint")]
        bases |= {(t.upper(), seed): runs[RunKey.stl(t, seed)] for t in CONTROL_TASKS}
    return {key: GatePathConfig(base, lambdas=tuple(knobs["gate_path_lambdas"]), steps=knobs["gate_steps"],
                                lr_gates=knobs["gate_lr"], dev_sentences=knobs["gate_dev_sentences"])
            for key, base in bases.items()}


def run_gate_paths(knobs: dict, corpus=None, seeds: list[int] | None = None) -> dict[tuple[str, int], GatePath]:
    """Every gated phase of ``gate_path_configs`` (cached), ``workers`` at a time, each once the
    trained model it starts from is (chapter 2's are in the run cache; the control's train here)."""
    corpus = corpus if corpus is not None else ewt5.load()
    configs = gate_path_configs(knobs, seeds)
    return dict(zip(configs, pruning.gate_paths(list(configs.values()), corpus, knobs["workers"])))


def path_table(paths: dict[tuple[str, int], GatePath]) -> pd.DataFrame:
    """One row per setting, seed and lambda: heads kept at the stage's end, the dev score then
    (the tasks' mean for MTL-5) and the ungated model's."""
    rows = []
    for (name, seed), path in paths.items():
        base = float(np.mean(list(path.base_dev.values())))
        for stage in path.stages:
            dev = float(np.mean(list(stage["dev"].values())))
            rows.append({"setting": name, "seed": seed, "lambda": stage["lambda"], "heads kept": int(stage["kept"].sum()),
                         "dev": dev, "ungated dev": base, "dev change": dev - base})
    return pd.DataFrame(rows)


def paper_lambda(name: str) -> float:
    """The paper's L0 weight for a setting of chapter 3 (``POS`` ..., MTL-5; NaN for the control)."""
    if name in STL_NAMES:
        return PAPER_LAMBDAS[name.lower()]
    return PAPER_LAMBDAS["mtl"] if name == GATED_MTL else float("nan")


def survival_maps(paths: dict[tuple[str, int], GatePath]) -> dict[tuple[str, int], np.ndarray]:
    return {key: path.survival() for key, path in paths.items()}


def order_correlations(paths: dict[tuple[str, int], GatePath]) -> pd.DataFrame:
    """Spearman correlation of the closing orders (``GatePath.ranking``) between settings, the
    mean over seed pairs: off the diagonal the same seed, on it different seeds of one setting
    (the within-setting agreement, the ceiling a between-task value can reach)."""
    names = list(dict.fromkeys(name for name, _ in paths))
    ranks = {key: path.ranking() for key, path in paths.items()}
    table = pd.DataFrame(index=names, columns=names, dtype=float)
    for a in names:
        for b in names:
            values = [pruning.rank_correlation(ra, rb) for (na, sa), ra in ranks.items() if na == a
                      for (nb, sb), rb in ranks.items() if nb == b and ((a == b and sa < sb) or (a != b and sa == sb))]
            table.loc[a, b] = float(np.mean(values)) if values else np.nan
    return table


def run_consistency(paths: dict[tuple[str, int], GatePath]) -> pd.Series:
    """The paper's run-consistency diagonal per setting: sqrt of the adjusted R^2 of its third
    seed's survival map on its first two (NaN with fewer than three seeds)."""
    out = {}
    for name in dict.fromkeys(name for name, _ in paths):
        maps = [paths[key].survival() for key in sorted(k for k in paths if k[0] == name)]
        out[name] = pruning.consistency(*maps[:3]) if len(maps) >= 3 else float("nan")
    return pd.Series(out, name="consistency")


def head_count(share: float, heads: int) -> int:
    """A share of ``heads`` as a count, at least one."""
    return max(1, round(share * heads))


def _top_sets(paths, top: int, names, seed: int) -> dict[str, np.ndarray]:
    return {name: paths[name, seed].top(top) for name in names if (name, seed) in paths}


def overlap_by_seed(paths: dict[tuple[str, int], GatePath], top: int, permutations: int) -> pd.DataFrame:
    """Per seed, the five STL tasks' ``top`` longest-open heads: pair coincidences against the
    layer-stratified null (``pruning.layer_stratified_test``), and mean Jaccard overlaps: between
    the tasks; between the control task and each task; and within each task across seeds (the
    same task's other seeds: the ceiling)."""
    rows = []
    seeds = sorted({seed for _, seed in paths})
    for seed in seeds:
        stl = _top_sets(paths, top, STL_NAMES, seed)
        test = pruning.layer_stratified_test(stl, permutations, seed=seed)
        between = [pruning.jaccard(stl[a], stl[b]) for i, a in enumerate(stl) for b in list(stl)[i + 1:]]
        control = [pruning.jaccard(paths[c, seed].top(top), stl[t]) for c in CONTROL_NAMES if (c, seed) in paths
                   for t in stl]
        within = [pruning.jaccard(stl[t], paths[t, other].top(top)) for t in stl for other in seeds
                  if other != seed and (t, other) in paths]
        rows.append({"seed": seed, "coincidences": test["statistic"], "layer null": test["null_mean"],
                     "excess": test["excess"], "p": test["p_value"], "between tasks": float(np.mean(between)),
                     "control vs tasks": float(np.mean(control)) if control else np.nan,
                     "same task, other seeds": float(np.mean(within)) if within else np.nan})
    return pd.DataFrame(rows).set_index("seed")


def shared_heads(paths: dict[tuple[str, int], GatePath], top: int, seed: int, k: int) -> np.ndarray:
    """The ``k`` heads that most STL tasks keep among their ``top`` (ties: the longer mean
    survival), for ``seed``: boolean (layers, heads)."""
    count = claimed_heads(paths, top, seed)
    survival = np.mean([paths[name, seed].survival() for name in STL_NAMES if (name, seed) in paths], axis=0)
    order = np.lexsort((-survival.ravel(), -count.ravel()))[:k]
    mask = np.zeros(count.size, dtype=bool)
    mask[order] = True
    return mask.reshape(count.shape)


def claimed_heads(paths: dict[tuple[str, int], GatePath], top: int, seed: int) -> np.ndarray:
    """(layers, heads): how many STL tasks keep each head among their ``top`` longest-open ones."""
    return sum(m.astype(int) for m in _top_sets(paths, top, STL_NAMES, seed).values())


def masking_check(paths: dict[tuple[str, int], GatePath], knobs: dict, corpus=None) -> pd.DataFrame:
    """The causal check: per seed and STL task, the dev score (on the gated phase's dev sentences)
    of the trained (ungated) model with
    ``gate_mask_share`` of the heads, those most tasks keep (``shared_heads``) removed, and with as many
    random heads from the same layers removed (``gate_mask_draws`` draws, mean); cached."""
    corpus = corpus if corpus is not None else ewt5.load()
    heads = next(iter(paths.values())).records[0].size
    top, k, draws = head_count(knobs["gate_top"], heads), head_count(knobs["gate_mask_share"], heads), knobs["gate_mask_draws"]
    rows = []
    seeds = sorted({seed for name, seed in paths if name in STL_NAMES})
    for seed in tqdm(seeds, desc="masking heads"):
        shared = shared_heads(paths, top, seed, k)
        masks = [shared] + pruning.same_layer_draws(shared, draws, seed=seed)
        for name in STL_NAMES:
            path = paths[name, seed]
            config = path.config.base
            sentences = path.config.dev_sentences or config.dev_sentences  # the path's: its base_dev is on them
            scores = cache.cached("masked", {"model": asdict(config), "masks": [m.tolist() for m in masks],
                                             "dev_sentences": sentences},
                                  lambda: pruning.masked_scores(config, [~m for m in masks], corpus, sentences),
                                  inputs=run_inputs(config), code=[pruning])
            task = config.tasks[0]
            base = path.base_dev[task]
            random_drop = float(np.mean([base - s[task] for s in scores[1:]]))
            rows.append({"seed": seed, "task": name, "ungated dev": base, "shared removed": scores[0][task],
                         "random removed": base - random_drop, "drop (shared)": base - scores[0][task],
                         "drop (random)": random_drop, "extra drop": (base - scores[0][task]) - random_drop})
    return pd.DataFrame(rows)


def middle_layers(layers: int) -> tuple[list[int], list[int]]:
    """0-based layers of an encoder of ``layers`` layers at the depth of the paper's kept
    (BERT-base 6-7 of 12) and pruned (11-12) layers."""
    def at(of_12):
        return sorted({min(layers - 1, int((l - 1) * layers / 12)) for l in of_12})

    return at(MIDDLE_LAYERS_OF_12), at(TOP_LAYERS_OF_12)


def layer_survival(paths: dict[tuple[str, int], GatePath], names=STL_NAMES) -> pd.DataFrame:
    """Mean survival per layer (rows: seeds; mean over the settings ``names``)."""
    seeds = sorted({seed for _, seed in paths})
    return pd.DataFrame({seed: np.mean([paths[n, seed].survival().mean(-1) for n in names if (n, seed) in paths], axis=0)
                         for seed in seeds}).T.rename_axis(index="seed", columns="layer")


def learned(paths: dict[tuple[str, int], GatePath], blind_dev: dict[str, float]) -> dict[str, bool]:
    """Per setting: did every seed's ungated model beat its tasks' input-blind dev scores?"""
    out = {}
    for (name, seed), path in paths.items():
        ok = all(path.base_dev[t] > blind_dev[t] for t in path.tasks)
        out[name] = out.get(name, True) and ok
    return out


def blind_dev_scores(corpus, knobs: dict) -> dict[str, float]:
    """Each task's (and the control's) input-blind score on the dev sentences chapter 3 scores
    after each lambda (``gate_dev_sentences``, else chapter 2's)."""
    return blind_scores(corpus, knobs, "dev", knobs["gate_dev_sentences"], (*TASKS, *CONTROL_TASKS))


def gate_verdicts(paths: dict[tuple[str, int], GatePath], overlap: pd.DataFrame, masking: pd.DataFrame,
                  blind_dev: dict[str, float]) -> pd.DataFrame:
    """Chapter 3's claims by the verdict rule, each over seeds: the tasks keep the same heads
    beyond their layer preferences (pair coincidences minus the layer-stratified null's mean);
    more than the control task shares with them (between-task minus control Jaccard); removing
    the heads most tasks keep costs more than removing random heads of the same layers (the
    extra dev drop, mean over tasks); the middle layers keep more than the top ones (survival,
    paper-depth layers). Preconditions: every ungated model beat its input-blind dev score, and
    (for the control comparison) the control model did too."""
    ok = learned(paths, blind_dev)
    tasks_learned = verdicts.Precondition(
        f"every STL model beat its input-blind dev score ({sum(ok.get(n, False) for n in STL_NAMES)} of "
        f"{len(STL_NAMES)} tasks, all seeds)", all(ok.get(n, False) for n in STL_NAMES))
    control_learned = verdicts.Precondition("the control model beat its input-blind dev score",
                                            all(ok.get(n, False) for n in CONTROL_NAMES))
    layers = next(iter(paths.values())).records.shape[1]
    middle, top = middle_layers(layers)
    by_layer = layer_survival(paths)
    claims = {
        "the tasks keep the same heads beyond their layer preferences":
            (overlap["excess"].tolist(), [tasks_learned], "coincidences over the layer null"),
        "the tasks share more heads with each other than with the control task":
            ((overlap["between tasks"] - overlap["control vs tasks"]).tolist(), [tasks_learned, control_learned],
             "Jaccard, between tasks minus control"),
        "removing the shared heads costs more than removing random heads of their layers":
            (masking.groupby("seed")["extra drop"].mean().tolist(), [tasks_learned], "extra dev drop (points)"),
        "the middle layers keep more heads than the top layer":
            ((by_layer[middle].mean(1) - by_layer[top].mean(1)).tolist(), [tasks_learned],
             "survival, middle minus top layers"),
    }
    rows = []
    for claim, (support, preconditions, measure) in claims.items():
        v = verdicts.decide_over_seeds(support, preconditions)
        rows.append({"claim": claim, "measure": measure, "estimate": v.estimate, "low": v.low, "high": v.high,
                     "seeds": v.n, "verdict": v.word, "not met": "; ".join(v.failed), "met": "; ".join(v.met)})
    return pd.DataFrame(rows).set_index("claim")


# Chapters 4 and 5: parameter-free probes and the label analysis ------------------------------

PROBED_MTL = MTL_JOINT  # the MTL-5 model chapters 4-5 probe: chapter 2's compute-matched one


def probed_mtl(seed: int) -> RunKey:
    """The key of the MTL-5 model chapters 4-5 probe for ``seed``: MTL-5 joint, which made as many
    encoder updates as each STL model (the paper's MTL-5 makes five times as many; chapter 2)."""
    return RunKey.mtl(seed, mtl_mode="joint")


def probe_models(knobs: dict) -> dict[RunKey, TrainConfig | None]:
    """The encoders to probe, by key: the pretrained encoder (``None``), chapter 2's STL model per
    task and MTL-5 joint (``probed_mtl``) for each of chapter 2's seeds (``stl_mtl_seeds``), and
    the task-pair MTL models of ``pairwise_mtl`` (``pairwise_keys``)."""
    runs = stem_cell_runs(knobs)
    seeds = set(stl_mtl_seeds(knobs)) | set(knobs["seeds"])
    chosen = [key for key in runs if key.gate_lambda is None and key.seed in seeds
              and not set(key.tasks) & set(CONTROL_TASKS)  # chapter 3's control is not probed
              and (len(key.tasks) < len(TASKS) or key == probed_mtl(key.seed))]  # STL, pairs, MTL-5 joint
    return {RunKey.pretrained(): None} | {key: runs[key] for key in chosen}


def probe_results(knobs: dict, corpus=None) -> list[RunResult]:
    """The training runs of ``probe_models`` (chapter 2's, from the run cache): their dev curves
    say whether each converged (a precondition of chapters 4-5's verdicts)."""
    configs = [config for config in probe_models(knobs).values() if config is not None]
    return train_many(configs, corpus, knobs["workers"])


def probe_cached(config: TrainConfig | None, knobs: dict, corpus=None, progress: bool = True) -> dict:
    """Every probe of one encoder (``None``: the pretrained one) on the test sentences, with
    centroids also fit on the first ``probe_fit_sentences`` training sentences; cached."""
    corpus = corpus if corpus is not None else ewt5.load()
    model = asdict(config) if config is not None else {PRETRAINED: knobs["encoder"], "device": knobs["device"]}

    def encoder():
        if config is None:
            return load_encoder(knobs["encoder"]).to(devices.resolve(knobs["device"]))
        return load_model(train_cached(config, corpus, progress), corpus).encoder

    name = RunKey.of(config).label if config is not None else PRETRAINED
    return _probe_encoder(model, encoder, name, knobs, corpus, progress)


RANDOM_INIT = "random init"  # chapter 4's baseline encoder: the encoder's shape, untrained weights


def random_init_encoder(name: str, seed: int = 0) -> Encoder:
    """The named encoder's architecture and tokenizer with fresh weights (its configuration's own
    initialisation, seeded; torch's global generator left as it was): what a head of that shape
    gives before any training."""
    trained = load_encoder(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = type(trained.model)(trained.model.config, add_pooling_layer=False)
    return Encoder(model.eval(), trained.tokenizer)


def probe_random_init(knobs: dict, corpus=None, progress: bool = True, seed: int = 0) -> dict:
    """``probe_cached``'s probes of ``random_init_encoder`` (cached)."""
    corpus = corpus if corpus is not None else ewt5.load()
    model = {RANDOM_INIT: knobs["encoder"], "seed": seed, "device": knobs["device"]}
    return _probe_encoder(model, lambda: random_init_encoder(knobs["encoder"], seed).to(devices.resolve(knobs["device"])),
                          RANDOM_INIT, knobs, corpus, progress)


def _probe_encoder(model: dict, encoder, name: str, knobs: dict, corpus, progress: bool) -> dict:
    """Every probe of the encoder ``encoder()`` builds, cached under ``model`` (what names it)."""
    what = {"model": model, "test_sentences": knobs["probe_test_sentences"], "fit_sentences": knobs["probe_fit_sentences"]}

    def compute():
        read = encoder()
        test = probes.read_heads(read, corpus_split(corpus, "test", knobs["probe_test_sentences"]),
                                 progress=progress, desc=f"probing {name} (test)")
        fit = probes.read_heads(read, corpus_split(corpus, "train", knobs["probe_fit_sentences"]),
                                tasks=probes.CENTROID_TASKS, progress=progress, desc=f"probing {name} (fit)")
        return probes.probe_all(test, fit)

    return cache.cached("probe", what, compute, inputs={"ewt5": ewt5.data_version(),
                                                        "encoder": fingerprint(knobs["encoder"])},
                        code=[sys.modules[__name__]])


def baseline_table(probed: dict[RunKey, dict], random_init: dict, corpus, knobs: dict) -> pd.DataFrame:
    """Per task, the best head's accuracy over all items (the task's main probe) of the
    pretrained encoder, the task's STL model and MTL-5 (means over the probed seeds), beside what
    comes free: the random-init encoder's best head, the best positional head (attention probes:
    ``probes.positional_probe``) and the majority label (value probes)."""
    test = corpus_split(corpus, "test", knobs["probe_test_sentences"])
    rows = []
    for t in TASKS:
        variant = probes.main_variant(t)
        best = {}
        for key, results in probed.items():
            role = key.role(t)
            if role in (PRETRAINED, "STL", PROBED_MTL):
                best.setdefault(role, []).append(float(results[(t, variant)].head_accuracy().max()))
        row = {"task": t, **{role: float(np.mean(v)) for role, v in best.items()},
               RANDOM_INIT: float(random_init[(t, variant)].head_accuracy().max())}
        if t in probes.ATTENTION_TASKS:
            positional = probes.positional_probe(t, test)
            row["positional"] = float(positional.head_accuracy().max())
            row["positional head"] = probes.POSITIONAL[int(np.argmax(positional.head_accuracy()))]
        else:
            row["majority label"] = probes.majority_accuracy(random_init[(t, variant)])
        rows.append(row)
    table = pd.DataFrame(rows).set_index("task")
    free = table[[c for c in (RANDOM_INIT, "positional", "majority label") if c in table]].max(axis=1)
    table["best free"] = free
    for role in (PRETRAINED, "STL", PROBED_MTL):
        if role in table:
            table[f"{role} - best free"] = table[role] - free
    return table


def held_out_table(probed: dict[RunKey, dict], min_count: int = 1) -> pd.DataFrame:
    """Per task and setting (pretrained, STL, MTL-5; means over seeds and labels with at least
    ``min_count`` items in both halves): the best head's accuracy in-sample (chosen and scored on the same
    items, the paper's) and held out (chosen on one half of the sentences, scored on the other,
    both ways; ``LabelProbe.held_out_best_heads``), and the inflation."""
    frames = []
    for key, results in probed.items():
        for t in TASKS:
            role = key.role(t)
            if role not in (PRETRAINED, "STL", PROBED_MTL):
                continue
            frames.append(results[(t, probes.main_variant(t))].held_out_best_heads(min_count).assign(
                setting=role, seed=key.seed))
    long = pd.concat(frames, ignore_index=True).dropna(subset=["held-out"])  # labels in both halves only
    out = long.groupby(["task", "setting"])[["in-sample", "held-out", "inflation"]].mean()
    return out.reindex(pd.MultiIndex.from_product([TASKS, [PRETRAINED, "STL", PROBED_MTL]])).dropna(how="all")


def probe_all_models(knobs: dict, corpus=None) -> dict[RunKey, dict]:
    """``probe_cached`` for every model of ``probe_models``."""
    return {key: probe_cached(config, knobs, corpus) for key, config in probe_models(knobs).items()}


def best_head_table(probed: dict[RunKey, dict], variant_of=None, min_count: int = 1) -> pd.DataFrame:
    """Long table: per model (its ``key``, ``model`` label and ``seed``), task and label, the best
    head and its accuracy (the task's main probe variant unless ``variant_of(task)`` says otherwise)."""
    variant_of = variant_of or probes.main_variant
    frames = []
    for key, results in probed.items():
        for t in TASKS:
            table = results[(t, variant_of(t))].best_heads(min_count)
            frames.append(table.assign(model=key.label, seed=key.seed, key=[key] * len(table)))
    return pd.concat(frames, ignore_index=True)


def with_settings(best: pd.DataFrame) -> pd.DataFrame:
    """``best_head_table`` rows with the column each model fills for the row's task
    (``RunKey.role``: ``pretrained``, ``STL``, ``MTL-5``, ``MTL +NER``); rows of no role dropped."""
    settings = [key.role(t) for key, t in zip(best["key"], best["task"])]
    return best.assign(setting=settings).dropna(subset=["setting"])


def label_deltas(best: pd.DataFrame) -> pd.DataFrame:
    """Per task and label: each setting's best-head accuracy (mean over seeds), its standard
    deviation, and its difference to STL. ``best`` is ``best_head_table``'s output."""
    best = with_settings(best)
    stats = best.groupby(["task", "label", "setting"])["accuracy"].agg(["mean", "std"]).reset_index()
    wide = stats.pivot(index=["task", "label"], columns="setting", values=["mean", "std"])
    counts = best.groupby(["task", "label"])["count"].first()
    out = pd.DataFrame({"count": counts})
    settings = [s for s in [PRETRAINED, "STL", PROBED_MTL, MTL] if ("mean", s) in wide.columns]
    settings += sorted(s for s in wide.columns.get_level_values(1).unique() if s.startswith("MTL +"))
    for s in settings:
        out[s] = wide[("mean", s)]
        out[f"{s} sd"] = wide[("std", s)]
    for s in settings:
        if s != "STL":
            out[f"{s} - STL"] = out[s] - out["STL"]
    order = {t: i for i, t in enumerate(TASKS)}
    return out.reset_index().sort_values(["task", "count"], key=lambda c: c.map(order) if c.name == "task" else -c
                                         ).reset_index(drop=True)


# Chapters 4-5: intervals over seeds and sentences, and the verdicts ---------------------------

BOOTSTRAP_RESAMPLES = 1000  # resamples of the test sentences (probes.BLOCKS interleaved blocks)
PAPER_TOP = 10  # the paper's per-task comparison: the ten most frequent labels


def role_probes(probed: dict[RunKey, dict], task: str, role: str) -> dict[int | None, probes.LabelProbe]:
    """By seed (None: the pretrained encoder), the main probe of ``task`` of every model filling
    ``role`` for it (``RunKey.role``)."""
    variant = probes.main_variant(task)
    return {None if key.is_pretrained else key.seed: results[(task, variant)]
            for key, results in probed.items() if key.role(task) == role}


def chosen_labels(probe: probes.LabelProbe, min_count: int = 1, top: int | None = None) -> np.ndarray:
    """Indices of the labels with at least ``min_count`` items, the ``top`` most frequent of them
    (all: None); a probe's labels are sorted by frequency."""
    return np.flatnonzero(probe.counts >= min_count)[:top]


def _label_mean(probe: probes.LabelProbe, labels: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean over ``labels`` of the best head's accuracy, and the same on each resample."""
    return float(probe.best_accuracy()[labels].mean()), np.nanmean(probe.resampled_best(weights)[:, labels], axis=1)


def probe_gain(probed: dict[RunKey, dict], task: str, plus: str, minus: str, weights: np.ndarray,
               min_count: int = 1, top: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``plus`` minus ``minus`` (settings, ``RunKey.role``) on ``task``'s main probe: the mean over
    the chosen labels (``chosen_labels``) of the best head's accuracy, per seed (paired; the
    pretrained encoder pairs with every seed), and per bootstrap resample of the test sentences
    (``weights``; the mean over seeds). Returns ``(per_seed, per_resample)``."""
    a, b = role_probes(probed, task, plus), role_probes(probed, task, minus)
    if not a or not b:
        raise ValueError(f"no probed model fills {plus if not a else minus!r} for {task!r}")
    seeds = sorted((set(a) | set(b)) - {None}) if None in a or None in b else sorted(set(a) & set(b))
    labels = chosen_labels(next(iter(a.values())), min_count, top)
    per_seed, resampled = [], []
    for seed in seeds:
        (pa, ra), (pb, rb) = (_label_mean(d.get(seed, d.get(None)), labels, weights) for d in (a, b))
        per_seed.append(pa - pb)
        resampled.append(ra - rb)
    return np.array(per_seed), np.mean(resampled, axis=0)


def stl_converged(results: list[RunResult], task: str) -> "verdicts.Precondition":
    """Chapter 2's precondition: every STL run of ``task`` among ``results`` converged."""
    stl = [r for r in results if tuple(r.config.tasks) == (task,)]
    converged = sum(convergence(r)["converged"] for r in stl)
    return verdicts.Precondition(f"STL {task.upper()} converged ({converged} of {len(stl)} seeds)",
                                 bool(stl) and converged == len(stl))


def beats_free(baselines: pd.DataFrame, task: str) -> "verdicts.Precondition":
    """The probe measures more than what comes free: the STL model's best head beats the best
    free baseline of ``task`` (``baseline_table``)."""
    margin = float(baselines.loc[task, "STL - best free"])
    return verdicts.Precondition(f"the {task.upper()} probe of STL beats its best free baseline ({margin:+.1f})", margin > 0)


def probe_claims(probed: dict[RunKey, dict], results: list[RunResult], baselines: pd.DataFrame,
                 min_count: int = 1, top: int | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> pd.DataFrame:
    """The probe claims of chapters 4-5 by the verdict rule, per task and on the mean over tasks,
    on the mean over labels (``chosen_labels``) of the best head's accuracy: "STL above the
    pretrained encoder" (support: STL - pretrained) and "MTL-5 pulls the heads back below STL"
    (support: STL - MTL-5), with "most for POS" (support: POS's pull-back minus the largest other
    task's). Intervals over seeds and test sentences (``verdicts.seed_and_sentence_interval``);
    preconditions: each task's STL probe beats its free baselines and its STL runs converged."""
    weights = probes.bootstrap_weights(resamples, seed)
    gains = {("STL above pretrained", t): probe_gain(probed, t, "STL", PRETRAINED, weights, min_count, top) for t in TASKS}
    gains |= {("MTL-5 below STL", t): tuple(-x for x in probe_gain(probed, t, PROBED_MTL, "STL", weights, min_count, top))
              for t in TASKS}
    conditions = {t: [beats_free(baselines, t), stl_converged(results, t)] for t in TASKS}
    rows = []
    for claim in ("STL above pretrained", "MTL-5 below STL"):
        for t in TASKS:
            rows.append(_claim_row(claim, t, *gains[claim, t], conditions[t]))
        mean_seed = np.mean([gains[claim, t][0] for t in TASKS], axis=0)
        mean_resampled = np.mean([gains[claim, t][1] for t in TASKS], axis=0)
        rows.append(_claim_row(claim, "mean", mean_seed, mean_resampled, [c for t in TASKS for c in conditions[t]]))
    pulls = {t: gains["MTL-5 below STL", t] for t in TASKS}
    others = [t for t in TASKS if t != "pos"]
    most_seed = pulls["pos"][0] - np.max([pulls[t][0] for t in others], axis=0)
    most_resampled = pulls["pos"][1] - np.max([pulls[t][1] for t in others], axis=0)
    rows.append(_claim_row("MTL-5 pulls POS back most", "pos", most_seed, most_resampled,
                           [c for t in TASKS for c in conditions[t]]))
    return pd.DataFrame(rows)


def pairwise_claims(probed: dict[RunKey, dict], results: list[RunResult], baselines: pd.DataFrame,
                    min_count: int = 1, top: int | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0) -> pd.DataFrame:
    """For each task and each pairwise MTL model of it among ``probed`` (``RunKey.role`` ``MTL +X``,
    its ``partner`` X): the claim "MTL +X pulls the task's heads back below STL" (support: STL -
    MTL +X, as ``probe_claims``' "MTL-5 below STL", with its preconditions), our MTL +X - STL and MTL-5 -
    STL beside the paper's (``paper_values``, over the ``top`` most frequent labels; NaN beyond
    the ten it gives). No rows where no pair was probed."""
    from mtlheads import paper_values

    weights = probes.bootstrap_weights(resamples, seed)
    in_paper = top is not None and 1 <= top <= 10  # the paper's tables hold its ten most frequent labels

    def paper(task: str, setting: str) -> float:
        return paper_values.mean_delta(task, setting, top) if in_paper else np.nan

    rows = []
    for t in TASKS:
        roles = {key.role(t) for key in probed}
        pairs = {x: role for x in TASKS if x != t and (role := RunKey.mtl(0, (t, x)).role(t)) in roles}
        if not pairs:
            continue
        mtl5 = probe_gain(probed, t, PROBED_MTL, "STL", weights, min_count, top)[0].mean()  # MTL-5 - STL
        conditions = [beats_free(baselines, t), stl_converged(results, t)]
        for partner, pair in pairs.items():
            per_seed, per_resample = probe_gain(probed, t, pair, "STL", weights, min_count, top)
            row = _claim_row(f"{pair} below STL", t, -per_seed, -per_resample, conditions)
            rows.append({**row, "pair": pair, "partner": partner, "ours: pair - STL": float(per_seed.mean()),
                         f"ours: {PROBED_MTL} - STL": mtl5, "paper: pair - STL": paper(t, pair),
                         "paper: MTL-5 - STL": paper(t, paper_values.PAPER_MTL)})
    columns = ["claim", "task", "pair", "partner", "support", "low", "high", "seeds", "seed sd", "sentence se",
               "verdict", "not met", "met", "ours: pair - STL", f"ours: {PROBED_MTL} - STL", "paper: pair - STL",
               "paper: MTL-5 - STL"]
    return pd.DataFrame(rows, columns=columns)


def pairwise_text(table: pd.DataFrame, setting: str) -> str:
    """The prose of chapter 5's pairwise result: per row of ``pairwise_claims``, the pair minus STL
    with its interval, the verdict on "the pair pulls the heads back below STL" and the paper's
    value; or that the profile's ``pairwise_mtl`` (``setting``) probes no pair."""
    if table.empty:
        return f"This profile probes no pair (pairwise_mtl: {setting}; see the deviations below)."  # plain glued text
    parts = []
    for row in table.to_dict("records"):
        paper = row["paper: pair - STL"]
        pair, low, high = (0.0 - row[c] for c in ("support", "high", "low"))  # the support negated (never "-0.0")
        parts.append(f"{row['task'].upper()} beside {row['partner'].upper()} {pair:+.1f} "
                     f"({low:+.1f} to {high:+.1f}; {row['verdict']}"
                     + (f"; the paper {paper:+.1f})" if np.isfinite(paper) else ")"))
    return "Each pair minus STL, on the task's probe: " + ", ".join(parts) + "."


def _claim_row(claim: str, task: str, per_seed: np.ndarray, per_resample: np.ndarray, preconditions: list) -> dict:
    v = verdicts.decide_over_seeds_and_sentences(per_seed, per_resample, _unique(preconditions))
    interval = verdicts.seed_and_sentence_interval(per_seed, per_resample)
    return {"claim": claim, "task": task, "support": v.estimate, "low": v.low, "high": v.high, "seeds": v.n,
            "seed sd": interval["sd"], "sentence se": interval["sentence se"], "verdict": v.word,
            "not met": "; ".join(v.failed), "met": "; ".join(v.met)}


def _unique(preconditions: list) -> list:
    """Preconditions without repeats, in order (a claim over tasks lists each task's)."""
    return list(dict.fromkeys(preconditions))


def specificity_matrix(probed: dict[RunKey, dict], min_count: int = 1) -> pd.DataFrame:
    """Rows: each task's STL model and MTL-5; columns: every task's main probe; cells: the mean over
    labels (at least ``min_count`` items) of the best head's accuracy minus the pretrained
    encoder's, averaged over seeds. A task-specific STL model raises its own column most."""
    pre = probed[RunKey.pretrained()]
    base = {t: pre[(t, probes.main_variant(t))] for t in TASKS}
    labels = {t: chosen_labels(base[t], min_count) for t in TASKS}
    rows = {}
    for name, keys in [(f"STL {a.upper()}", [k for k in probed if k.tasks == (a,) and k.gate_lambda is None])
                       for a in TASKS] + [(PROBED_MTL, [k for k in probed if k == probed_mtl(k.seed)])]:
        rows[name] = {b.upper(): float(np.mean([probed[k][(b, probes.main_variant(b))].best_accuracy()[labels[b]].mean()
                                                for k in keys]) - base[b].best_accuracy()[labels[b]].mean())
                      for b in TASKS}
    return pd.DataFrame(rows).T


def specificity_claim(probed: dict[RunKey, dict], results: list[RunResult], baselines: pd.DataFrame,
                      min_count: int = 1, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """"STL specialisation is task-specific": per probe task B, the gain over the pretrained encoder
    of STL-B minus the mean gain of the other four STL models on B, averaged over B (support),
    per seed and per bootstrap resample, by the verdict rule (preconditions as ``probe_claims``')."""
    weights = probes.bootstrap_weights(resamples, seed)
    pre = probed[RunKey.pretrained()]
    seeds = sorted({k.seed for k in probed if len(k.tasks) == 1 and k.gate_lambda is None})
    per_seed, per_resample = [], []
    for s in seeds:
        own_point, own_resampled = [], []
        for b in TASKS:
            variant = probes.main_variant(b)
            labels = chosen_labels(pre[(b, variant)], min_count)
            scores = {a: _label_mean(probed[RunKey.stl(a, s)][(b, variant)], labels, weights) for a in TASKS}
            own_point.append(scores[b][0] - np.mean([scores[a][0] for a in TASKS if a != b]))
            own_resampled.append(scores[b][1] - np.mean([scores[a][1] for a in TASKS if a != b], axis=0))
        per_seed.append(np.mean(own_point))
        per_resample.append(np.mean(own_resampled, axis=0))
    conditions = [c for t in TASKS for c in (beats_free(baselines, t), stl_converged(results, t))]
    return _claim_row("STL specialisation is task-specific", "mean", np.array(per_seed),
                      np.mean(per_resample, axis=0), conditions)


def paper_comparison(claims: pd.DataFrame) -> pd.DataFrame:
    """Per task, our MTL-5 - STL (mean over the ``PAPER_TOP`` most frequent labels, with its
    interval; from ``probe_claims(top=PAPER_TOP)``) beside the paper's (``paper_values``)."""
    from mtlheads import paper_values

    ours = claims[(claims["claim"] == "MTL-5 below STL") & claims["task"].isin(TASKS)].set_index("task")
    return pd.DataFrame({"ours: MTL-5 - STL": -ours["support"], "low": -ours["high"], "high": -ours["low"],
                         "paper: MTL-5 - STL": paper_values.mean_deltas(PAPER_TOP)}).reindex(TASKS)


def paper_pos_labels(deltas: pd.DataFrame) -> pd.DataFrame:
    """The paper's ten most frequent POS labels: its pretrained, STL and MTL-5 best-head accuracy
    (mean, sd) beside ours (``label_deltas``' means and seed sds; NaN for a tag EWT5's test
    sentences lack or that has too few items)."""
    from mtlheads import paper_values

    paper = paper_values.probe_table("pos")
    ours = deltas[deltas["task"] == "pos"].set_index("label")
    out = pd.DataFrame(index=paper.index)
    for name, paper_name in [(PRETRAINED, PRETRAINED), ("STL", "STL"), (PROBED_MTL, paper_values.PAPER_MTL)]:
        out[f"paper {paper_name}"] = paper[paper_name]
        if f"{paper_name} sd" in paper:
            out[f"paper {paper_name} sd"] = paper[f"{paper_name} sd"]
        out[f"ours {name}"] = ours[name].reindex(out.index) if name in ours else np.nan
        if name != PRETRAINED and f"{name} sd" in ours:
            out[f"ours {name} sd"] = ours[f"{name} sd"].reindex(out.index)
    return out


def claimed_change(paths: dict[tuple[str, int], GatePath], probed: dict[RunKey, dict], top: int,
                   results: list[RunResult]) -> dict:
    """Chapter 5's link to chapter 3, per seed with both: how many STL tasks keep each head among
    their ``top`` last to close (``claimed_heads``) against the mean over tasks of the absolute
    change of the head's probe accuracy from the task's STL model to MTL-5 (all items), as their
    Spearman correlation; the claim "the heads many tasks claim are the ones MTL-5 changes most"
    (support: the correlation) by the verdict rule over seeds (preconditions: STL converged).
    Returns the per-seed correlations, the verdict, and the first seed's two maps."""
    from scipy import stats

    seeds = sorted({seed for name, seed in paths if name in STL_NAMES} & {k.seed for k in probed if not k.is_pretrained})
    rhos, maps = [], {}
    for seed in seeds:
        claimed = claimed_heads(paths, top, seed)
        change = np.mean([np.abs(probed[probed_mtl(seed)][(t, probes.main_variant(t))].head_accuracy()
                                 - probed[RunKey.stl(t, seed)][(t, probes.main_variant(t))].head_accuracy())
                          for t in TASKS], axis=0)
        rho = stats.spearmanr(claimed.ravel(), change.ravel())[0] if np.ptp(claimed) and np.ptp(change) else np.nan
        rhos.append(float(rho))
        maps.setdefault("claimed", claimed)
        maps.setdefault("change", change)
    measured = [r for r in rhos if not np.isnan(r)]
    if not measured:
        raise ValueError(f"no seed of {seeds} has heads that differ in how many tasks claim them")
    verdict = verdicts.decide_over_seeds(measured, [stl_converged(results, t) for t in TASKS])
    return {"seeds": seeds, "rho": rhos, "verdict": verdict, **maps}


def patching_check(paths: dict[tuple[str, int], GatePath], knobs: dict, corpus=None) -> pd.DataFrame:
    """Chapter 5's causal link to chapter 3: per seed and task T, MTL-5 joint's dev score on T (on
    the gated phases' dev sentences) with the heads most STL tasks keep (``shared_heads``, as many
    as chapter 3's causal check removes) taking their outputs from STL-T's run on the same input
    (``patching.patched_from``), and with as many random heads of the same layers patched
    (``gate_mask_draws`` draws, mean), beside MTL-5's and STL-T's own scores; cached per seed."""
    corpus = corpus if corpus is not None else ewt5.load()
    heads = next(iter(paths.values())).records[0].size
    top, k, draws = head_count(knobs["gate_top"], heads), head_count(knobs["gate_mask_share"], heads), knobs["gate_mask_draws"]
    rows = []
    seeds = sorted({seed for name, seed in paths if name in STL_NAMES and (GATED_MTL, seed) in paths})
    for seed in tqdm(seeds, desc="patching heads"):
        shared = shared_heads(paths, top, seed, k)
        masks = [shared] + pruning.same_layer_draws(shared, draws, seed=seed)
        mtl_path = paths[GATED_MTL, seed]
        target = mtl_path.config.base
        sources = {name: paths[name, seed].config.base for name in STL_NAMES}
        sentences = mtl_path.config.dev_sentences or target.dev_sentences
        scores = cache.cached("patched", {"target": asdict(target), "sources": {n: asdict(c) for n, c in sources.items()},
                                          "masks": [m.tolist() for m in masks], "dev_sentences": sentences},
                              lambda: _patched_scores(target, sources, masks, corpus, sentences),
                              inputs=run_inputs(target), code=[patching, sys.modules[__name__]])
        for name in STL_NAMES:
            task = sources[name].tasks[0]
            mtl, stl = mtl_path.base_dev[task], paths[name, seed].base_dev[task]
            random = float(np.mean(scores[name][1:]))
            rows.append({"seed": seed, "task": name, "MTL-5": mtl, "STL": stl, "STL - MTL-5": stl - mtl,
                         "shared patched": scores[name][0], "random patched": random,
                         "gain (shared)": scores[name][0] - mtl, "gain (random)": random - mtl,
                         "shared - random": scores[name][0] - random})
    return pd.DataFrame(rows)


def _patched_scores(target: TrainConfig, sources: dict[str, TrainConfig], masks: list[np.ndarray], corpus,
                    sentences: int) -> dict[str, list[float]]:
    """Per STL source: the target model's dev score on the source's task with each mask's heads
    patched from the source model's run (only that task's decoder evaluated)."""
    model = load_model(train_cached(target, corpus, progress=False), corpus)
    decoders = model.decoders
    dev_set = corpus_split(corpus, "dev", sentences)
    out = {}
    try:
        for name, config in sources.items():
            task = config.tasks[0]
            source = load_model(train_cached(config, corpus, progress=False), corpus).encoder
            model.decoders = torch.nn.ModuleDict({task: decoders[task]})
            out[name] = []
            for mask in masks:
                with torch.no_grad(), patching.patched_from(model.encoder, source, mask):
                    out[name].append(float(evaluate(model, dev_set)[task][TASK_CLASSES[task].metric]))
    finally:
        model.decoders = decoders
    return out


def patching_claim(table: pd.DataFrame, results: list[RunResult]) -> "verdicts.Verdict":
    """"Patching the shared heads from STL-T gives back more of T's score than patching as many
    random heads of their layers": support per seed, the mean over tasks of shared - random
    (``patching_check``); preconditions: the STL runs converged, and STL is above MTL-5 on these
    dev sentences on average (there is a gap to give back)."""
    per_seed = table.groupby("seed")["shared - random"].mean()
    gap = float(table["STL - MTL-5"].mean())
    conditions = [stl_converged(results, t) for t in TASKS]
    conditions.append(verdicts.Precondition(f"STL above MTL-5 on these dev sentences (by {gap:+.1f} on average)", gap > 0))
    return verdicts.decide_over_seeds(per_seed.to_numpy(), conditions)
