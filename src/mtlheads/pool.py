"""Cached jobs run side by side in worker processes: ``run_jobs``, and the pool under it.

A job is one computation that goes through the run cache (a training run, a gated phase on a
trained model); some need others first (a gated phase, the run it starts from). ``run_jobs``
runs those not cached ``workers`` at a time, each worker with an equal share of torch's threads,
and returns every job's result in order. At small batches one computation uses two cores only
partly, so two one-thread jobs side by side finish sooner than one two-thread job after the
other (``bench/bench_workers.py``); thread counts sum some gradients in another order, so a
result can differ slightly from one computed in the parent at its own thread count.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queue_module
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Job:
    """One cached computation for ``run_jobs``.

    ``run(config, corpus, on_step)`` computes the result through the run cache (or reads it from
    there) and returns it, calling ``on_step()`` after each of its ``steps`` units of work;
    ``cached(config)`` says whether the cache holds it. ``after``: the indices (in the job list)
    of the jobs whose results it reads from the cache, which run first. ``keep`` False: the
    caller needs the job done, not its result (``run_jobs`` returns None for it)."""

    run: Callable[[Any, Any, Callable[[], None] | None], Any]
    cached: Callable[[Any], bool]
    config: Any
    steps: int
    after: tuple[int, ...] = ()
    keep: bool = True


_WORKER: dict = {}


def in_worker() -> bool:
    """Whether this process is one of ``run_jobs``' workers (whose progress the parent's bar shows)."""
    return "reports" in _WORKER


def run_jobs(jobs: list[Job], corpus, workers: int = 1, desc: str = "jobs") -> list:
    """Every job's result, in order (None where ``keep`` is False). The jobs not cached run
    ``workers`` at a time in worker processes (one: in this process, in order), the one with
    the most steps first among those whose ``after`` jobs are done; one progress bar counts the
    steps of all of them. A job whose result the cache could not store (a full disk) comes back
    from its worker pickled; a job reading such a result computes it again. Interrupting the
    call (Ctrl-C) ends the workers at once, killing it within a second (``worker_pool``)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    for i, job in enumerate(jobs):
        if any(not 0 <= j < i for j in job.after):
            raise ValueError(f"job {i} must come after the jobs it needs, got after={job.after!r}")
    todo = [i for i, job in enumerate(jobs) if not job.cached(job.config)]
    computed: dict[int, Any] = {}  # results computed here
    uncached: dict[int, bytes | None] = {}  # results a full disk kept out of the cache, from the workers
    if todo:
        workers = min(workers, len(todo))
        bar = tqdm(total=sum(jobs[i].steps for i in todo), desc=f"{len(todo)} {desc}, {workers} at a time")
        try:
            if workers == 1:
                for i in todo:
                    result = jobs[i].run(jobs[i].config, corpus, lambda: bar.update(1))
                    if jobs[i].keep:
                        computed[i] = result
            else:
                uncached = _run_in_pool(jobs, todo, corpus, workers, bar)
        finally:
            bar.close()
    return [computed[i] if i in computed else pickle.loads(uncached[i]) if uncached.get(i)
            else job.run(job.config, corpus, None) if job.keep else None for i, job in enumerate(jobs)]


def _run_in_pool(jobs: list[Job], todo: list[int], corpus, workers: int, bar) -> dict[int, bytes | None]:
    threads = max(1, torch.get_num_threads() // workers)
    waiting, done, out = set(todo), set(range(len(jobs))) - set(todo), {}
    with worker_pool(workers, _start_worker, (corpus, threads)) as (pool, reports):
        running = {}
        while waiting or running:
            ready = sorted((i for i in waiting if set(jobs[i].after) <= done), key=lambda i: (-jobs[i].steps, i))
            for i in ready[:workers - len(running)]:
                waiting.discard(i)
                running[pool.submit(_run_in_worker, jobs[i])] = i
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            bar.update(_drain(reports))
            for future in finished:
                i = running.pop(future)
                out[i] = future.result()  # a worker's error is raised here
                done.add(i)
    return out


def _run_in_worker(job: Job) -> bytes | None:
    """Compute into the run cache; the parent reads the result from there (no weights through a
    pipe), unless the cache could not store it: then the result, pickled here to bytes (torch's
    own pickling would pass tensors through shared-memory files, which a full disk also stops)."""
    reports = _WORKER["reports"]
    result = job.run(job.config, _WORKER["corpus"], lambda: reports.put(1))
    return None if job.cached(job.config) else pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)


def _drain(reports) -> int:
    n = 0
    while True:
        try:
            n += reports.get_nowait()
        except queue_module.Empty:
            return n


def _watch_parent(parent: int) -> None:
    """End this worker process soon after its parent dies (killed, say), so none is left running."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def _init_worker(parent: int, reports, initializer, initargs) -> None:
    _watch_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the workers
    _WORKER["reports"] = reports
    if initializer is not None:
        initializer(*initargs)


def _start_worker(corpus, threads: int) -> None:
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(threads)
    transformers_logging.disable_progress_bar()  # the parent's bar speaks for the workers
    _WORKER.update(corpus=corpus)


@contextmanager
def worker_pool(workers: int, initializer: Callable | None = None, initargs: tuple = ()):
    """A pool of ``workers`` spawned processes and a queue they can report on (``_WORKER["reports"]``).

    The workers end with the parent: if it is interrupted (SIGINT) or fails, they are terminated
    at once instead of finishing their tasks; if it is killed, each ends within a second."""
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch's threads are running
    reports = context.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(os.getpid(), reports, initializer, initargs))
    try:
        yield pool, reports
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way before 3.14
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
