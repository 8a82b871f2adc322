"""Which strategy to use for each target platform, written from stored results only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.engine.matrix import variant_name
from bench.report.frame import host_class_column, slowdown_table

PRECEDENCE = ("native", "hybrid", "cross", "qemu-user", "qemu-system")
"""Among strategies that tie (their medians' intervals overlap), the pick follows this
order, after faithful before approximate: the least machinery first."""
HOST_SAME_KIND = frozenset({"native", "qemu-user", "cross"})
"""On the host's own platform these run the same kind of build: a native compiler, no
emulation, no cross toolchain."""


def _rank(strategy: str) -> int:
    return PRECEDENCE.index(strategy) if strategy in PRECEDENCE else len(PRECEDENCE)


@dataclass(frozen=True)
class Option:
    """One strategy variant that built and validated a platform."""

    variant: str
    strategy: str
    median_s: float
    ci_low_s: float
    ci_high_s: float
    n: int
    vs_native: float | None
    vs_pick: float
    approximate: str = ""  # how its image differs from one built on the target ('' if not)


@dataclass(frozen=True)
class Recommendation:
    """The pick for one (scenario, size, platform), its alternatives and the caveats the
    data supports. `pick` is None when no strategy built a validated image."""

    scenario: str
    size: int
    platform: str
    cache: str
    pick: Option | None
    alternatives: tuple[Option, ...]
    native_reference: str
    caveats: tuple[str, ...] = field(default_factory=tuple)
    needs_target_code: bool | None = None
    """Whether the scenario declared build.needs_target_code (so cross was no candidate
    off the host's platform); None when the run asked for no cross cell."""
    host_class: str = ""
    """The hardware class every figure of it was measured on ('' when none is named)."""

    @property
    def emulation(self) -> Option | None:
        """The qemu-user option, when it ran emulated (its ratio is the workload's
        emulation cost)."""
        if self.native_reference.endswith(f" {self.platform}"):
            return None  # the host's own platform: qemu-user runs it without emulating
        for o in (self.pick, *self.alternatives):
            if o is not None and o.strategy == "qemu-user" and o.vs_native is not None:
                return o
        return None

    def sentence(self) -> str:
        """Return the recommendation and the ratios behind it."""
        where = f"{self.platform} ({self.scenario}, size {self.size}, {self.cache} cache)"
        if self.pick is None:
            return f"{where}: no strategy built an image that passed validation."
        p = self.pick
        ratio = (
            f", {p.vs_native:.2f}x native ({self.native_reference})"
            if p.vs_native is not None
            else ", no native reference ran"
        )
        text = f"{where}: use **{p.variant}**, median {p.median_s:.3g} s{ratio}."
        emu = self.emulation
        if emu is not None and emu.vs_native is not None:
            text += f" Emulating this workload (qemu-user) costs {emu.vs_native:.1f}x native"
            text += "." if emu is p else f", {emu.vs_pick:.1f}x the pick."
        faster = [o for o in self.alternatives if o.approximate and o.median_s < p.median_s]
        for o in faster:
            text += (
                f" {o.variant} is {p.median_s / o.median_s:.1f}x faster but its image is "
                f"not the same as one built on the target ({o.approximate}), so it is not "
                "the pick."
            )
        if p.approximate:
            text += f" Caution: {p.approximate}; no faithful strategy built this platform."
        if self.needs_target_code is True:
            text += (
                " Cross is not a candidate: the scenario needs target code at build time "
                "(build.needs_target_code)."
            )
        elif self.needs_target_code is False:
            text += (
                " Cross is a candidate: the scenario does not declare that its build needs "
                "target code (build.needs_target_code)."
            )
        return text


def _approx(row: pd.Series) -> str:
    value = row.get("approximate", "")
    return str(value) if isinstance(value, str) else ""


def _target_code(manifests: Sequence[dict[str, Any]], scenario: str) -> bool | None:
    """Return whether a run of `scenario` declared build.needs_target_code (the latest
    run that asked for cross says), or None when no run asked for cross."""
    found: bool | None = None
    for m in manifests:
        request = m.get("request") or {}
        if scenario in (request.get("scenarios") or []) and "cross" in (
            request.get("strategies") or []
        ):
            found = scenario in (request.get("needs_target_code") or [])
    return found


def _unavailable(manifests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for m in manifests:
        for c in m.get("cells", []):
            if not c.get("available", True):
                seen[str(c.get("cell"))] = c
    return list(seen.values())


def recommend(
    stats: pd.DataFrame, df: pd.DataFrame, manifests: Sequence[dict[str, Any]]
) -> list[Recommendation]:
    """Return one recommendation per (scenario, size, target platform, host class) of
    `stats` (`report.cell_statistics` rows; each hardware class is judged alone), judged
    on cold-cache cells when there are any: the fastest strategy variant by median whose
    images all passed validation, its ratio to native, the alternatives, and caveats
    (stats warnings, few repetitions, overlapping confidence intervals, failed or
    unvalidated cells in `df`, strategies the manifests list as unavailable with their
    reasons)."""
    out: list[Recommendation] = []
    if stats.empty:
        return out
    stats = stats.assign(host_class=host_class_column(stats))
    ratios = slowdown_table(stats)
    ratios = ratios.assign(host_class=host_class_column(ratios))
    if "host_class" in df.columns:
        df = df.assign(host_class=host_class_column(df))
    unavailable = _unavailable(manifests)
    for (scenario, size, platform, host_class), group in stats.groupby(
        ["scenario", "size", "platform", "host_class"], sort=True
    ):
        cache = "cold" if (group["cache"] == "cold").any() else str(group["cache"].iloc[0])
        cells = group[group["cache"] == cache]
        caveats: list[str] = []
        native_ref = ""
        options: list[tuple[pd.Series, float | None]] = []
        for _, row in cells.sort_values("median_s").iterrows():
            if row["validated"] is not True:
                state = "failed" if row["validated"] is False else "carries no validation"
                caveats.append(f"{row['variant']} is left out: its image validation {state}")
                continue
            match = ratios[
                (ratios["variant"] == row["variant"])
                & (ratios["platform"] == platform)
                & (ratios["cache"] == cache)
                & (ratios["scenario"] == scenario)
                & (ratios["size"] == size)
                & (ratios["host_class"] == host_class)
            ]
            vs_native = float(match["ratio"].iloc[0]) if not match.empty else None
            if not match.empty:
                native_ref = str(match["reference"].iloc[0])
            options.append((row, vs_native))
        target_code = _target_code(manifests, str(scenario))
        if target_code and not any(str(o[0]["strategy"]) == "native" for o in options):
            # Off the host's platform a cross build cannot run the target's code; on it,
            # cross is a native build like any other.
            for o in [o for o in options if str(o[0]["strategy"]) == "cross"]:
                options.remove(o)
                caveats.append(
                    f"{o[0]['variant']} is left out: the scenario needs target code at build time"
                )
        pick: Option | None = None
        alternatives: list[Option] = []
        if options:
            # The fastest faithful option leads: one whose image is what building on the
            # target gives. An approximate one (cross unpacking packages without their
            # scripts) is picked only when nothing faithful built the platform. Options
            # whose median intervals overlap the leader's tie with it, and among them
            # the pick follows PRECEDENCE: a 2 % difference inside the noise is no reason
            # to prefer emulation over a native build.
            order = sorted(options, key=lambda o: (bool(_approx(o[0])), float(o[0]["median_s"])))
            lead = order[0][0]
            tied = [
                o
                for o in order
                if bool(_approx(o[0])) == bool(_approx(lead))
                and float(o[0]["ci_low_s"]) <= float(lead["ci_high_s"])
                and float(lead["ci_low_s"]) <= float(o[0]["ci_high_s"])
            ]
            on_host = any(str(o[0]["strategy"]) == "native" for o in options)
            if on_host:
                # native only runs on the host's own platform, where qemu-user and cross
                # build natively too: they are one kind of build, and native names it.
                tied += [
                    o
                    for o in order
                    if all(o is not t for t in tied)
                    and not _approx(o[0])
                    and str(o[0]["strategy"]) in HOST_SAME_KIND
                    and str(lead["strategy"]) in HOST_SAME_KIND
                ]
            chosen = min(
                tied, key=lambda o: (_rank(str(o[0]["strategy"])), float(o[0]["median_s"]))
            )
            order = [chosen] + [o for o in order if o is not chosen]
            best = float(chosen[0]["median_s"])
            built = [
                Option(
                    str(r["variant"]),
                    str(r["strategy"]),
                    float(r["median_s"]),
                    float(r["ci_low_s"]),
                    float(r["ci_high_s"]),
                    int(r["n"]),
                    v,
                    float(r["median_s"]) / best,
                    _approx(r),
                )
                for r, v in order
            ]
            pick, alternatives = built[0], built[1:]
            for w in order[0][0]["warnings"]:
                caveats.append(f"{pick.variant}: {w}")
            if pick.n < 3:
                caveats.append(
                    f"{pick.variant} has {pick.n} repetition(s): too few to trust the ranking"
                )
            rest = [o for o in tied if o is not chosen]
            host_kind = on_host and str(chosen[0]["strategy"]) in HOST_SAME_KIND
            same = [
                str(o[0]["variant"])
                for o in rest
                if host_kind and str(o[0]["strategy"]) in HOST_SAME_KIND
            ]
            others = [str(o[0]["variant"]) for o in rest if str(o[0]["variant"]) not in same]
            if same:
                caveats.append(
                    f"on the host's own platform {', '.join([pick.variant, *same])} run the "
                    f"same kind of build (a native compiler, no emulation): {pick.variant} "
                    "is picked"
                )
            if others:
                caveats.append(
                    f"{pick.variant} ties with {', '.join(others)} (their median intervals "
                    "overlap); the pick follows the precedence faithful before approximate, "
                    "then " + ", ".join(PRECEDENCE)
                )
        failed = df[
            (df["kind"] == "cell")
            & (df["platform"] == platform)
            & (df["scenario"] == scenario)
            & (df["size"] == size)
            & df["status"].isin(["failed", "timeout"])
        ]
        if "host_class" in failed.columns:
            failed = failed[failed["host_class"] == host_class]
        for (variant, status), fgroup in failed.groupby(["variant", "status"]):
            classes = ", ".join(sorted({str(c) for c in fgroup["failure_class"] if c})) or "-"
            caveats.append(f"{variant}: {len(fgroup)} repetition(s) {status} ({classes})")
        for c in unavailable:
            if c.get("platform") == platform and c.get("scenario", scenario) == scenario:
                cpu = str(c.get("cpu") or "")
                name = variant_name(
                    str(c.get("strategy")),
                    "" if cpu == "default" else cpu,
                    str(c.get("emulator") or ""),
                )
                caveats.append(f"{name} was unavailable: {c.get('reason', 'no reason given')}")
        out.append(
            Recommendation(
                str(scenario),
                int(str(size)),
                str(platform),
                cache,
                pick,
                tuple(alternatives),
                native_ref,
                tuple(dict.fromkeys(caveats)),
                target_code,
                str(host_class),
            )
        )
    return out
