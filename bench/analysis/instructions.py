"""What each Dockerfile instruction costs: its median time per strategy and platform
from the BuildKit trace stored with each cell, its emulation ratio against the native
build, and what moving the emulated ones to $BUILDPLATFORM would save."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from bench.engine.results import Record

NATIVE = "native"
LABEL_MAX = 60
_COLUMNS = [
    "scenario",
    "strategy",
    "platform",
    "rep",
    "stage",
    "line",
    "instruction",
    "keyword",
    "runs_on",
    "seconds",
]


def instruction_rows(records: Iterable[Record]) -> pd.DataFrame:
    """Return one row per instruction that ran (not taken from the cache) in each
    measured, successful cell repetition that stored its instructions. FROM lines are
    left out: they pull or name a base, they run nothing."""
    rows = []
    for r in records:
        if r.kind != "cell" or r.status != "ok" or r.warmup:
            continue
        for step in r.instructions:
            if step.get("cached") or step.get("keyword") == "FROM":
                continue
            rows.append(
                (
                    r.scenario,
                    r.strategy,
                    r.platform,
                    r.rep,
                    str(step["stage"]),
                    int(step["line"]),
                    str(step["instruction"]),
                    str(step["keyword"]),
                    str(step["runs_on"]),
                    float(step["seconds"]),
                )
            )
    return pd.DataFrame(rows, columns=_COLUMNS)


def instruction_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Return per (scenario, instruction, strategy, platform) the median seconds, the
    native cell's median of the same instruction (`native_s`), the ratio of the two and
    whether the step was emulated (a RUN on a foreign target, not on $BUILDPLATFORM:
    COPY and ADD run in BuildKit itself, never under the emulator)."""
    cols = [
        "scenario",
        "stage",
        "line",
        "instruction",
        "keyword",
        "runs_on",
        "strategy",
        "platform",
        "median_s",
        "n",
        "native_s",
        "ratio",
        "emulated",
    ]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    keys = [
        "scenario",
        "stage",
        "line",
        "instruction",
        "keyword",
        "runs_on",
        "strategy",
        "platform",
    ]
    med = rows.groupby(keys, as_index=False).agg(
        median_s=("seconds", "median"), n=("seconds", "size")
    )
    native = (
        med[med["strategy"] == NATIVE]
        .groupby(["scenario", "stage", "line"], as_index=False)
        .agg(native_s=("median_s", "median"))
    )
    native_platforms = set(med.loc[med["strategy"] == NATIVE, "platform"])
    out = med.merge(native, on=["scenario", "stage", "line"], how="left")
    out["ratio"] = out["median_s"] / out["native_s"]
    out["emulated"] = (
        (out["strategy"] != NATIVE)
        & (out["keyword"] == "RUN")
        & (out["runs_on"] == "target")
        & ~out["platform"].isin(native_platforms)
    )
    return out[cols].sort_values(["scenario", "line", "strategy", "platform"], ignore_index=True)


def savings(costs: pd.DataFrame) -> pd.DataFrame:
    """Return per (scenario, strategy, platform) the emulated steps' summed median time,
    their native time, and the excess (emulated - native, never below zero per step):
    what moving those steps to $BUILDPLATFORM would save at best."""
    cols = ["scenario", "strategy", "platform", "steps", "emulated_s", "native_s", "excess_s"]
    emu = costs[costs["emulated"] & costs["native_s"].notna()] if not costs.empty else costs
    if emu.empty:
        return pd.DataFrame(columns=cols)
    emu = emu.assign(excess_s=(emu["median_s"] - emu["native_s"]).clip(lower=0.0))
    out = emu.groupby(["scenario", "strategy", "platform"], as_index=False).agg(
        steps=("line", "size"),
        emulated_s=("median_s", "sum"),
        native_s=("native_s", "sum"),
        excess_s=("excess_s", "sum"),
    )
    return out[cols]


def label(line: int, instruction: str) -> str:
    """Return an instruction's short label: `L12 RUN apt-get update && ...`."""
    text = " ".join(instruction.split())
    if len(text) > LABEL_MAX:
        text = text[: LABEL_MAX - 3] + "..."
    return f"L{line} {text}"


def ratio_summary(costs: pd.DataFrame, scenario: str) -> str:
    """Return the scenario's emulated steps, slowest ratio first: `RUN npm ci: 12.4x, ...`
    ('' when none was emulated)."""
    emu = costs[(costs["scenario"] == scenario) & costs["emulated"] & costs["ratio"].notna()]
    if emu.empty:
        return ""
    worst = emu.sort_values("ratio", ascending=False)
    return ", ".join(
        f"{label(int(r['line']), str(r['instruction']))} ({r['platform']}): {r['ratio']:.1f}x"
        for _, r in worst.iterrows()
    )


def strategy_picks(records: Iterable[Record]) -> dict[tuple[str, str], str]:
    """Return, per (scenario, platform), the strategy a Dockerfile scenario's build was
    (the one cell of it that ran): native, cross or qemu-user."""
    picks: dict[tuple[str, str], str] = {}
    for r in records:
        if r.kind == "cell" and r.status != "unavailable" and r.instructions:
            picks[(r.scenario, r.platform)] = r.strategy
    return picks
