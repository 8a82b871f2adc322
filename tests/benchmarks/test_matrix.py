"""The run matrix as pytest-benchmark benchmarks, timed by archbench's engine.

pytest-benchmark's timer is replaced by a clock that advances by exactly the wall time
the engine recorded for each build, so there is one timing path: `--benchmark-compare`
and `--benchmark-compare-fail=median:10%` judge the same numbers `archbench run` stores.
Repetitions run back to back here (pedantic rounds), unlike the CLI's interleaved order;
the run's manifest records mode `pytest-benchmark`.
"""

from __future__ import annotations

import pytest

from bench.engine.matrix import Cell
from bench.engine.runner import Engine
from bench.errors import ArchbenchError


class EngineClock:
    """A monotonic clock that moves only by the engine's recorded build times."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_build(benchmark, engine: Engine, cell: Cell) -> None:
    if not engine.availability[cell].available:
        pytest.skip(f"unavailable: {engine.availability[cell].reason}")
    clock = EngineClock()
    benchmark._timer = clock  # pytest-benchmark reads this clock around each round
    reps = iter(range(1, engine.req.reps + 1))
    statuses: list[str] = []

    def one_build() -> None:
        record = engine.measure(cell, next(reps))
        statuses.append(record.status)
        if record.status != "ok":
            raise ArchbenchError(f"{cell.key}: {record.status} ({record.failure_class})")
        clock.now += record.wall_s

    benchmark.extra_info.update(
        scenario=cell.scenario,
        size=cell.size,
        strategy=cell.strategy,
        platform=cell.platform,
        cache=cell.cache,
        cpu=cell.cpu or "default",
        run_id=engine.store.run_id,
        order="back-to-back",
    )
    benchmark.pedantic(one_build, rounds=engine.req.reps, iterations=1, warmup_rounds=0)
    assert statuses == ["ok"] * engine.req.reps
