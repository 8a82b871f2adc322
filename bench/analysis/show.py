"""Per-cell rows of a stored run, for `archbench show` (reads stored results only)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.engine.matrix import cell_of
from bench.engine.results import Attribution, EmulatorFacts, Record
from bench.engine.stats import describe


def _attribution(attributed: list[Attribution]) -> dict[str, Any] | None:
    """Return the medians of the attributed repetitions: CPU seconds per program group
    and the coverage; None when no repetition was attributed."""
    if not attributed:
        return None
    groups = sorted({g for a in attributed for g in a.cpu_by_group})
    coverage = [a.coverage for a in attributed if a.coverage is not None]
    return {
        "cpu_by_group": {
            g: statistics.median(a.cpu_by_group.get(g, 0.0) for a in attributed) for g in groups
        },
        "coverage": statistics.median(coverage) if coverage else None,
    }


def cell_rows(records: list[Record]) -> list[dict[str, Any]]:
    """Return one row per cell: measured samples in order, statistics, median per-step
    times, median CPU seconds and peak memory, the median attribution of its CPU time to
    program groups (None when not attributed), flakes, the status seen, the emulator it
    ran under (when its records name one), its emulator crashes (failed repetitions and
    retried flakes) and what each crash was."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        if r.kind == "cell" and not r.warmup:
            key = cell_of(r).key
            groups.setdefault(key, []).append(r)
    rows = []
    for key, recs in groups.items():
        ok = [r for r in recs if r.status == "ok"]
        samples = [r.wall_s for r in ok]
        steps: dict[str, list[float]] = {}
        for r in ok:
            for k, v in r.steps.by_category.items():
                steps.setdefault(k, []).append(float(v))
        cpu = [r.resources.cpu_user_s + r.resources.cpu_system_s for r in ok if r.resources]
        peaks = [r.resources.peak_above_baseline_bytes for r in ok if r.resources]
        peak_values = [p for p in peaks if p is not None]
        attributed = [r.attribution for r in ok if r.attribution and r.attribution.processes]
        statuses = sorted({r.status for r in recs})
        rows.append(
            {
                "cell": key,
                "status": ",".join(statuses),
                "n": len(samples),
                "samples": samples,
                "stats": describe(samples).as_dict() if samples else None,
                "steps": {k: statistics.median(v) for k, v in sorted(steps.items())},
                "cpu_s": statistics.median(cpu) if cpu else None,
                "peak_mib": statistics.median(peak_values) / 2**20 if peak_values else None,
                "attribution": _attribution(attributed),
                "flakes": sum(len(r.flakes) for r in recs),
                "reason": next((r.reason for r in recs if r.reason), ""),
                "emulator": emulator_label(next((r.emulator for r in recs if r.emulator), None)),
                "emulator_crashes": sum(r.failure_class == CRASH for r in recs)
                + sum(f == CRASH for r in recs for f in r.flakes),
                "emulator_faults": list(
                    dict.fromkeys(r.emulator_fault for r in recs if r.emulator_fault)
                ),
            }
        )
    return rows


CRASH = "emulator-crash"


def emulator_label(facts: EmulatorFacts | None) -> str:
    """Return how show names the emulator a cell ran under: `qemu10.0: qemu-user
    1:10.0.13+ds-0+deb13u1 (trixie, sha256 ec7657e2ce2e)`, `host: 7.2.22 (...)`, or ''
    when its records name none."""
    if facts is None:
        return ""
    if facts.spec == "host":
        return f"host: {facts.reported or facts.version or 'version unknown'}"
    sha = f", sha256 {facts.sha256[:12]}" if facts.sha256 else ""
    where = f" ({facts.suite}{sha})" if facts.suite or sha else ""
    return f"{facts.tag or facts.spec}: {facts.package} {facts.version}{where}".strip()
