"""Paired comparison of two variants measured in one run: B against A, repetition by
repetition, so that a machine's drift over the run cancels.

The run interleaves its cells (`bench.matrix.schedule`): the two variants' repetitions
are adjacent in time and alternate which goes first (A B, B A, A B, ...). Repetition i
of A and of B form a pair; the test is a paired t-test on the log ratios log(B_i / A_i):
one-sided (B slower), Holm-corrected across the pairs of cells compared, and a slowdown
counts when it is significant and the geometric-mean ratio exceeds 1 + threshold. The
interval is the t interval of the mean log ratio, back-transformed.

Why a t-test and not Wilcoxon's signed-rank or the sign test: with 5 pairs, no rank or
sign test can give a p-value under 1/32 = 0.031 (all five ratios on one side), whatever
the size of the change, so a Holm correction over two or more cells could never reach
significance at 0.05; log build times are close to normal, and the t-test on 5 pairs
reaches p = 0.005 on a clear slowdown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

from bench.analysis.compare import (
    FASTER,
    INVALID,
    POSSIBLE,
    SAME,
    SLOWER,
    Breakage,
    check_gate,
    holm,
)
from bench.engine.matrix import AXES, HOST_EMULATOR, Cell, cell_of
from bench.engine.results import Record, StoredRun, as_run

MIN_PAIRS = 3
"""Fewer pairs than this give an advisory verdict: a t-test on 2 pairs has 1 degree of
freedom and almost no power."""
TEST_METHOD = (
    "paired t-test on log(B/A) per repetition, one-sided, Holm-corrected across the "
    "pairs of cells; interval: t interval of the mean log ratio"
)


def parse_pair(text: str) -> tuple[str, str, str]:
    """Return (axis, A, B) from 'AXIS=A,B' (axis one of the cell key's: scenario, size,
    strategy, platform, cache, cpu, emulator; 'default' is the default CPU, 'host' the
    host's emulator).

    Raises ValueError naming what is wrong.
    """
    axis, sep, values = text.partition("=")
    parts = [v.strip() for v in values.split(",")]
    if not sep or axis.strip() not in AXES or len(parts) != 2 or not all(parts):
        raise ValueError(
            f"bad --pair {text!r}; expected AXIS=A,B with AXIS one of {', '.join(AXES)}"
        )
    if axis.strip() == "size" and not all(p.isdigit() for p in parts):
        raise ValueError(f"bad --pair {text!r}; sizes are whole numbers")
    if parts[0] == parts[1]:
        raise ValueError(f"bad --pair {text!r}; A and B are the same")
    return axis.strip(), parts[0], parts[1]


@dataclass(frozen=True)
class PairComparison:
    """Variant B against variant A of one cell, paired by repetition."""

    cell_a: str
    cell_b: str
    pairs: int
    ratio: float
    ci_low: float
    ci_high: float
    p_slower: float | None
    p_faster: float | None
    advisory: bool
    verdict: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict (NaN as None)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def paired_t(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float, float, float]:
    """Return (ratio, low, high, p_slower, p_faster) of B against A paired by index: the
    geometric-mean ratio, its t interval and the one-sided p-values of the paired t-test
    on log(B/A). Needs two pairs or more; raises ValueError otherwise."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("a paired test needs two pairs or more, of equal length")
    d = [math.log(y / x) for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = statistics.fmean(d)
    sd = statistics.stdev(d)
    if sd == 0:
        p_slow = 0.0 if mean > 0 else 1.0
        p_fast = 0.0 if mean < 0 else 1.0
        return math.exp(mean), math.exp(mean), math.exp(mean), p_slow, p_fast
    se = sd / math.sqrt(n)
    tval = mean / se
    q = float(student_t.ppf(1 - (1 - confidence) / 2, n - 1))
    return (
        math.exp(mean),
        math.exp(mean - q * se),
        math.exp(mean + q * se),
        float(student_t.sf(tval, n - 1)),
        float(student_t.cdf(tval, n - 1)),
    )


def compare_paired_samples(
    samples: Mapping[tuple[str, str], tuple[Sequence[float], Sequence[float]]],
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> list[PairComparison]:
    """Return the paired comparison of every (A name, B name) -> (A times, B times, in
    pair order) of `samples`, Holm-corrected across them.

    Raises ValueError on a bad threshold or alpha.
    """
    check_gate(threshold, alpha)
    rows: dict[tuple[str, str], tuple[float, float, float, float, float] | None] = {}
    for names, (a, b) in samples.items():
        good = len(a) == len(b) and all(math.isfinite(x) and x > 0 for x in (*a, *b))
        rows[names] = paired_t(a, b) if good and len(a) >= 2 else None
    keys = list(samples)
    tested = [k for k in keys if rows[k] is not None]
    slow = dict(zip(tested, holm([rows[k][3] for k in tested], alpha), strict=True))  # type: ignore[index]
    fast = dict(zip(tested, holm([rows[k][4] for k in tested], alpha), strict=True))  # type: ignore[index]
    out: list[PairComparison] = []
    for k in keys:
        a, b = samples[k]
        row = rows[k]
        if row is None:
            bad = len(a) != len(b) or not all(math.isfinite(x) and x > 0 for x in (*a, *b))
            out.append(
                PairComparison(
                    k[0],
                    k[1],
                    min(len(a), len(b)),
                    math.nan,
                    math.nan,
                    math.nan,
                    None,
                    None,
                    not bad,
                    INVALID if bad else SAME,
                    (
                        "non-finite or non-positive time: cannot judge"
                        if bad
                        else "fewer than 2 pairs: no test",
                    ),
                )
            )
            continue
        ratio, low, high, p_slow, p_fast = row
        advisory = len(a) < MIN_PAIRS
        verdict = SAME
        if ratio > 1 + threshold:
            verdict = SLOWER if slow[k] and not advisory else (POSSIBLE if advisory else SAME)
        elif ratio < 1 - threshold and fast[k] and not advisory:
            verdict = FASTER
        need = f"{len(a)} pair(s): at least {MIN_PAIRS} are needed for a verdict"
        notes = (need,) if advisory else ()
        out.append(
            PairComparison(
                k[0], k[1], len(a), ratio, low, high, p_slow, p_fast, advisory, verdict, notes
            )
        )
    return out


@dataclass(frozen=True)
class PairedRun:
    """Every paired cell of one run, the B cells that broke, and warnings."""

    run_id: str
    axis: str
    a: str
    b: str
    threshold: float
    alpha: float
    pairs: tuple[PairComparison, ...]
    broken: tuple[Breakage, ...]
    warnings: tuple[str, ...]

    def failed(self, strict: bool = False) -> bool:
        """Return whether the gate fails: a B cell broke or is slower, a time is invalid,
        or (with `strict`) a verdict is advisory."""
        bad = {SLOWER, INVALID} | ({POSSIBLE} if strict else set())
        return bool(self.broken) or any(p.verdict in bad for p in self.pairs)

    def as_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict."""
        return {
            "run": self.run_id,
            "axis": self.axis,
            "a": self.a,
            "b": self.b,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "test": TEST_METHOD,
            "pairs": [p.as_dict() for p in self.pairs],
            "broken": [x.as_dict() for x in self.broken],
            "warnings": list(self.warnings),
            "failed": self.failed(),
        }


# How --pair names an axis's empty value: the default CPU, the host's emulator.
_EMPTY_NAMES = {"cpu": "default", "emulator": HOST_EMULATOR}


def _axis_value(cell: Cell, axis: str) -> str:
    value = getattr(cell, axis)
    return _EMPTY_NAMES.get(axis, "") if value == "" else str(value)


def _with_axis(cell: Cell, axis: str, value: str) -> Cell:
    if axis == "size":
        return replace(cell, size=int(value))
    text = "" if value == _EMPTY_NAMES.get(axis) else value
    fields: dict[str, Any] = {axis: text}
    return replace(cell, **fields)


def compare_pairs(
    run_dir: Path | StoredRun,
    axis: str,
    a: str,
    b: str,
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> PairedRun:
    """Return the paired comparison of variant `b` against `a` along `axis` in the run
    `run_dir` (a folder, or a run already read): every cell whose `axis` is `a` against
    the same cell with `b`.

    Raises FileNotFoundError when the folder is not a run, DamagedRun when its manifest
    cannot be used, ValueError when no cell of the run has `a` with a counterpart `b`, or
    on a bad threshold or alpha.
    """
    run = as_run(run_dir)
    manifest, records = run.manifest, list(run.records)
    groups: dict[Cell, list[Record]] = {}
    for r in records:
        if r.kind == "cell" and not r.warmup:
            groups.setdefault(cell_of(r), []).append(r)
    samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    broken: list[Breakage] = []
    warnings: list[str] = []
    if manifest.get("request", {}).get("order", "interleaved") != "interleaved":
        warnings.append(
            "the run was not interleaved: pairs are not adjacent in time, so drift is not cancelled"
        )
    for cell_a in sorted(c for c in groups if _axis_value(c, axis) == a):
        cell_b = _with_axis(cell_a, axis, b)
        ok_a = {r.rep: r.wall_s for r in groups[cell_a] if r.status == "ok"}
        recs_b = groups.get(cell_b, [])
        ok_b = {r.rep: r.wall_s for r in recs_b if r.status == "ok"}
        bad_b = [r for r in recs_b if r.status != "ok"]
        bad_a = [r for r in groups[cell_a] if r.status != "ok"]
        # As between runs: B breaks when it fails where A always built, or never builds;
        # a failure both share (the registry went away) is not B's.
        if ok_a and bad_b and (not ok_b or not bad_a):
            worst = bad_b[-1]
            tail = " | ".join(worst.log_tail.strip().splitlines()[-5:]) or worst.reason or "-"
            broken.append(
                Breakage(
                    cell_b.key,
                    f"{worst.status} in {len(bad_b)} of {len(recs_b)} repetition(s)",
                    tail,
                )
            )
        reps = sorted(set(ok_a) & set(ok_b))
        if not reps:
            if not recs_b:
                warnings.append(f"{cell_a.key}: no {axis}={b} counterpart in this run")
            continue
        samples[(cell_a.key, cell_b.key)] = ([ok_a[i] for i in reps], [ok_b[i] for i in reps])
    if not samples and not broken:
        raise ValueError(
            f"no cell of run {run.run_id} has {axis}={a} with a {axis}={b} counterpart measured ok"
        )
    pairs = compare_paired_samples(samples, threshold, alpha) if samples else []
    return PairedRun(
        run.run_id, axis, a, b, threshold, alpha, tuple(pairs), tuple(broken), tuple(warnings)
    )
