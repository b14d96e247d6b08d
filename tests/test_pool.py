"""``pool.run_jobs``: cached jobs side by side, each after the jobs it needs, each computed once."""

import json
import os
import time
from pathlib import Path

import pytest

from mtlheads import pool


def _marker(config) -> Path:
    folder, name, _, _ = config
    return Path(folder) / f"{name}.json"


def _done(config) -> bool:
    return _marker(config).exists()


def _run(config, corpus, on_step):
    """A stand-in for a cached computation: the marker file is its cache entry; it records when
    it ran, in which process, and whether the markers of the jobs it needs were there."""
    folder, name, needs, seconds = config
    if _done(config):
        return json.loads(_marker(config).read_text())
    start = time.time()
    needed_there = all((Path(folder) / f"{n}.json").exists() for n in needs)
    time.sleep(seconds)
    for _ in range(3):
        if on_step is not None:
            on_step()
    record = {"name": name, "pid": os.getpid(), "start": start, "end": time.time(), "needed there": needed_there,
              "corpus": corpus}
    with open(Path(folder) / "log.txt", "a") as log:
        log.write(name + "\n")
    tmp = _marker(config).with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.rename(_marker(config))
    return record


@pytest.mark.parametrize("workers", [1, 2])
def test_jobs_run_once_after_what_they_need_and_come_back_in_order(tmp_path, workers):
    folder = str(tmp_path)
    configs = [(folder, "base", (), 0.6), (folder, "quick", (), 0.1), (folder, "on base", ("base",), 0.1),
               (folder, "on quick", ("quick",), 0.1), (folder, "hidden", (), 0.1)]
    jobs = [pool.Job(_run, _done, configs[0], 3), pool.Job(_run, _done, configs[1], 3),
            pool.Job(_run, _done, configs[2], 3, after=(0,)), pool.Job(_run, _done, configs[3], 3, after=(1,)),
            pool.Job(_run, _done, configs[4], 3, keep=False)]
    results = pool.run_jobs(jobs, corpus="the corpus", workers=workers)
    assert [r["name"] for r in results[:4]] == ["base", "quick", "on base", "on quick"] and results[4] is None
    assert sorted((tmp_path / "log.txt").read_text().split("\n")[:-1]) == sorted(c[1] for c in configs)  # once each
    assert all(r["needed there"] and r["corpus"] == "the corpus" for r in results[:4])
    assert results[2]["start"] >= results[0]["end"] and results[3]["start"] >= results[1]["end"]
    pids = {r["pid"] for r in results[:4]}
    assert (pids == {os.getpid()}) if workers == 1 else (os.getpid() not in pids and len(pids) == 2)
    if workers == 2:  # while the long job ran, the other worker did the short ones
        assert results[1]["end"] <= results[0]["end"] and results[3]["start"] < results[0]["end"]


def test_cached_jobs_are_read_not_run_again(tmp_path):
    config = (str(tmp_path), "a", (), 0.0)
    first = pool.run_jobs([pool.Job(_run, _done, config, 3)], corpus=None, workers=2)
    second = pool.run_jobs([pool.Job(_run, _done, config, 3)], corpus=None, workers=2)
    assert first == second and (tmp_path / "log.txt").read_text() == "a\n"


def test_a_job_before_what_it_needs_and_zero_workers_are_named(tmp_path):
    config = (str(tmp_path), "a", (), 0.0)
    with pytest.raises(ValueError, match=r"job 0 must come after the jobs it needs, got after=\(1,\)"):
        pool.run_jobs([pool.Job(_run, _done, config, 1, after=(1,)), pool.Job(_run, _done, config, 1)], None, 2)
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        pool.run_jobs([], None, workers=0)
    assert not (tmp_path / "log.txt").exists()  # nothing ran
