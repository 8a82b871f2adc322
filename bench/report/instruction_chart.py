"""The chart of what each Dockerfile instruction costs under emulation."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench.analysis.instructions import label  # noqa: E402
from bench.report.charts import STRATEGY_COLOURS  # noqa: E402


def emulation_ratio_chart(costs: pd.DataFrame) -> Figure:
    """Return horizontal bars of each instruction's time against the native build's
    (`instruction_costs`), one bar per non-native cell, slowest first; a line marks 1x.
    Instructions on $BUILDPLATFORM are hatched: they ran natively in that cell too.

    Raises ValueError when no instruction has a native reference.
    """
    has = costs[(costs["strategy"] != "native") & costs["ratio"].notna()]
    if has.empty:
        raise ValueError("no Dockerfile instruction has both a native and another cell")
    has = has.sort_values("ratio").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, max(2.6, 0.42 * len(has) + 1.6)), layout="constrained")
    names = []
    for i, (_, r) in enumerate(has.iterrows()):
        names.append(
            f"{r['scenario']} {label(int(r['line']), str(r['instruction']))}\n"
            f"{r['strategy']} {r['platform']}"
        )
        ax.barh(
            i,
            float(r["ratio"]),
            color=STRATEGY_COLOURS.get(str(r["strategy"]), "#888888"),
            edgecolor="black",
            linewidth=0.4,
            hatch="" if r["runs_on"] == "target" else "//",
        )
        ax.text(float(r["ratio"]), i, f" {r['ratio']:.1f}x", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(has)), names, fontsize=7)
    ax.set_xlabel("instruction time / native build's (x)")
    ax.set_title("Cost of each Dockerfile instruction against the native build")
    return fig
