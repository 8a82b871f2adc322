"""Per-instruction cost: medians, emulation ratio and the $BUILDPLATFORM saving."""

from __future__ import annotations

from typing import Any

import pytest

from bench.analysis import instructions
from bench.engine.results import Record


def _cell(
    strategy: str, platform: str, rep: int, steps: list[dict[str, Any]], status: str = "ok"
) -> Record:
    return Record(
        kind="cell",
        run_id="r",
        scenario="df-app",
        size=1,
        strategy=strategy,
        platform=platform,
        rep=rep,
        status=status,
        wall_s=10.0,
        started_at="2026-01-01T00:00:00+00:00",
        instructions=tuple(steps),
    )


def _step(
    line: int,
    keyword: str,
    text: str,
    seconds: float,
    runs_on: str = "target",
    cached: bool = False,
) -> dict[str, Any]:
    return {
        "stage": "build",
        "line": line,
        "instruction": f"{keyword} {text}",
        "keyword": keyword,
        "runs_on": runs_on,
        "seconds": seconds,
        "cached": cached,
    }


def _records() -> list[Record]:
    out = []
    for rep, (apt, make) in enumerate([(10.0, 4.0), (12.0, 6.0), (11.0, 5.0)], 1):
        out.append(
            _cell(
                "native",
                "linux/amd64",
                rep,
                [
                    _step(1, "FROM", "debian:bookworm", 0.0, cached=True),
                    _step(3, "RUN", "apt-get install gcc", apt),
                    _step(5, "COPY", ". .", 0.5),
                    _step(6, "RUN", "make", make),
                ],
            )
        )
        out.append(
            _cell(
                "qemu-user",
                "linux/arm64",
                rep,
                [
                    _step(3, "RUN", "apt-get install gcc", apt * 4),
                    _step(5, "COPY", ". .", 0.6),
                    _step(6, "RUN", "make", make * 10),
                ],
            )
        )
    out.append(_cell("qemu-user", "linux/arm64", 4, [_step(3, "RUN", "x", 999.0)], "failed"))
    return out


def test_medians_ratios_and_emulated_flags() -> None:
    costs = instructions.instruction_costs(instructions.instruction_rows(_records()))
    assert set(costs["keyword"]) == {"RUN", "COPY"}  # FROM and failed cells left out
    apt = costs[(costs["line"] == 3) & (costs["strategy"] == "qemu-user")].iloc[0]
    assert apt["median_s"] == pytest.approx(44.0) and apt["native_s"] == pytest.approx(11.0)
    assert apt["ratio"] == pytest.approx(4.0) and apt["emulated"] and apt["n"] == 3
    make = costs[(costs["line"] == 6) & (costs["strategy"] == "qemu-user")].iloc[0]
    assert make["ratio"] == pytest.approx(10.0)
    copy = costs[(costs["line"] == 5) & (costs["strategy"] == "qemu-user")].iloc[0]
    assert not copy["emulated"]  # COPY runs in BuildKit, not under the emulator
    native = costs[costs["strategy"] == "native"]
    assert not native["emulated"].any() and (native["ratio"] == 1.0).all()
    summary = instructions.ratio_summary(costs, "df-app")
    assert summary.startswith("L6 RUN make (linux/arm64): 10.0x, L3 RUN apt-get install gcc")


def test_saving_is_the_emulated_steps_excess() -> None:
    costs = instructions.instruction_costs(instructions.instruction_rows(_records()))
    save = instructions.savings(costs).iloc[0]
    assert save["steps"] == 2
    assert save["emulated_s"] == pytest.approx(44.0 + 50.0)
    assert save["excess_s"] == pytest.approx((44.0 - 11.0) + (50.0 - 5.0))


def test_steps_on_buildplatform_are_not_emulated() -> None:
    recs = [
        _cell("native", "linux/amd64", 1, [_step(4, "RUN", "go build", 8.0, "build")]),
        _cell("cross", "linux/arm64", 1, [_step(4, "RUN", "go build", 9.0, "build")]),
    ]
    costs = instructions.instruction_costs(instructions.instruction_rows(recs))
    cross = costs[costs["strategy"] == "cross"].iloc[0]
    assert not cross["emulated"] and cross["ratio"] == pytest.approx(9.0 / 8.0)
    assert instructions.savings(costs).empty
    assert instructions.strategy_picks(recs) == {
        ("df-app", "linux/amd64"): "native",
        ("df-app", "linux/arm64"): "cross",
    }


def test_no_instructions_no_rows() -> None:
    rec = _cell("native", "linux/amd64", 1, [])
    assert instructions.instruction_rows([rec]).empty
    assert instructions.instruction_costs(instructions.instruction_rows([rec])).empty
