import math

import pytest

from mtlheads import experiments
from mtlheads.registry import MTL
from mtlheads.tasks import TASK_CLASSES, TASKS
from mtlheads.train import TrainConfig, RunResult, evaluation_steps

METRIC = {t: TASK_CLASSES[t].metric for t in TASKS}


def fake_run(tasks, seed, scores, mtl_mode="sample"):
    config = TrainConfig(tasks=tasks, seed=seed, mtl_mode=mtl_mode)
    return RunResult(config, test={t: {METRIC[t]: scores[t]} for t in tasks})


def fake_runs(stl: dict, mtl: dict) -> list[RunResult]:
    """Per seed, an STL run per task scoring stl[seed][task] and an MTL-5 run scoring mtl[seed][task]."""
    runs = []
    for seed in stl:
        runs += [fake_run((t,), seed, stl[seed]) for t in TASKS]
        runs.append(fake_run(TASKS, seed, mtl[seed]))
    return runs


def test_score_table_gives_mean_sd_and_difference_over_seeds_and_the_spread_summaries():
    stl = {1: dict.fromkeys(TASKS, 50.0), 2: dict.fromkeys(TASKS, 52.0)}
    mtl = {1: {**dict.fromkeys(TASKS, 60.0), "ner": 51.0}, 2: {**dict.fromkeys(TASKS, 60.0), "ner": 55.0}}
    table = experiments.score_table(fake_runs(stl, mtl))
    assert table.loc["pos", "STL"] == 51.0 and table.loc["pos", f"{MTL} - STL"] == 9.0
    assert table.loc["pos", "STL sd"] == pytest.approx(math.sqrt(2))  # sample sd of 50 and 52
    assert table.loc["ner", f"{MTL} sd"] == pytest.approx(math.sqrt(8))
    spread = experiments.seed_spread(table)
    assert spread["max"] == pytest.approx(math.sqrt(8)) and spread["where"] == f"NER {MTL}"
    n = len(TASKS)
    assert spread["mean"] == pytest.approx((n * math.sqrt(2) + (n - 1) * 0 + math.sqrt(8)) / (2 * n))


def test_with_one_seed_the_spread_is_empty():
    table = experiments.score_table(fake_runs({1: dict.fromkeys(TASKS, 50.0)}, {1: dict.fromkeys(TASKS, 90.0)}))
    spread = experiments.seed_spread(table)
    assert math.isnan(spread["max"]) and math.isnan(spread["mean"])


def test_chapter_two_seeds_fall_back_to_the_books_seeds():
    knobs = {"seeds": [1], "stl_mtl_seeds": [1, 2]}
    assert experiments.stl_mtl_seeds(knobs) == [1, 2]
    assert experiments.stl_mtl_seeds({**knobs, "stl_mtl_seeds": None}) == [1]


def curve_run(tasks, seed, dev_by_step, steps=None, test=None, **config):
    """A run whose dev curve has ``dev_by_step[step]`` (one score for every task) at each step."""
    config = TrainConfig(tasks=tasks, seed=seed, **config)
    curve = [{"step": step, "epoch": 0.0, "seconds": 0.0, "dev": dict.fromkeys(tasks, score)}
             for step, score in dev_by_step.items()]
    return RunResult(config, dev_curve=curve, steps=steps or max(dev_by_step),
                     test={t: {METRIC[t]: (test or {}).get(t, 50.0)} for t in tasks})


def test_convergence_measures_the_dev_gain_over_the_last_quarter():
    still_rising = curve_run(("pos",), 1, {25: 60.0, 50: 70.0, 75: 75.0, 100: 76.0})
    assert experiments.convergence(still_rising) == {"from step": 75, "dev then": 75.0, "best dev after": 76.0,
                                                       "gain": 1.0, "largest change": 1.0, "converged": False}
    falling = curve_run(("pos",), 1, {25: 60.0, 50: 70.0, 75: 75.0, 100: 60.0})  # dev drops: not settled either
    assert experiments.convergence(falling)["largest change"] == -15.0 and not experiments.convergence(falling)["converged"]
    flat = curve_run(("pos",), 1, {25: 60.0, 50: 70.0, 75: 75.0, 100: 75.4})
    assert experiments.convergence(flat)["converged"] and experiments.convergence(flat)["gain"] == pytest.approx(0.4)
    # the evaluation at or before 3/4 starts the quarter: here the one at 2/3 of 90 steps
    thirds = curve_run(("pos",), 1, {30: 60.0, 60: 70.0, 90: 70.2})
    assert experiments.convergence(thirds)["from step"] == 60 and experiments.convergence(thirds)["converged"]
    # the evaluation the schedule puts at 3/4 of 250 steps (``evaluation_steps``: step 188) starts it
    config = TrainConfig(tasks=("pos",), eval_fractions=(0.125, 0.25, 0.5, 0.75, 1.0))
    steps = sorted(evaluation_steps(config, 250))
    assert steps == [31, 62, 125, 188, 250]
    default = curve_run(("pos",), 1, dict(zip(steps, [50.0, 60.0, 70.0, 75.0, 75.3])))
    assert experiments.convergence(default)["from step"] == 188 and experiments.convergence(default)["converged"]
    one_point = curve_run(("pos",), 1, {100: 70.0})
    assert not experiments.convergence(one_point)["converged"] and math.isnan(experiments.convergence(one_point)["gain"])


def verdict_runs(stl_test: dict, mtl_test: dict, stl_gain: float, mtl_steps: int = 100, **mtl_config):
    """Per seed, STL runs (dev gain ``stl_gain`` over their last quarter) and one MTL-5 run."""
    runs = []
    for seed in stl_test:
        runs += [curve_run((t,), seed, {25: 50.0, 75: 60.0, 100: 60.0 + stl_gain}, test={t: stl_test[seed]})
                 for t in TASKS]
        runs.append(curve_run(TASKS, seed, {25: 50.0, 75: 60.0, 100: 60.0}, steps=mtl_steps,
                              test=dict.fromkeys(TASKS, mtl_test[seed]), **mtl_config))
    return runs


BLIND = dict.fromkeys(TASKS, 10.0)


def test_stl_mtl_verdicts_hold_only_with_preconditions_met():
    from mtlheads import verdicts
    from mtlheads.registry import MTL_JOINT

    behind = verdict_runs({1: 60.0, 2: 61.0, 3: 59.0}, {1: 55.0, 2: 56.5, 3: 54.0}, 0.1, mtl_mode="joint")
    table = experiments.stl_mtl_verdicts(behind, MTL_JOINT, BLIND)
    assert table.loc["mean", "verdict"] == verdicts.HOLDS and table.loc["mean", "seeds"] == 3
    assert table.loc["mean", "MTL - STL"] == pytest.approx(-(5 + 4.5 + 5) / 3)
    assert table.loc["mean", "high"] < 0 and table.loc["pos", "verdict"] == verdicts.HOLDS
    ahead = verdict_runs({1: 55.0, 2: 56.5, 3: 54.0}, {1: 60.0, 2: 61.0, 3: 59.0}, 0.1, mtl_mode="joint")
    assert experiments.stl_mtl_verdicts(ahead, MTL_JOINT, BLIND).loc["mean", "verdict"] == verdicts.DOES_NOT_HOLD
    mixed = verdict_runs({1: 60.0, 2: 55.0, 3: 58.0}, {1: 55.0, 2: 60.0, 3: 58.5}, 0.1, mtl_mode="joint")
    assert experiments.stl_mtl_verdicts(mixed, MTL_JOINT, BLIND).loc["mean", "verdict"] == verdicts.NOT_SHOWN
    rising = verdict_runs({1: 60.0, 2: 61.0, 3: 59.0}, {1: 55.0, 2: 56.5, 3: 54.0}, 2.0, mtl_mode="joint")
    table = experiments.stl_mtl_verdicts(rising, MTL_JOINT, BLIND)
    assert table.loc["mean", "verdict"] == verdicts.UNTESTABLE and "converged (0 of" in table.loc["mean", "not met"]
    unlearned = experiments.stl_mtl_verdicts(behind, MTL_JOINT, dict.fromkeys(TASKS, 60.5))
    assert unlearned.loc["mean", "verdict"] == verdicts.UNTESTABLE and "input-blind" in unlearned.loc["mean", "not met"]


def test_the_papers_comparison_at_five_times_the_updates_is_untestable():
    from mtlheads import verdicts

    paper = verdict_runs({1: 60.0, 2: 61.0, 3: 59.0}, {1: 55.0, 2: 56.5, 3: 54.0}, 0.1, mtl_steps=500)
    table = experiments.stl_mtl_verdicts(paper, MTL, BLIND)
    assert table.loc["mean", "verdict"] == verdicts.UNTESTABLE
    assert "equal encoder updates (MTL made 5.0x STL's)" in table.loc["mean", "not met"]


def test_gap_curve_pairs_steps_and_the_trend_names_its_direction():
    from mtlheads.registry import MTL_JOINT

    runs = []
    for seed in (1, 2):
        runs += [curve_run((t,), seed, {10: 40.0, 20: 50.0, 40: 60.0}) for t in TASKS]
        runs.append(curve_run(TASKS, seed, {10: 30.0, 20: 46.0, 40: 59.0}, mtl_mode="joint"))
    curve = experiments.gap_curve(runs, MTL_JOINT)
    assert len(curve) == 2 * len(TASKS) * 3
    assert curve[(curve.task == "pos") & (curve.updates == 10)]["gap"].tolist() == [-10.0, -10.0]
    trend = experiments.gap_trend(curve)
    assert trend.loc["pos", "trend"] == "shrinks" and trend.loc["pos", "gap at the end"] == -1.0
    flipped = curve.assign(gap=curve["gap"].where(curve.updates != 40, 3.0))
    assert experiments.gap_trend(flipped).loc["ner", "trend"] == "changes sign"
    flat = curve.assign(gap=0.0)
    assert experiments.gap_trend(flat).loc["dep", "trend"] == "stays"


def test_lr_sweep_chooses_the_rate_of_the_best_mean_rank_over_tasks(monkeypatch):
    """Scores on different scales (POS near 90, SRL near 10) are compared by rank, not summed."""
    dev = {5e-5: {"pos": 90.0, "ner": 20.0, "dep": 50.0, "con": 60.0, "srl": 10.0},
           1e-4: {"pos": 91.0, "ner": 30.0, "dep": 55.0, "con": 62.0, "srl": 9.0},
           2e-4: {"pos": 89.0, "ner": 25.0, "dep": 52.0, "con": 61.0, "srl": 30.0}}

    def fake_run_all(configs, corpus=None, workers=1):
        assert {c.seed for c in configs} == {experiments.SWEEP_SEED}
        return [RunResult(c, dev={c.tasks[0]: {METRIC[c.tasks[0]]: dev[c.lr_encoder][c.tasks[0]]}}) for c in configs]

    monkeypatch.setattr(experiments, "run_all", fake_run_all)
    from mtlheads import profiles

    table = experiments.lr_sweep(profiles.load("smoke"), rates=tuple(dev))
    assert table.loc[1e-4, "mean rank"] == pytest.approx((1 + 1 + 1 + 1 + 3) / 5)
    assert table["chosen"].tolist() == [False, True, False]  # 2e-4 has the best mean score, not rank
    assert table.loc[2e-4, "mean"] > table.loc[1e-4, "mean"]


def test_floor_table_sets_stl_test_scores_against_their_floors_with_the_last_quarter_gain():
    floors = experiments.STL_FLOORS
    runs = [curve_run((t,), seed, {75: 60.0, 100: 60.0 + gain}, test={t: floors[t] + offset})
            for seed, gain, offset in ((1, 0.2, 1.0), (2, 3.0, -3.0)) for t in TASKS]
    runs.append(curve_run(TASKS, 1, {75: 60.0, 100: 60.0}, test=dict.fromkeys(TASKS, 99.0)))  # MTL: not counted
    table = experiments.floor_table(runs)
    assert list(table.index) == list(TASKS)
    assert table.loc["pos", "STL"] == pytest.approx(floors["pos"] - 1.0) and table.loc["pos", "short by"] == pytest.approx(1.0)
    assert not table["reached"].any() and (table["runs converged"] == 1).all() and (table["runs"] == 2).all()
    assert table.loc["srl", "last-quarter gain"] == pytest.approx(1.6)
    above = experiments.floor_table([curve_run(("ner",), 1, {75: 60.0, 100: 60.0}, test={"ner": floors["ner"] + 2.0})])
    assert list(above.index) == ["ner"] and above.loc["ner", "reached"] and above.loc["ner", "short by"] == 0.0
