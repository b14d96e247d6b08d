"""The runs a chapter asks for, built from a profile's knobs, and the tables made from them."""

from __future__ import annotations

import sys

from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from mtlheads import cache, devices, probes, profiles, verdicts
from mtlheads.data import ewt5
from mtlheads.encoder import fingerprint, load_encoder
from mtlheads.gates import OPEN_THRESHOLD, evaluation_gates
from mtlheads.registry import MTL, MTL_JOINT, MTL_STL_UPDATES, PRETRAINED, RunKey
from mtlheads.tasks import TASK_CLASSES, TASKS, build_task
from mtlheads.train import TrainConfig, RunResult, corpus_split, load_model, train_cached, train_many

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
    and MTL-5 runs chapters 4-5 probe (chapter 2's own where the seeds agree) and, with
    ``pairwise_mtl``, every task pair's; chapter 3's gated runs (each task's lambda, and MTL-5's
    in ``gate_mtl_mode``) and its pruning curve, with the gates' recipe (encoder learning rate
    1e-5, ``gate_lr``). The chapters select their runs from this one table."""
    scale, seeds = run_knobs(knobs), knobs["seeds"]
    lambdas = gate_lambdas(knobs)
    keys = stl_mtl_keys(knobs)
    if knobs.get("pairwise_mtl"):
        keys += [RunKey.mtl(seed, (a, b)) for seed in seeds for i, a in enumerate(TASKS) for b in TASKS[i + 1:]]
    gated = [key for seed in seeds for key in [RunKey.stl(t, seed, lambdas[t]) for t in TASKS]
             + [RunKey.mtl(seed, mtl_mode=knobs["gate_mtl_mode"], gate_lambda=lambdas["mtl"])]]
    gated += [RunKey.stl(knobs["pruning_task"], seeds[0], lam) for lam in knobs["pruning_lambdas"]]

    def config(key: RunKey) -> TrainConfig:
        recipe = {"lr_encoder": 1e-5, "lr_gates": knobs["gate_lr"]} if key.gate_lambda is not None else {}
        return TrainConfig(**{**scale, "tasks": key.tasks, "encoder": knobs["encoder"], "seed": key.seed,
                              "mtl_mode": key.mtl_mode, "gate_lambda": key.gate_lambda, "updates": key.updates,
                              **recipe})

    return {key: config(key) for key in dict.fromkeys(keys + gated)}


def stl_mtl_keys(knobs: dict) -> list[RunKey]:
    """Chapter 2's runs: for each of its seeds an STL run per task and the two MTL-5 runs that make
    as many encoder updates as one STL run (joint; sampled with ``updates="stl"``), and with
    ``paper_mtl`` the paper's MTL-5 (sampled, the STL runs' epochs per task: five times the
    updates); then the STL and MTL-5 joint runs of the book's seeds (chapters 4-5 probe them)."""
    keys = [key for seed in stl_mtl_seeds(knobs) for key in [RunKey.stl(t, seed) for t in TASKS] + [
        RunKey.mtl(seed, mtl_mode="joint"), RunKey.mtl(seed, updates="stl")] + ([RunKey.mtl(seed)] if knobs["paper_mtl"] else [])]
    keys += [key for seed in knobs["seeds"] for key in [RunKey.stl(t, seed) for t in TASKS] + [probed_mtl(seed)]]
    return list(dict.fromkeys(keys))


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
    """The book's convergence criterion: a run has converged when its best dev score after the
    last evaluation at or before ``1 - share`` of its steps exceeds that evaluation's by less
    than ``gain`` points. Not measurable (``converged`` False, ``gain`` NaN) without an
    evaluation on each side of that point."""
    tasks, cut = result.config.tasks, (1 - share) * result.steps
    before = [p for p in result.dev_curve if p["step"] <= cut]
    after = [p for p in result.dev_curve if p["step"] > cut]
    if not before or not after:
        return {"from step": float("nan"), "dev then": float("nan"), "best dev after": float("nan"),
                "gain": float("nan"), "converged": False}
    start, best = run_dev(before[-1], tasks), max(run_dev(p, tasks) for p in after)
    return {"from step": before[-1]["step"], "dev then": start, "best dev after": best, "gain": best - start,
            "converged": bool(best - start < gain)}


def convergence_table(results: list[RunResult]) -> pd.DataFrame:
    """``convergence`` of every run: one row per model and seed."""
    return pd.DataFrame([{"model": r.config.label, "seed": r.config.seed, "steps": r.steps, **convergence(r)}
                         for r in results])


def _by_task_and_seed(results: list[RunResult]) -> dict[tuple[str, str, int], RunResult]:
    return {(setting(r), task, r.config.seed): r for r in results for task in r.config.tasks}


def blind_scores(corpus, knobs: dict) -> dict[str, float]:
    """Each task's test score (its metric) of predictions that ignore the words (``Task.blind``),
    from the profile's training and test sentences: what a model must beat to have learned."""
    scale = run_knobs(knobs)
    train = corpus_split(corpus, "train", scale["train_sentences"])
    test = corpus_split(corpus, "test", scale["test_sentences"])
    return {t: build_task(t, train, 8).blind_score(train, test) for t in TASKS}


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
            "verdict": v.word, "not met": "; ".join(v.failed)}


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


def gate_lambdas(knobs: dict) -> dict[str, float]:
    """Each task's L0 weight and MTL's: the profile's, and the paper's for a task it does not name."""
    return {**PAPER_LAMBDAS, **knobs["gate_lambdas"]}


def gate_configs(knobs: dict) -> list[TrainConfig]:
    """Gated STL runs for each task and one gated MTL-5 run (one gate set shared by all tasks), per
    seed, at chapter 2's scale, so that chapter 2's ungated runs are their baselines."""
    lambdas = gate_lambdas(knobs)
    runs = stem_cell_runs(knobs)
    return [runs[key] for seed in knobs["seeds"] for key in [RunKey.stl(t, seed, lambdas[t]) for t in TASKS]
            + [RunKey.mtl(seed, mtl_mode=knobs["gate_mtl_mode"], gate_lambda=lambdas["mtl"])]]


def ungated_twin(config: TrainConfig, knobs: dict) -> TrainConfig:
    """Chapter 2's run with the same tasks, seed, scale and mode, without gates (its encoder
    learning rate the profile's)."""
    return stem_cell_runs(knobs)[replace(RunKey.of(config), gate_lambda=None)]


def pruning_curve_configs(knobs: dict) -> list[TrainConfig]:
    """One task's gated runs over several lambdas (first seed)."""
    runs = stem_cell_runs(knobs)
    return [runs[RunKey.stl(knobs["pruning_task"], knobs["seeds"][0], lam)] for lam in knobs["pruning_lambdas"]]


def gate_values(result: RunResult) -> np.ndarray:
    """Evaluation-time gate values (layers, heads) of a gated run."""
    return evaluation_gates(result.state_dict["gates.log_alpha"].float()).numpy()


def kept_heads(result: RunResult) -> np.ndarray:
    """Boolean (layers, heads): the heads a gated run keeps open (gate > 1e-3)."""
    return gate_values(result) > OPEN_THRESHOLD


def overlap_test(kept: dict[str, np.ndarray], permutations: int = 10000, seed: int = 0) -> dict:
    """Do the tasks keep the same heads more than chance? Null: each task keeps as many heads,
    placed at random. Statistic: the number of (task pair, head) coincidences, i.e. the sum over
    heads of k(k-1)/2 for a head kept by k tasks; it works whether tasks keep few heads or many.
    Also counted: heads kept by at least ``k_star`` tasks (all but one), observed and under the null."""
    masks = np.stack([m.ravel() for m in kept.values()])  # (tasks, heads)
    n_tasks, n_heads = masks.shape
    k_star = max(2, n_tasks - 1)
    rng = np.random.default_rng(seed)
    counts = masks.sum(1)
    # Null draws, all at once: a random permutation of the heads per draw and task, first c_t kept.
    ranks = rng.random((permutations, n_tasks, n_heads)).argsort(-1).argsort(-1)
    per_head_null = (ranks < counts[None, :, None]).sum(1)  # (permutations, heads)
    observed = masks.sum(0)

    def pairs(k):
        return (k * (k - 1) // 2).sum(-1)

    null_pairs = pairs(per_head_null)
    stat = int(pairs(observed))
    return {
        "observed": np.bincount(observed, minlength=n_tasks + 1),
        "null_mean": (per_head_null[..., None] == np.arange(n_tasks + 1)).sum(1).mean(0),
        "k_star": k_star,
        "shared": int((observed >= k_star).sum()),
        "shared_null_mean": float((per_head_null >= k_star).sum(-1).mean()),
        "statistic": stat,
        "null_statistic_mean": float(null_pairs.mean()),
        "p_value": float((1 + (null_pairs >= stat).sum()) / (1 + permutations)),
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


# Chapters 4 and 5: parameter-free probes and the label analysis ------------------------------

PROBED_MTL = MTL_JOINT  # the MTL-5 model chapters 4-5 probe: chapter 2's compute-matched one


def probed_mtl(seed: int) -> RunKey:
    """The key of the MTL-5 model chapters 4-5 probe for ``seed``: MTL-5 joint, which made as many
    encoder updates as each STL model (the paper's MTL-5 makes five times as many; chapter 2)."""
    return RunKey.mtl(seed, mtl_mode="joint")


def probe_models(knobs: dict) -> dict[RunKey, TrainConfig | None]:
    """The encoders to probe, by key: the pretrained encoder (``None``), chapter 2's STL model per
    task and MTL-5 joint (``probed_mtl``) for every seed, and with ``pairwise_mtl`` every task
    pair's MTL model."""
    runs = stem_cell_runs(knobs)
    chosen = [key for key in runs if key.gate_lambda is None and key.seed in knobs["seeds"]
              and (len(key.tasks) < len(TASKS) or key == probed_mtl(key.seed))]  # STL, pairs, MTL-5 joint
    return {RunKey.pretrained(): None} | {key: runs[key] for key in chosen}


def probe_cached(config: TrainConfig | None, knobs: dict, corpus=None, progress: bool = True) -> dict:
    """Every probe of one encoder (``None``: the pretrained one) on the test sentences, with
    centroids also fit on the first ``probe_fit_sentences`` training sentences; cached."""
    corpus = corpus if corpus is not None else ewt5.load()
    what = {"model": asdict(config) if config is not None else {PRETRAINED: knobs["encoder"], "device": knobs["device"]},
            "test_sentences": knobs["probe_test_sentences"], "fit_sentences": knobs["probe_fit_sentences"]}

    def compute():
        if config is None:
            encoder = load_encoder(knobs["encoder"]).to(devices.resolve(knobs["device"]))
        else:
            encoder = load_model(train_cached(config, corpus, progress), corpus).encoder
        name = RunKey.of(config).label if config is not None else PRETRAINED
        test = probes.read_heads(encoder, corpus_split(corpus, "test", knobs["probe_test_sentences"]),
                                 progress=progress, desc=f"probing {name} (test)")
        fit = probes.read_heads(encoder, corpus_split(corpus, "train", knobs["probe_fit_sentences"]),
                                tasks=probes.CENTROID_TASKS, progress=progress, desc=f"probing {name} (fit)")
        return probes.probe_all(test, fit)

    return cache.cached("probe", what, compute, inputs={"ewt5": ewt5.data_version(),
                                                        "encoder": fingerprint(knobs["encoder"])},
                        code=[sys.modules[__name__]])


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
