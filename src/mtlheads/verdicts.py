"""The verdict rule of the book: preconditions first, then an interval, then one of four words.

A claim is tested by an estimate signed so that a positive value supports it (for "MTL-5 falls
behind STL": STL minus MTL-5), with its 95% interval over seeds or examples.

- **untestable at this scale** when a precondition failed: the models did not learn their own
  task, the comparison is not fair, or there is no interval (one seed). The verdict names what
  failed; the estimate is still reported, as a trend, never as a finding.
- **holds** when every precondition is met and the interval lies above zero;
- **does not hold** when it lies below zero;
- **not shown** when it contains zero.

``decide`` applies the rule; ``t_interval`` gives the interval over seeds (Student's t: with
three to five seeds a bootstrap over seeds has too few distinct resamples to mean anything).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

HOLDS, DOES_NOT_HOLD, NOT_SHOWN, UNTESTABLE = "holds", "does not hold", "not shown", "untestable at this scale"
WORDS = (HOLDS, DOES_NOT_HOLD, NOT_SHOWN, UNTESTABLE)


@dataclass(frozen=True)
class Precondition:
    """What must be true for a test to mean anything, and whether it is (``met``)."""

    name: str
    met: bool


@dataclass(frozen=True)
class Verdict:
    """The rule's word, the inputs it was decided on, and the preconditions that failed."""

    word: str
    estimate: float
    low: float
    high: float
    n: int
    failed: tuple[str, ...] = field(default=())
    met: tuple[str, ...] = field(default=())  # the preconditions that hold

    @property
    def text(self) -> str:
        """The word, with what failed when the test is untestable (for prose)."""
        return f"{self.word} (not met: {'; '.join(self.failed)})" if self.failed else self.word

    def __str__(self) -> str:
        return self.text


def t_interval(values, level: float = 0.95) -> dict:
    """Mean of ``values`` (one per seed), its standard deviation and Student's t interval; NaN
    bounds with fewer than two values."""
    values = np.asarray([v for v in values if not np.isnan(v)], dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "sd": float("nan"), "low": float("nan"), "high": float("nan"), "n": n}
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "n": n}


def decide(estimate: float, low: float, high: float, n: int, preconditions: list[Precondition] = ()) -> Verdict:
    """The verdict on a claim whose support is ``estimate`` (positive: for the claim) with the 95%
    interval [``low``, ``high``] over ``n`` seeds or examples, given its ``preconditions``."""
    if not (np.isnan(low) or np.isnan(high)) and low > high:
        raise ValueError(f"an interval needs low <= high, got {low!r} and {high!r}")
    failed = [p.name for p in preconditions if not p.met]
    met = tuple(p.name for p in preconditions if p.met)
    if np.isnan(low) or np.isnan(high):
        failed.append(f"no interval from {n} value{'s' if n != 1 else ''}")
    if failed:
        return Verdict(UNTESTABLE, estimate, low, high, n, tuple(failed), met)
    word = HOLDS if low > 0 else DOES_NOT_HOLD if high < 0 else NOT_SHOWN
    return Verdict(word, estimate, low, high, n, met=met)


def decide_over_seeds(support, preconditions: list[Precondition] = ()) -> Verdict:
    """``decide`` on per-seed values of the claim's support, with their t interval."""
    interval = t_interval(support)
    return decide(interval["mean"], interval["low"], interval["high"], interval["n"], preconditions)


def seed_and_sentence_interval(per_seed, per_resample, level: float = 0.95) -> dict:
    """The mean of ``per_seed`` (one value per seed, all scored on the same test sentences) with an
    interval that holds both sources of error: the seeds' (Student's t, ``t_interval``) and the test
    sentences' (the standard deviation of the seed mean over ``per_resample``, bootstrap resamples
    of the sentences, each the same resample for every model), their half-widths added in
    quadrature (independent errors). NaN bounds with one seed: the seeds' error is then unknown."""
    seed = t_interval(per_seed, level)
    resampled = np.asarray(per_resample, dtype=float)
    resampled = resampled[~np.isnan(resampled)]
    if len(resampled) < 2:
        raise ValueError(f"seed_and_sentence_interval needs at least 2 resamples, got {len(resampled)}")
    sentence_se = float(resampled.std(ddof=1))
    half = float(np.hypot((seed["high"] - seed["low"]) / 2, stats.norm.ppf(0.5 + level / 2) * sentence_se))
    return {**seed, "sentence se": sentence_se, "low": seed["mean"] - half, "high": seed["mean"] + half}


def decide_over_seeds_and_sentences(per_seed, per_resample, preconditions: list[Precondition] = ()) -> Verdict:
    """``decide`` on per-seed values of the claim's support with ``seed_and_sentence_interval``."""
    interval = seed_and_sentence_interval(per_seed, per_resample)
    return decide(interval["mean"], interval["low"], interval["high"], interval["n"], preconditions)
