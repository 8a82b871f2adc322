"""pytest-benchmark over archbench's own engine.

The matrix comes from the environment (defaults in brackets):
ARCHBENCH_BENCH_SCENARIO [cbench], ARCHBENCH_BENCH_STRATEGIES [qemu-user,cross],
ARCHBENCH_BENCH_PLATFORMS [linux/amd64,linux/arm64], ARCHBENCH_BENCH_REPS [3],
ARCHBENCH_BENCH_CACHE [cold], ARCHBENCH_BENCH_CPUS [default], ARCHBENCH_BENCH_SIZE [1],
ARCHBENCH_BENCH_RESULTS [results/].
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cli.common import _platforms, _sizes
from bench.engine.matrix import split_values
from bench.engine.results import DEFAULT_RESULTS
from bench.engine.runner import Engine, RunRequest, request_cells
from bench.scenarios.loader import DEFAULT_SCENARIO, resolve_scenario
from bench.tools.registry import registry_address


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ARCHBENCH_BENCH_{name}", default)


def bench_request() -> RunRequest:
    """Return the RunRequest the benchmarks measure."""
    caches = {"cold": ("cold",), "warm": ("warm",), "both": ("cold", "warm")}
    return RunRequest(
        scenarios=(resolve_scenario(_env("SCENARIO", DEFAULT_SCENARIO)),),
        strategies=tuple(split_values([_env("STRATEGIES", "qemu-user,cross")])),
        platforms=_platforms([_env("PLATFORMS", "linux/amd64,linux/arm64")]),
        sizes=_sizes([_env("SIZE", "1")]),
        reps=int(_env("REPS", "3")),
        results_root=Path(_env("RESULTS", str(DEFAULT_RESULTS))),
        registry=registry_address(None),
        caches=caches[_env("CACHE", "cold")],
        cpus=tuple("" if c == "default" else c for c in split_values([_env("CPUS", "")])),
        combined=False,
    )


@pytest.fixture(scope="session")
def engine() -> Engine:
    eng = Engine(bench_request(), say=lambda m: print(m, flush=True), mode="pytest-benchmark")
    eng.record_unavailable()
    eng.provision()
    yield eng
    eng.finish()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        cells = request_cells(bench_request())
        metafunc.parametrize("cell", cells, ids=[c.key for c in cells])


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from bench.host import provenance
    from bench.platforms import parse_platform

    req = bench_request()
    machine_info["archbench"] = provenance.collect(
        sorted({parse_platform(p.name) for p in req.platforms})
    )
