"""Compare two stored runs cell by cell: the regression gate (is NEW slower or broken?).

Cells are matched on the one cell key (`bench.matrix.cell_of`: scenario, size, strategy,
CPU variant, platform, cache). The gate fails (`RunComparison.failed`) on:

- **breakage**: a cell NEW requested, which built in BASE, failed, timed out or was
  unavailable in NEW (named with its status and log tail). A BASE cell NEW did not
  request is listed, not failed;
- **a harness recipe change** (generated Dockerfile, base image, emulator version or CPU
  model) unless it is allowed; a change of the project's sources is reported, never failed;
- **invalid samples** (a non-finite or non-positive time): a NaN must never pass;
- **a significant slowdown**: per cell a one-sided exact Mann-Whitney U test
  (scipy.stats.mannwhitneyu, method='exact', NEW greater than BASE), its p-values
  corrected across all the cells of the compare by Holm's step-down method (the chance
  that any cell of an unchanged run alarms stays under alpha), and a ratio of medians
  NEW/BASE above 1 + threshold.

An exact rank test of n against n repetitions cannot give a p-value under 1 / C(2n, n),
and Holm's first step tests at alpha / cells: a cell can only be found slower when
C(2n, n) >= cells / alpha (`min_reps`: 5 reps for up to 12 cells, 4 for up to 3, at
alpha 0.05). Below that a slowdown beyond the threshold is only advisory ("possible
regression: too few repetitions to tell", exit 0) unless `strict`.

The interval of the ratio is the exact distribution-free one (Hodges-Lehmann, from the
Mann-Whitney distribution, on log times): its coverage is exact under a shift of log time
and is stated; with too few repetitions for 95 % it is [min, max] of the pairwise ratios
with its real, lower coverage (90 % at 3 against 3).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, norm

from bench.engine.matrix import cell_of
from bench.engine.results import Record, StoredRun, as_run

CI_METHOD = (
    "exact distribution-free interval of the ratio (Hodges-Lehmann, Mann-Whitney "
    "distribution on log times); its coverage is given per cell"
)
TEST_METHOD = "one-sided exact Mann-Whitney U per cell, Holm-corrected across the cells"

SLOWER, FASTER, SAME = "slower", "faster", "no significant change"
POSSIBLE = "possible regression: too few repetitions to tell"
INVALID = "invalid samples"
EXACT_U_LIMIT = 60
"""Samples per side up to this use the exact Mann-Whitney distribution for the interval."""
EMULATING = {
    "qemu-user": ("qemu_user", "qemu_user_package", "qemu_cpu"),
    "hybrid": ("qemu_user", "qemu_user_package", "qemu_cpu"),
    "qemu-system": ("qemu_system",),
}
"""Per strategy, the provenance fields that name the emulator it runs builds under."""


def check_gate(threshold: float, alpha: float) -> None:
    """Raise ValueError unless threshold is finite and > 0 and 0 < alpha < 1."""
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"bad threshold {threshold!r}; expected a finite value above 0")
    if not math.isfinite(alpha) or not 0 < alpha < 1:
        raise ValueError(f"bad alpha {alpha!r}; expected a value between 0 and 1")


def parse_threshold(text: str) -> float:
    """Return a relative threshold from '10%', '10' (percent) or '0.1'.

    Raises ValueError for anything else, a non-finite value or one of 0 or less.
    """
    value = text.strip()
    try:
        number = float(value.rstrip("%"))
    except ValueError as exc:
        raise ValueError(f"bad threshold {text!r}; expected e.g. 10% or 0.1") from exc
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"bad threshold {text!r}; expected a finite value above 0")
    if value.endswith("%") or number >= 1:
        number /= 100
    return number


def smallest_p(n: int, m: int) -> float:
    """Return the smallest one-sided p-value an exact rank test of n against m samples
    can reach: 1 / C(n + m, n)."""
    return 1.0 / math.comb(n + m, n)


def min_reps(cells: int, alpha: float) -> int:
    """Return the fewest repetitions per side (n against n) at which an exact one-sided
    rank test can pass Holm's first step over `cells` cells: C(2n, n) >= cells / alpha."""
    n = 1
    while math.comb(2 * n, n) < max(cells, 1) / alpha:
        n += 1
    return n


def holm(pvalues: Sequence[float | None], alpha: float) -> list[bool]:
    """Return, per p-value, whether Holm's step-down method rejects it at family-wise
    level `alpha` (None counts in the family and is never rejected)."""
    m = len(pvalues)
    keys = [2.0 if p is None else p for p in pvalues]
    order = sorted(range(m), key=lambda i: keys[i])
    rejected = [False] * m
    for step, i in enumerate(order):
        p = pvalues[i]
        if p is None or not p <= alpha / (m - step) * (1 + 1e-9):  # float slack at equality
            break
        rejected[i] = True
    return rejected


@lru_cache(maxsize=256)
def u_null_cdf(n: int, m: int) -> tuple[float, ...]:
    """Return P(U <= u) for u = 0..n*m under the null, exactly (counting arrangements)."""
    # Recurrence over (i, j): f(i, j, u) = f(i - 1, j, u - j) + f(i, j - 1, u).
    f = [[np.zeros(1) for _ in range(m + 1)] for _ in range(n + 1)]
    for i in range(n + 1):
        for j in range(m + 1):
            size = i * j + 1
            if i == 0 or j == 0:
                arr = np.zeros(size)
                arr[0] = 1.0
            else:
                arr = np.zeros(size)
                a = f[i - 1][j]
                arr[j : j + a.size] += a
                b = f[i][j - 1]
                arr[: b.size] += b
            f[i][j] = arr
    dist = f[n][m] / math.comb(n + m, n)
    return tuple(float(x) for x in np.cumsum(dist))


def p_greater(new: Sequence[float], base: Sequence[float]) -> float:
    """Return the one-sided exact Mann-Whitney p-value that NEW is stochastically greater
    than BASE: P(U >= u) under the null, U counting pairs with new > base (ties one half).

    The same p-value as scipy.stats.mannwhitneyu(new, base, alternative='greater',
    method='exact'), from a cached null distribution: a simulation calls it many
    thousands of times. Over EXACT_U_LIMIT per side it asks scipy (asymptotic).
    """
    n, m = len(new), len(base)
    if n > EXACT_U_LIMIT or m > EXACT_U_LIMIT:
        return float(mannwhitneyu(new, base, alternative="greater").pvalue)
    a, b = np.asarray(new, float), np.asarray(base, float)
    u = float((a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum())
    cdf = u_null_cdf(n, m)
    k = math.ceil(u) - 1  # P(U >= u) = 1 - P(U <= ceil(u) - 1)
    return 1.0 if k < 0 else max(0.0, 1.0 - cdf[k])


def ratio_interval(
    base: Sequence[float], new: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Return (low, high, coverage): the distribution-free interval of NEW/BASE from the
    sorted pairwise ratios, with the coverage it really has under a shift of log time
    (at least `confidence` when the repetitions allow it, else [min, max] and its own)."""
    lb, ln = np.log(np.asarray(base, float)), np.log(np.asarray(new, float))
    diffs = np.sort((ln[None, :] - lb[:, None]).ravel())
    n, m = lb.size, ln.size
    tail = (1 - confidence) / 2
    if n <= EXACT_U_LIMIT and m <= EXACT_U_LIMIT:
        cdf = u_null_cdf(n, m)
        # Largest k with P(U <= k - 1) <= tail; interval [D_(k), D_(N-k+1)] (1-based).
        k = 1
        while k < len(cdf) and cdf[k] <= tail:
            k += 1
        if cdf[0] > tail:
            k = 1
        coverage = 1 - 2 * cdf[k - 1] if cdf[0] <= tail else 1 - 2 * cdf[0]
    else:
        mean, sd = n * m / 2, math.sqrt(n * m * (n + m + 1) / 12)
        k = max(1, int(math.floor(mean - float(norm.ppf(1 - tail)) * sd)))
        coverage = confidence
    low, high = diffs[k - 1], diffs[diffs.size - k]
    return float(np.exp(low)), float(np.exp(high)), float(coverage)


@dataclass(frozen=True)
class CellComparison:
    """The comparison of one matched cell."""

    cell: str
    base_n: int
    new_n: int
    base_median_s: float
    new_median_s: float
    ratio: float
    ci_low: float
    ci_high: float
    ci_coverage: float
    p_slower: float | None
    p_faster: float | None
    advisory: bool
    verdict: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Breakage:
    """A cell that built in BASE and did not in NEW."""

    cell: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Return the breakage as a JSON-ready dict."""
        return asdict(self)


def _valid(xs: Sequence[float]) -> bool:
    return bool(xs) and all(math.isfinite(x) and x > 0 for x in xs)


def _invalid(name: str, base: Sequence[float], new: Sequence[float]) -> CellComparison:
    bad = [x for x in (*base, *new) if not (math.isfinite(x) and x > 0)]
    return CellComparison(
        name,
        len(base),
        len(new),
        math.nan,
        math.nan,
        math.nan,
        math.nan,
        math.nan,
        0.0,
        None,
        None,
        False,
        INVALID,
        (f"non-finite or non-positive time(s) {bad[:3]}: cannot judge, so the gate fails",),
    )


def compare_samples(
    samples: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> list[CellComparison]:
    """Return the comparison of every cell of `samples` (name -> (BASE, NEW) seconds),
    Holm-corrected across them (see the module docstring), in the mapping's order.

    Raises ValueError on a bad threshold or alpha, or a cell with an empty side.
    """
    check_gate(threshold, alpha)
    names = list(samples)
    for name in names:
        base, new = samples[name]
        if not base or not new:
            raise ValueError(f"{name}: a side has no samples")
    valid = [n for n in names if _valid(samples[n][0]) and _valid(samples[n][1])]
    p_slow: dict[str, float] = {}
    p_fast: dict[str, float] = {}
    for name in valid:
        base, new = samples[name]
        p_slow[name] = p_greater(new, base)
        p_fast[name] = p_greater(base, new)
    slow_ok = dict(zip(valid, holm([p_slow[n] for n in valid], alpha), strict=True))
    fast_ok = dict(zip(valid, holm([p_fast[n] for n in valid], alpha), strict=True))
    family = max(len(valid), 1)
    out: list[CellComparison] = []
    for name in names:
        base, new = samples[name]
        if name not in slow_ok:
            out.append(_invalid(name, base, new))
            continue
        b_med, n_med = float(statistics.median(base)), float(statistics.median(new))
        ratio = n_med / b_med
        low, high, coverage = ratio_interval(base, new)
        floor = smallest_p(len(base), len(new))
        advisory = floor > alpha / family * (1 + 1e-9)
        notes: list[str] = []
        if advisory:
            notes.append(
                f"{len(base)} vs {len(new)} repetitions: the smallest exact p ({floor:.3g}) is "
                f"above alpha/cells ({alpha / family:.3g}); needs {min_reps(family, alpha)} "
                f"per side for {family} cell(s)"
            )
        verdict = SAME
        if ratio > 1 + threshold:
            if slow_ok[name]:
                verdict = SLOWER
            elif advisory:
                verdict = POSSIBLE
        elif ratio < 1 - threshold and fast_ok[name]:
            verdict = FASTER
        out.append(
            CellComparison(
                name,
                len(base),
                len(new),
                b_med,
                n_med,
                ratio,
                low,
                high,
                coverage,
                p_slow[name],
                p_fast[name],
                advisory,
                verdict,
                tuple(notes),
            )
        )
    return out


@dataclass(frozen=True)
class RunComparison:
    """Every matched cell, breakage, the cells only one run has, recipe and source
    changes, and warnings about what differs."""

    base_run: str
    new_run: str
    threshold: float
    alpha: float
    min_reps: int
    cells: tuple[CellComparison, ...]
    broken: tuple[Breakage, ...]
    only_base: tuple[str, ...]
    only_new: tuple[str, ...]
    recipe_changes: tuple[str, ...]
    source_changes: tuple[str, ...]
    warnings: tuple[str, ...]
    allow_recipe_change: bool = False

    @property
    def regressed(self) -> bool:
        """True when a cell is significantly slower beyond the threshold, broke, or has
        samples that cannot be judged."""
        return bool(self.broken) or any(c.verdict in (SLOWER, INVALID) for c in self.cells)

    @property
    def advisory(self) -> bool:
        """True when a cell is a possible regression that too few repetitions cannot tell."""
        return any(c.verdict == POSSIBLE for c in self.cells)

    def failed(self, strict: bool = False) -> bool:
        """Return whether the gate fails: a regression, an unallowed recipe change, or
        (with `strict`) an advisory verdict."""
        recipe = bool(self.recipe_changes) and not self.allow_recipe_change
        return self.regressed or recipe or (strict and self.advisory)

    def as_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-ready dict."""
        data = asdict(self)
        data["regressed"] = self.regressed
        data["ci_method"] = CI_METHOD
        data["test"] = TEST_METHOD
        for c in data["cells"]:
            for k, v in c.items():
                if isinstance(v, float) and not math.isfinite(v):
                    c[k] = None  # JSON has no NaN
        return data


def match_key(r: Record) -> str:
    """Return the key cells are matched on: the cell key (`bench.matrix.cell_of`)."""
    return cell_of(r).key


def _groups(records: Sequence[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for r in records:
        if r.kind == "cell" and not r.warmup:
            groups.setdefault(match_key(r), []).append(r)
    return groups


def host_class_differences(base: Sequence[Record], new: Sequence[Record]) -> list[str]:
    """Return one line per cell that both runs measured on hardware of different classes
    (`Record.host_class`: CPU model, cores, memory, kernel series), `KEY: BASE -> NEW`.

    A cell whose records on either side name no class (records older than the field)
    is not judged: there is nothing to compare.
    """

    def classes(records: Sequence[Record]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for key, group in _groups(records).items():
            named = {r.host_class for r in group if r.host_class}
            if named:
                found[key] = named
        return found

    b, n = classes(base), classes(new)
    return [
        f"{key}: {' | '.join(sorted(b[key]))} -> {' | '.join(sorted(n[key]))}"
        for key in sorted(set(b) & set(n))
        if b[key] != n[key]
    ]


def _requested(manifest: Mapping[str, Any], groups: Mapping[str, list[Record]]) -> set[str]:
    cells = {str(c.get("cell")) for c in manifest.get("cells", []) if c.get("cell")}
    return cells | set(groups)


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def recipe_of(r: Record, provenance: Mapping[str, Any]) -> dict[str, str]:
    """Return what names a record's harness recipe: the generated Dockerfile's digest
    (which holds the base image and toolchain packages) and, for an emulating strategy,
    the emulator's version and CPU model from the run's provenance (a pinned emulator's
    from the record)."""
    out = {"Dockerfile": r.harness_recipe_sha256}
    prov = r.provenance or provenance
    pinned = r.emulator if r.emulator is not None and r.emulator.spec != "host" else None
    for key in EMULATING.get(r.strategy, ()):
        if pinned is not None and key in ("qemu_user", "qemu_user_package"):
            # A pinned emulator replaces the host's: its own package, version and digest.
            out[f"emulator {key}"] = (
                pinned.reported
                if key == "qemu_user"
                else f"{pinned.package} {pinned.version} sha256 {pinned.sha256[:12]}"
            )
            continue
        out[f"emulator {key}"] = str(prov.get(key, ""))
    return out


def _recipe_changes(
    name: str,
    base: Sequence[Record],
    new: Sequence[Record],
    bm: Mapping[str, Any],
    nm: Mapping[str, Any],
    sources_changed: bool,
) -> tuple[list[str], list[str]]:
    """Return (recipe changes, warnings) of one cell."""
    changes, warnings = [], []
    b_parts = [recipe_of(r, bm.get("provenance", {})) for r in base]
    n_parts = [recipe_of(r, nm.get("provenance", {})) for r in new]
    for label in dict.fromkeys(k for p in b_parts + n_parts for k in p):
        b = sorted({p.get(label, "") for p in b_parts} - {""})
        n = sorted({p.get(label, "") for p in n_parts} - {""})
        if b and n and b != n:
            changes.append(f"{name}: {label} changed ({', '.join(b)[:40]} -> {', '.join(n)[:40]})")
    if not any(r.harness_recipe_sha256 for r in (*base, *new)):
        # Older records hash the recipe and the sources together.
        b = sorted({r.recipe_sha256 for r in base} - {""})
        n = sorted({r.recipe_sha256 for r in new} - {""})
        if b and n and b != n:
            if sources_changed:
                warnings.append(
                    f"{name}: recipe hash differs and the sources changed too; "
                    "these records cannot tell a recipe change apart"
                )
            else:
                changes.append(f"{name}: recipe hash changed ({b[0][:12]} -> {n[0][:12]})")
    return changes, warnings


def compare_runs(
    base_dir: Path | StoredRun,
    new_dir: Path | StoredRun,
    threshold: float = 0.10,
    alpha: float = 0.05,
    allow_recipe_change: bool = False,
) -> RunComparison:
    """Return the gate's comparison of the runs in `base_dir` and `new_dir` (folders, or
    runs already read).

    Raises FileNotFoundError when a folder is not a run, DamagedRun when its manifest
    cannot be used, ValueError on a bad threshold or alpha.
    """
    check_gate(threshold, alpha)
    base_run, new_run = as_run(base_dir), as_run(new_dir)
    base_manifest, base_records = base_run.manifest, list(base_run.records)
    new_manifest, new_records = new_run.manifest, list(new_run.records)
    base, new = _groups(base_records), _groups(new_records)
    requested = _requested(new_manifest, new)
    b_src = base_manifest.get("request", {}).get("scenario_digests", {})
    n_src = new_manifest.get("request", {}).get("scenario_digests", {})
    source_changes = sorted(
        f"{s}: project sources changed ({b_src[s][:12]} -> {n_src[s][:12]})"
        for s in set(b_src) & set(n_src)
        if b_src[s] != n_src[s]
    )
    changed_scenarios = {s for s in set(b_src) & set(n_src) if b_src[s] != n_src[s]}
    samples: dict[str, tuple[list[float], list[float]]] = {}
    broken: list[Breakage] = []
    recipe: list[str] = []
    warnings: list[str] = []
    only_base: list[str] = []
    for key in sorted(base):
        b_ok = [r for r in base[key] if r.status == "ok"]
        if key not in requested:
            only_base.append(key)
            continue
        if not b_ok:
            continue
        n_all = new.get(key, [])
        n_ok = [r for r in n_all if r.status == "ok"]
        n_bad = [r for r in n_all if r.status != "ok"]
        b_bad = [r for r in base[key] if r.status != "ok"]
        if n_bad and (not n_ok or not b_bad):
            # A cell that built every time in BASE and fails in NEW is the worst
            # regression there is, even if some of its repetitions still build.
            worst = n_bad[-1]
            what = f"{worst.status} in {len(n_bad)} of {len(n_all)} repetition(s)" + (
                f" ({worst.failure_class})" if worst.failure_class else ""
            )
            detail = _tail(worst.log_tail) or worst.reason or "-"
            if worst.log_file:
                detail += f" (log {worst.log_file})"
            broken.append(Breakage(key, what, detail))
        elif not n_all:
            broken.append(Breakage(key, "missing", "requested by NEW, no record of it"))
        if not n_ok:
            continue
        cell = cell_of(b_ok[0])
        c_changes, c_warn = _recipe_changes(
            key, b_ok, n_ok, base_manifest, new_manifest, cell.scenario in changed_scenarios
        )
        recipe += c_changes
        warnings += c_warn
        if len({r.provenance.get("hostname", "") for r in (*b_ok, *n_ok)} - {""}) > 1:
            warnings.append(f"{key}: measured on different hosts; compared anyway")
        samples[key] = ([r.wall_s for r in b_ok], [r.wall_s for r in n_ok])
    cells = compare_samples(samples, threshold, alpha) if samples else []
    only_new = [k for k in sorted(new) if k not in base]
    return RunComparison(
        base_run.run_id,
        new_run.run_id,
        threshold,
        alpha,
        min_reps(max(len(samples), 1), alpha),
        tuple(cells),
        tuple(broken),
        tuple(only_base),
        tuple(only_new),
        tuple(dict.fromkeys(recipe)),
        tuple(source_changes),
        tuple(dict.fromkeys(warnings)),
        allow_recipe_change,
    )
