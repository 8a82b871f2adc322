"""The report's section on Dockerfile scenarios: the strategy each platform's build was,
each instruction's cost per strategy and platform, and what $BUILDPLATFORM would save."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench.analysis import instructions
from bench.engine.results import Record
from bench.report.instruction_chart import emulation_ratio_chart


def _s(x: Any) -> str:
    return "-" if x is None or x != x else f"{float(x):.3g}"


def instruction_section(records: Sequence[Record]) -> list[tuple[str, Any]] | None:
    """Return the section's parts as (kind, value) pairs, kind one of heading, para,
    bullets, table ((headers, rows)) and chart (a function returning the Figure), or
    None when no record stored instructions."""
    rows = instructions.instruction_rows(records)
    if rows.empty:
        return None
    costs = instructions.instruction_costs(rows)
    picks = instructions.strategy_picks(records)
    parts: list[tuple[str, Any]] = [("heading", "Dockerfile instructions")]
    parts.append(
        (
            "bullets",
            tuple(
                f"{scenario} {platform}: built as {strategy}"
                for (scenario, platform), strategy in sorted(picks.items())
            ),
        )
    )
    for scenario in sorted(set(costs["scenario"])):
        summary = instructions.ratio_summary(costs, scenario)
        if summary:
            parts.append(("para", f"{scenario}, emulated steps against native: {summary}."))
    table_rows = tuple(
        (
            str(r["scenario"]),
            str(r["stage"]),
            str(r["line"]),
            instructions.label(int(r["line"]), str(r["instruction"]))[len(f"L{r['line']} ") :],
            "$BUILDPLATFORM" if r["runs_on"] == "build" else "target",
            str(r["strategy"]),
            str(r["platform"]),
            str(r["n"]),
            _s(r["median_s"]),
            _s(r["native_s"]),
            "-" if r["ratio"] != r["ratio"] else f"{r['ratio']:.2f}x",
            "yes" if r["emulated"] else "no",
        )
        for _, r in costs.iterrows()
    )
    parts.append(
        (
            "table",
            (
                (
                    "scenario",
                    "stage",
                    "line",
                    "instruction",
                    "runs on",
                    "strategy",
                    "platform",
                    "n",
                    "median s",
                    "native s",
                    "ratio",
                    "emulated",
                ),
                table_rows,
            ),
        )
    )
    make: Callable[[], Figure] = lambda: emulation_ratio_chart(costs)  # noqa: E731
    parts.append(("chart", make))
    save = instructions.savings(costs)
    if not save.empty:
        parts.append(
            (
                "para",
                "What moving the emulated steps to $BUILDPLATFORM would save "
                "(the sum of their excess over native):",
            )
        )
        saved = tuple(
            (
                str(r["scenario"]),
                str(r["strategy"]),
                str(r["platform"]),
                str(r["steps"]),
                _s(r["emulated_s"]),
                _s(r["native_s"]),
                _s(r["excess_s"]),
            )
            for _, r in save.iterrows()
        )
        parts.append(
            (
                "table",
                (
                    (
                        "scenario",
                        "strategy",
                        "platform",
                        "emulated steps",
                        "emulated s",
                        "native s",
                        "saving s",
                    ),
                    saved,
                ),
            )
        )
    return parts


def costs_frame(records: Sequence[Record]) -> pd.DataFrame:
    """Return `instruction_costs` of `records` (for the CSV written beside the report)."""
    return instructions.instruction_costs(instructions.instruction_rows(records))
