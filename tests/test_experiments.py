import math

import pytest

from mtlheads import experiments
from mtlheads.registry import MTL
from mtlheads.tasks import TASK_CLASSES, TASKS
from mtlheads.train import TrainConfig, RunResult

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
    # 9 points against 2 x sqrt(2) on every task but NER, whose 2 points are within 2 x sqrt(8)
    assert experiments.differences_beyond(table, MTL, 2.0) == n - 1


def test_with_one_seed_the_spread_is_empty_and_no_difference_counts_as_beyond_it():
    table = experiments.score_table(fake_runs({1: dict.fromkeys(TASKS, 50.0)}, {1: dict.fromkeys(TASKS, 90.0)}))
    spread = experiments.seed_spread(table)
    assert math.isnan(spread["max"]) and math.isnan(spread["mean"])
    assert experiments.differences_beyond(table, MTL, 2.0) == 0


def test_chapter_two_seeds_fall_back_to_the_books_seeds():
    knobs = {"seeds": [1], "stl_mtl_seeds": [1, 2]}
    assert experiments.stl_mtl_seeds(knobs) == [1, 2]
    assert experiments.stl_mtl_seeds({**knobs, "stl_mtl_seeds": None}) == [1]
