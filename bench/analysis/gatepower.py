"""Seeded simulations of the regression gate: false alarms and power of `compare`,
`compare --pair` and `history`, through their own functions, with lognormal noise.

`python -m bench.analysis.gatepower` prints the README's tables; the unit tests call the same
functions with fewer trials. Every figure is a rate over `trials` simulated compares.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from bench.analysis.compare import POSSIBLE, SLOWER, compare_samples
from bench.analysis.history import RunPoint, detect
from bench.analysis.paired import compare_paired_samples


def lognormal(rng: np.random.Generator, shape: tuple[int, ...], cv: float) -> np.ndarray:
    """Return multiplicative noise of mean 1 and coefficient of variation `cv`."""
    sigma = math.sqrt(math.log(1 + cv * cv))
    return np.exp(rng.normal(-sigma * sigma / 2, sigma, shape))


@dataclass(frozen=True)
class Rates:
    """Rates over `trials` simulated compares: any cell flagged slower (family-wise),
    the changed cell (cell 0) flagged slower, any cell given the advisory verdict."""

    trials: int
    any_slower: float
    first_slower: float
    any_possible: float


def unpaired(
    reps: int,
    cells: int = 7,
    cv: float = 0.07,
    slowdown: float = 1.0,
    trials: int = 1000,
    seed: int = 1,
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> Rates:
    """Return the gate's rates (`compare_samples`) on `cells` cells of `reps` repetitions
    per side, BASE and NEW independent lognormal samples, cell 0 of NEW `slowdown` times
    slower."""
    rng = np.random.default_rng(seed)
    any_slow = first = possible = 0
    base = 100 * lognormal(rng, (trials, cells, reps), cv)
    new = 100 * lognormal(rng, (trials, cells, reps), cv)
    new[:, 0, :] *= slowdown
    for t in range(trials):
        samples = {f"c{i}": (base[t, i].tolist(), new[t, i].tolist()) for i in range(cells)}
        verdicts = [c.verdict for c in compare_samples(samples, threshold, alpha)]
        any_slow += SLOWER in verdicts
        first += verdicts[0] == SLOWER
        possible += POSSIBLE in verdicts
    return Rates(trials, any_slow / trials, first / trials, possible / trials)


def paired(
    pairs: int,
    cells: int = 1,
    cv: float = 0.07,
    drift: float = 0.01,
    slowdown: float = 1.0,
    trials: int = 1000,
    seed: int = 2,
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> Rates:
    """Return the paired gate's rates (`compare_paired_samples`) on `cells` paired cells
    of `pairs` pairs, run in the order the runner uses (A B, B A, ...), under a random
    walk of `drift` (relative SD) per build on top of per-build noise `cv`; B of cell 0
    `slowdown` times slower."""
    rng = np.random.default_rng(seed)
    any_slow = first = possible = 0
    builds = 2 * pairs * cells
    for _ in range(trials):
        walk = np.exp(np.cumsum(rng.normal(0, drift, builds)))
        noise = lognormal(rng, (builds,), cv)
        times = 100 * walk * noise
        samples = {}
        for c in range(cells):
            a, b = [], []
            for p in range(pairs):
                i = 2 * (p * cells + c)
                first_a = p % 2 == 0  # the runner alternates which variant goes first
                ta, tb = (times[i], times[i + 1]) if first_a else (times[i + 1], times[i])
                a.append(float(ta))
                b.append(float(tb) * (slowdown if c == 0 else 1.0))
            samples[(f"a{c}", f"b{c}")] = (a, b)
        verdicts = [r.verdict for r in compare_paired_samples(samples, threshold, alpha)]
        any_slow += SLOWER in verdicts
        first += verdicts[0] == SLOWER
        possible += POSSIBLE in verdicts
    return Rates(trials, any_slow / trials, first / trials, possible / trials)


def history_false_rate(
    runs: int = 20,
    reps: int = 5,
    offset_sd: float = 0.03,
    cv: float = 0.07,
    trials: int = 300,
    seed: int = 3,
    step: float = 1.0,
) -> float:
    """Return the share of simulated series in which `history.detect` finds a change
    point: `runs` runs of `reps` repetitions, each run offset by independent lognormal
    noise of SD `offset_sd`, repetitions with `cv`; the second half `step` times slower
    (1.0: flat, so every change point found is false)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        offsets = lognormal(rng, (runs, 1), offset_sd)
        times = 100 * offsets * lognormal(rng, (runs, reps), cv)
        times[runs // 2 :] *= step
        points = [
            RunPoint("c", "s", f"r{i:02d}", f"{i:02d}", "", tuple(times[i].tolist()))
            for i in range(runs)
        ]
        hits += bool(detect(points))
    return hits / trials


def main() -> None:
    """Print the README's power tables (markdown)."""
    parser = argparse.ArgumentParser(prog="python -m bench.analysis.gatepower")
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    n = args.trials
    print("compare, 7 cells, CV 7 %, threshold 10 %, alpha 0.05 family-wise (Holm)")
    print(
        f"| reps per side | A/A: any cell flagged | +20 % on one cell: found | "
        f"'possible regression' shown (+20 %) |  ({n} trials each)"
    )
    print("| --- | --- | --- | --- |")
    for reps in (3, 5, 7, 8, 10):
        aa = unpaired(reps, trials=n, seed=10 + reps)
        hit = unpaired(reps, slowdown=1.2, trials=n, seed=20 + reps)
        print(f"| {reps} | {aa.any_slower:.1%} | {hit.first_slower:.1%} | {hit.any_possible:.1%} |")
    print()
    print("compare --pair, 1 paired cell, CV 7 % per build, random walk 1 % per build")
    print(f"| pairs | A/A: flagged | +20 %: found |  ({n} trials each)")
    print("| --- | --- | --- |")
    for pairs in (3, 5, 7, 10):
        aa = paired(pairs, trials=n, seed=30 + pairs)
        hit = paired(pairs, slowdown=1.2, trials=n, seed=40 + pairs)
        print(f"| {pairs} | {aa.any_slower:.1%} | {hit.first_slower:.1%} |")
    print()
    h = max(n // 5, 100)
    print(f"history, 20 runs of 5 reps, run offsets SD 3 %, CV 7 % ({h} series each)")
    print("| step at run 10 | series with a change point |")
    print("| --- | --- |")
    for step in (1.0, 1.05, 1.10, 1.20):
        print(f"| {step - 1:+.0%} | {history_false_rate(trials=h, step=step, seed=50):.1%} |")


if __name__ == "__main__":
    main()
