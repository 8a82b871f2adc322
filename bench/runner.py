"""The run pipeline: load scenarios -> expand matrix -> probe -> provision -> run cells
-> validate -> join indexes -> combined builds -> store -> summarize.

A failed cell returns a record; it never raises through the matrix. Only a Ctrl-C
(KeyboardInterrupt) ends a run early, after the manifest says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import provenance, services
from bench.errors import ArchbenchError
from bench.matrix import Cell, expand, interleave
from bench.platforms import Platform, host_platform, parse_platform
from bench.results import Record, RunStore, now_iso
from bench.scenario import Scenario
from bench.strategies import REGISTRY, Availability, BuildxStrategy
from bench.strategies.base import BuildOutcome, BuildSettings, image_repo
from bench.tools import docker
from bench.validate import ValidationReport, compare_artifacts, validate_image

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunRequest:
    """What `archbench run` was asked for."""

    scenarios: tuple[Scenario, ...]
    strategies: tuple[str, ...]
    platforms: tuple[Platform, ...]
    sizes: tuple[int, ...]
    reps: int
    results_root: Path
    registry: str
    base_image: str | None = None
    builder: str | None = None
    timeout: float = 3600.0
    combined: bool = True


@dataclass
class RunSummary:
    """What a finished (or interrupted) run did."""

    store: RunStore
    records: list[Record] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return any(r.status in ("failed", "timeout") for r in self.records)


def cell_tag(repo: str, cell: Cell, platform: Platform) -> str:
    """Return the per-cell tag: `<repo>:<strategy>-<arch>` (with `-s<N>` past size 1)."""
    size = f"-s{cell.size}" if cell.size != 1 else ""
    return f"{repo}:{cell.strategy}-{platform.slug}{size}"


def strategy_tag(repo: str, strategy: str, size: int, suffix: str = "") -> str:
    """Return the strategy's index tag: `<repo>:<strategy>[-<suffix>][-s<N>]`."""
    parts = [strategy] + ([suffix] if suffix else []) + ([f"s{size}"] if size != 1 else [])
    return f"{repo}:{'-'.join(parts)}"


def probe_cells(cells: list[Cell], host: Platform) -> dict[Cell, Availability]:
    """Return each cell's availability on this host."""
    return {c: REGISTRY[c.strategy].probe(parse_platform(c.platform), host) for c in cells}


def _settings(req: RunRequest, scenario: Scenario, size: int, host: Platform) -> BuildSettings:
    return BuildSettings(
        registry=req.registry,
        size=size,
        base_image=req.base_image or scenario.base_image,
        timeout=req.timeout,
        builder=req.builder,
        host=host,
    )


def execute(req: RunRequest, say: Say) -> RunSummary:
    """Run the whole matrix of `req`, storing every record as it completes.

    Returns the summary. Raises HostNotReady before anything runs when the engine or
    registry is missing; KeyboardInterrupt goes on up after the manifest is written.
    """
    host = host_platform()
    scenarios = {s.name: s for s in req.scenarios}
    cells = expand(
        [(s.name, [p.name for p in s.platforms]) for s in req.scenarios],
        req.strategies,
        req.sizes,
        [p.name for p in req.platforms],
    )
    availability = probe_cells(cells, host)
    runnable = [c for c in cells if availability[c].available]
    if runnable:
        services.ensure_engine(say)
        services.ensure_registry(req.registry, say)
    store = RunStore(req.results_root)
    summary = RunSummary(store)
    prov = provenance.collect(sorted({parse_platform(c.platform) for c in cells}))
    manifest: dict[str, Any] = {
        "status": "running",
        "started_at": now_iso(),
        "request": {
            "scenarios": [s.name for s in req.scenarios],
            "scenario_digests": {s.name: s.digest() for s in req.scenarios},
            "strategies": list(req.strategies),
            "platforms": [p.name for p in req.platforms],
            "sizes": list(req.sizes),
            "reps": req.reps,
            "registry": req.registry,
            "base_image": req.base_image,
            "builder": req.builder,
        },
        "cells": [
            {
                "cell": c.key,
                "scenario": c.scenario,
                "size": c.size,
                "strategy": c.strategy,
                "platform": c.platform,
                "available": availability[c].available,
                "reason": availability[c].reason,
            }
            for c in cells
        ],
        "provenance": prov,
    }
    store.write_manifest(manifest)
    say(
        f"run {store.run_id}: {len(runnable)} of {len(cells)} cells available, "
        f"{req.reps} repetition(s); results in {store.path}"
    )

    def keep(record: Record) -> None:
        store.add(record)
        summary.records.append(record)

    try:
        for c in cells:
            if not availability[c].available:
                say(f"  {c.strategy} {c.platform}: unavailable ({availability[c].reason})")
                keep(
                    Record(
                        "cell",
                        store.run_id,
                        c.scenario,
                        c.size,
                        c.strategy,
                        c.platform,
                        1,
                        "unavailable",
                        0.0,
                        now_iso(),
                        reason=availability[c].reason,
                        provenance=prov,
                    )
                )
        broken = _provision(req, runnable, scenarios, host, store, keep, say, prov)
        plan = interleave(runnable, req.reps)
        for i, (rep, c) in enumerate(plan, 1):
            say(
                f"[{i}/{len(plan)}] {c.scenario} {c.strategy} {c.platform} size {c.size} "
                f"rep {rep}/{req.reps}"
            )
            if c in broken:
                keep(
                    Record(
                        "cell",
                        store.run_id,
                        c.scenario,
                        c.size,
                        c.strategy,
                        c.platform,
                        rep,
                        "failed",
                        0.0,
                        now_iso(),
                        failure_class="provision",
                        log_tail=broken[c],
                        provenance=prov,
                    )
                )
                continue
            keep(_run_cell(req, c, rep, scenarios[c.scenario], host, store, prov, say))
        manifest["artifact_comparison"] = _join_and_combine(
            req, runnable, scenarios, host, store, keep, say, prov, summary
        )
    except KeyboardInterrupt:
        summary.interrupted = True
        manifest.update(status="interrupted", finished_at=now_iso())
        store.write_manifest(manifest)
        raise
    manifest.update(status="failed" if summary.failed else "ok", finished_at=now_iso())
    store.write_manifest(manifest)
    return summary


def _provision(
    req: RunRequest,
    runnable: list[Cell],
    scenarios: dict[str, Scenario],
    host: Platform,
    store: RunStore,
    keep: Callable[[Record], None],
    say: Say,
    prov: dict[str, Any],
) -> dict[Cell, str]:
    """Build and cache each (scenario, strategy, platform)'s toolchain stage, timed as
    provisioning. Returns the cells whose provisioning failed, with the log tail."""
    broken: dict[Cell, str] = {}
    done: dict[tuple[str, str, str], BuildOutcome] = {}
    for c in runnable:
        key = (c.scenario, c.strategy, c.platform)
        strategy = REGISTRY[c.strategy]
        if key not in done and isinstance(strategy, BuildxStrategy):
            platform = parse_platform(c.platform)
            say(f"  provisioning {c.strategy} toolchain for {c.platform}")
            outcome = strategy.provision(
                scenarios[c.scenario],
                [platform],
                _settings(req, scenarios[c.scenario], c.size, host),
                store.log_path(f"provision-{c.scenario}-{c.strategy}-{platform.slug}"),
            )
            done[key] = outcome
            keep(
                Record(
                    "provision",
                    store.run_id,
                    c.scenario,
                    c.size,
                    c.strategy,
                    c.platform,
                    1,
                    outcome.status,
                    outcome.wall_s,
                    now_iso(),
                    failure_class=outcome.failure_class,
                    log_tail=outcome.log_tail,
                    provenance=prov,
                )
            )
            say(f"    {outcome.status} in {outcome.wall_s:.1f} s")
        if key in done and done[key].status != "ok":
            broken[c] = done[key].log_tail
    return broken


def _run_cell(
    req: RunRequest,
    c: Cell,
    rep: int,
    scenario: Scenario,
    host: Platform,
    store: RunStore,
    prov: dict[str, Any],
    say: Say,
) -> Record:
    """Build one cell once, push it, validate it; return its record."""
    strategy = REGISTRY[c.strategy]
    assert isinstance(strategy, BuildxStrategy)
    platform = parse_platform(c.platform)
    settings = _settings(req, scenario, c.size, host)
    tag = cell_tag(image_repo(settings, scenario), c, platform)
    log = store.log_path(f"{c.key}-r{rep}")
    started = now_iso()
    outcome = strategy.build(scenario, [platform], settings, tag, log)
    status = outcome.status
    validation: dict[str, Any] = {}
    note = ""
    if status == "ok":
        ref = f"{tag.rsplit(':', 1)[0]}@{outcome.digest}" if outcome.digest else tag
        report = validate_image(
            ref,
            [platform],
            host=host,
            artifacts=[a.path for a in scenario.artifacts],
            expect_output=scenario.smoke_expect,
        )
        validation = report.as_dict()
        if report.passed:
            note = next((c.detail for c in report.checks if c.name == "smoke"), "")
        else:
            # An image that fails validation is a failed cell, whatever its time.
            status = "failed"
            note = "; ".join(f"{c.name}: {c.detail}" for c in report.failures())
    failure = outcome.failure_class or ("validation" if status == "failed" else "")
    say(
        f"    {status} in {outcome.wall_s:.1f} s"
        + (f" ({failure})" if failure else "")
        + (f": {note}" if note else "")
    )
    return Record(
        "cell",
        store.run_id,
        c.scenario,
        c.size,
        c.strategy,
        c.platform,
        rep,
        status,
        outcome.wall_s,
        started,
        tag=tag,
        digest=outcome.digest,
        failure_class=failure,
        log_tail=outcome.log_tail,
        log_file=str(log),
        validation=validation,
        extra=dict(outcome.extra),
        provenance=prov,
    )


def _join_and_combine(
    req: RunRequest,
    runnable: list[Cell],
    scenarios: dict[str, Scenario],
    host: Platform,
    store: RunStore,
    keep: Callable[[Record], None],
    say: Say,
    prov: dict[str, Any],
    summary: RunSummary,
) -> list[dict[str, Any]]:
    """Per (scenario, size, strategy): join the cells' images into one index (timed and
    validated), then time the one-command multi-platform build users run.

    Returns the cross-strategy artifact comparison (informational)."""
    reports: dict[tuple[str, int], dict[str, ValidationReport]] = {}
    groups: dict[tuple[str, int, str], list[Cell]] = {}
    for c in runnable:
        groups.setdefault((c.scenario, c.size, c.strategy), []).append(c)
    for (name, size, strategy_name), group in groups.items():
        scenario = scenarios[name]
        strategy = REGISTRY[strategy_name]
        assert isinstance(strategy, BuildxStrategy)
        settings = _settings(req, scenario, size, host)
        repo = image_repo(settings, scenario)
        last = {
            r.platform: r
            for r in summary.records
            if r.kind == "cell"
            and r.scenario == name
            and r.size == size
            and r.strategy == strategy_name
        }
        ok_platforms = [
            parse_platform(c.platform)
            for c in group
            if c.platform in last and last[c.platform].status == "ok"
        ]
        target = strategy_tag(repo, strategy_name, size)
        if ok_platforms:
            record, report = _join(
                target, [last[p.name].tag for p in ok_platforms],
                [parse_platform(c.platform) for c in group], scenario, size, strategy_name,
                store, prov, say, host,
            )  # fmt: skip
            keep(record)
            if report is not None:
                reports.setdefault((name, size), {})[strategy_name] = report
        if req.combined:
            platforms = [parse_platform(c.platform) for c in group]
            tag = strategy_tag(repo, strategy_name, size, "combined")
            say(f"  combined build {strategy_name} {','.join(p.name for p in platforms)}")
            log = store.log_path(f"{name}-s{size}-{strategy_name}-combined")
            started = now_iso()
            outcome = strategy.build(scenario, platforms, settings, tag, log)
            say(f"    {outcome.status} in {outcome.wall_s:.1f} s")
            keep(
                Record(
                    "combined",
                    store.run_id,
                    name,
                    size,
                    strategy_name,
                    "",
                    1,
                    outcome.status,
                    outcome.wall_s,
                    started,
                    tag=tag,
                    digest=outcome.digest,
                    failure_class=outcome.failure_class,
                    log_tail=outcome.log_tail,
                    log_file=str(log),
                    extra={"platforms": [p.name for p in platforms], **outcome.extra},
                    provenance=prov,
                )
            )

    comparison = []
    for (name, size), by_strategy in reports.items():
        for check in compare_artifacts(by_strategy):
            comparison.append({"scenario": name, "size": size, **check.as_dict()})
    return comparison


def _join(
    target: str,
    sources: list[str],
    expected: list[Platform],
    scenario: Scenario,
    size: int,
    strategy: str,
    store: RunStore,
    prov: dict[str, Any],
    say: Say,
    host: Platform,
) -> tuple[Record, ValidationReport | None]:
    """Join per-cell tags into the index `target` (timed), then validate the index
    against every requested and available platform, without smoke runs (each cell's
    image was already run by digest). Returns the record and the validation report."""
    say(f"  joining {strategy} into {target}")
    started = now_iso()
    t0 = time.monotonic()
    try:
        docker.imagetools_create(target, sources)
    except ArchbenchError as exc:
        failed = Record(
            "merge", store.run_id, scenario.name, size, strategy, "", 1, "failed",
            time.monotonic() - t0, started, tag=target, failure_class="merge",
            log_tail=str(exc)[-4000:], provenance=prov,
        )  # fmt: skip
        return failed, None
    wall = time.monotonic() - t0
    report = validate_image(
        target, expected, host=host, artifacts=[a.path for a in scenario.artifacts], smoke=False
    )
    problems = "; ".join(f"{c.name} {c.platform}: {c.detail}" for c in report.failures())
    say(
        f"    {'ok' if report.passed else 'failed'} in {wall:.1f} s"
        + (f": {problems}" if problems else f": {', '.join(sorted(report.platform_digests))}")
    )
    record = Record(
        "merge", store.run_id, scenario.name, size, strategy, "", 1,
        "ok" if report.passed else "failed", wall, started, tag=target,
        digest=report.index_digest, platform_digests=report.platform_digests,
        failure_class="" if report.passed else "validation",
        validation=report.as_dict(), provenance=prov,
    )  # fmt: skip
    return record, report
