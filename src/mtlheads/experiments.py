"""The runs a chapter asks for, built from a profile's knobs, and the tables made from them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlheads.data.ewt5 import TASKS
from mtlheads.tasks import TASK_CLASSES
from mtlheads.train import TrainConfig, TrainResult, train_cached

SCALE_KNOBS = ("train_sentences", "dev_sentences", "test_sentences", "epochs", "evaluations", "patience",
               "batch_size")


def stl_mtl_configs(knobs: dict, mtl_modes=("sample", "joint")) -> list[TrainConfig]:
    """Five STL runs and one MTL-5 run per mode, for every seed, at the profile's scale."""
    scale = {k: knobs[k] for k in SCALE_KNOBS}
    configs = []
    for seed in knobs["seeds"]:
        configs += [TrainConfig(tasks=(t,), encoder=knobs["encoder"], seed=seed, **scale) for t in TASKS]
        configs += [TrainConfig(tasks=TASKS, encoder=knobs["encoder"], seed=seed, mtl_mode=m, **scale)
                    for m in mtl_modes]
    return configs


def run_all(configs: list[TrainConfig], corpus=None) -> list[TrainResult]:
    """Train (or fetch from the run cache) every config, in order."""
    return [train_cached(c, corpus) for c in configs]


def setting(result: TrainResult) -> str:
    """``STL``, ``MTL-5`` or ``MTL-5 joint``: the column a run belongs to."""
    return "STL" if len(result.config.tasks) == 1 else result.config.label


def score_table(results: list[TrainResult], split: str = "test") -> pd.DataFrame:
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
    settings = [s for s in ("STL", "MTL-5", "MTL-5 joint") if ("mean", s) in table.columns]
    for s in settings:
        out[f"{s}"] = table[("mean", s)]
        out[f"{s} sd"] = table[("std", s)]
    for s in settings[1:]:
        out[f"{s} - STL"] = out[s] - out["STL"]
    out.insert(0, "metric", [TASK_CLASSES[t].metric for t in out.index])
    return out


def dev_curves(results: list[TrainResult]) -> pd.DataFrame:
    """Long table of dev scores: task, setting, seed, epoch, score."""
    rows = [{"task": task, "setting": setting(r), "seed": r.config.seed, "epoch": point["epoch"], "score": score}
            for r in results for point in r.dev_curve for task, score in point["dev"].items()]
    return pd.DataFrame(rows)


def timing_table(results: list[TrainResult]) -> pd.DataFrame:
    """Training time and throughput per model (mean over seeds)."""
    rows = [{"model": r.config.label, "seed": r.config.seed, "train seconds": r.train_seconds, "steps": r.steps,
             "subwords/s": r.train_subwords / max(r.train_seconds, 1e-9), "best step": r.best_step}
            for r in results]
    return pd.DataFrame(rows).groupby("model", sort=False).mean(numeric_only=True).drop(columns="seed")


def all_scores(results: list[TrainResult], split: str = "test") -> pd.DataFrame:
    """Every metric of every run: one row per (run, task)."""
    rows = []
    for r in results:
        for task, metrics in getattr(r, split).items():
            rows.append({"model": r.config.label, "seed": r.config.seed, "task": task,
                         **{k: float(v) for k, v in metrics.items()}})
    return pd.DataFrame(rows)


def mean_difference(table: pd.DataFrame, column: str) -> float:
    return float(np.nanmean(table[column].to_numpy(dtype=float)))


# Chapter 3: head pruning with Hard-Concrete gates ------------------------------------------

PAPER_LAMBDAS = {"pos": 0.01, "ner": 2e-4, "dep": 0.01, "con": 0.01, "srl": 1e-3, "mtl": 1e-3}


def _gated(knobs: dict, **fields) -> TrainConfig:
    scale = {k: knobs[k] for k in SCALE_KNOBS}
    return TrainConfig(encoder=knobs["encoder"], lr_encoder=1e-5, lr_gates=knobs["gate_lr"], **scale, **fields)


def gate_configs(knobs: dict) -> list[TrainConfig]:
    """Gated STL runs for each task and one gated MTL-5 run (one gate set shared by all tasks), per
    seed, at chapter 2's scale, so that chapter 2's ungated runs are their baselines."""
    lambdas = knobs["gate_lambdas"]
    configs = []
    for seed in knobs["seeds"]:
        configs += [_gated(knobs, tasks=(t,), seed=seed, gate_lambda=lambdas[t]) for t in TASKS]
        configs.append(_gated(knobs, tasks=TASKS, seed=seed, gate_lambda=lambdas["mtl"], mtl_mode=knobs["gate_mtl_mode"]))
    return configs


def ungated_twin(config: TrainConfig) -> TrainConfig:
    """Chapter 2's run with the same tasks, seed, scale and mode, without gates."""
    from dataclasses import replace

    return replace(config, gate_lambda=None, lr_encoder=TrainConfig.lr_encoder, lr_gates=TrainConfig.lr_gates)


def pruning_curve_configs(knobs: dict) -> list[TrainConfig]:
    """One task's gated runs over several lambdas (first seed)."""
    return [_gated(knobs, tasks=(knobs["pruning_task"],), seed=knobs["seeds"][0], gate_lambda=lam)
            for lam in knobs["pruning_lambdas"]]


def gate_values(result: TrainResult) -> np.ndarray:
    """Evaluation-time gate values (layers, heads) of a gated run."""
    from mtlheads.gates import evaluation_gates

    return evaluation_gates(result.state_dict["gates.log_alpha"].float()).numpy()


def kept_heads(result: TrainResult) -> np.ndarray:
    """Boolean (layers, heads): the heads a gated run keeps open (gate > 1e-3)."""
    from mtlheads.gates import OPEN_THRESHOLD

    return gate_values(result) > OPEN_THRESHOLD


def overlap_test(kept: dict[str, np.ndarray], permutations: int = 10000, seed: int = 0) -> dict:
    """How many heads are kept by k of the tasks, against a null where each task keeps as many
    heads placed at random. Statistic: heads kept by at least ``k_star`` tasks (``k_star`` = all
    but one); p-value: share of null draws at least as large."""
    masks = np.stack([m.ravel() for m in kept.values()])  # (tasks, heads)
    n_tasks, n_heads = masks.shape
    observed = masks.sum(0)
    k_star = max(2, n_tasks - 1)
    rng = np.random.default_rng(seed)
    counts = masks.sum(1)
    null_hist = np.zeros((permutations, n_tasks + 1))
    null_stat = np.zeros(permutations)
    for i in range(permutations):
        draw = np.zeros((n_tasks, n_heads), dtype=bool)
        for t, c in enumerate(counts):
            draw[t, rng.choice(n_heads, size=c, replace=False)] = True
        per_head = draw.sum(0)
        null_hist[i] = np.bincount(per_head, minlength=n_tasks + 1)
        null_stat[i] = (per_head >= k_star).sum()
    stat = int((observed >= k_star).sum())
    return {
        "observed": np.bincount(observed, minlength=n_tasks + 1),
        "null_mean": null_hist.mean(0),
        "k_star": k_star,
        "statistic": stat,
        "null_statistic_mean": float(null_stat.mean()),
        "p_value": float((1 + (null_stat >= stat).sum()) / (1 + permutations)),
        "per_head": observed.reshape(next(iter(kept.values())).shape),
    }


def gate_correlations(gates_by_run: dict[tuple[str, int], np.ndarray]) -> pd.DataFrame:
    """Pearson correlation of gate vectors between tasks (off-diagonal, mean over seed pairs) and
    across seeds of the same task (diagonal; empty with one seed)."""
    settings = list(dict.fromkeys(s for s, _ in gates_by_run))
    table = pd.DataFrame(index=settings, columns=settings, dtype=float)
    for a in settings:
        for b in settings:
            values = [np.corrcoef(ga.ravel(), gb.ravel())[0, 1]
                      for (sa, ia), ga in gates_by_run.items() if sa == a
                      for (sb, ib), gb in gates_by_run.items() if sb == b
                      if (a != b or ia < ib) and ga.std() > 0 and gb.std() > 0]
            table.loc[a, b] = float(np.mean(values)) if values else np.nan
    return table
