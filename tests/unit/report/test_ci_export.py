"""The CI dashboard exports against the formats' published field definitions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench.engine.results import Record
from bench.report import ci_export
from bench.report.frame import frame

DATA = Path(__file__).resolve().parents[2] / "data" / "formats"
# github-action-benchmark, tool `customSmallerIsBetter`: a JSON array of objects with
# `name` (string), `unit` (string) and `value` (number) required, and `range` and
# `extra` (strings) optional (README, "Examples" > custom benchmarks).
GAB_REQUIRED = {"name": str, "unit": str, "value": (int, float)}
GAB_OPTIONAL = {"range": str, "extra": str}


CELLS = (("native", "linux/amd64", 1.0), ("qemu-user", "linux/arm64", 3.0))


def _records() -> list[Record]:
    out = []
    for rep, wall in enumerate([100.0, 110.0, 105.0, 120.0, 101.0], 1):
        for strategy, platform, k in CELLS:
            out.append(
                Record(
                    kind="cell",
                    run_id="r",
                    scenario="df-app",
                    size=1,
                    strategy=strategy,
                    platform=platform,
                    rep=rep,
                    status="ok",
                    wall_s=wall * k,
                    started_at=f"2026-01-01T00:00:0{rep}+00:00",
                )
            )
    out.append(
        Record(
            kind="cell",
            run_id="r",
            scenario="df-app",
            size=1,
            strategy="cross",
            platform="linux/arm64",
            rep=1,
            status="unavailable",
            wall_s=0.0,
            started_at="2026-01-01T00:00:00+00:00",
        )
    )
    return out


def _validate(schema: dict[str, Any], doc: Any) -> None:
    """Check `doc` against the draft-07 keywords the BMF schema uses."""
    kinds = {"object": dict, "number": (int, float)}
    assert isinstance(doc, kinds[schema["type"]]) and not isinstance(doc, bool)
    for key in schema.get("required", []):
        assert key in doc
    for key, sub in schema.get("properties", {}).items():
        if key in doc:
            _validate(sub, doc[key])
    for pattern, sub in schema.get("patternProperties", {}).items():
        for key, value in doc.items():
            if re.search(pattern, key):
                _validate(sub, value)


def test_github_action_benchmark_fields() -> None:
    entries = json.loads(ci_export.export_text(frame(_records()), "github-action-benchmark"))
    assert isinstance(entries, list) and len(entries) == 2  # the unavailable cell is left out
    for e in entries:
        assert set(e) <= set(GAB_REQUIRED) | set(GAB_OPTIONAL)
        for key, kind in GAB_REQUIRED.items():
            assert isinstance(e[key], kind)
        for key, kind in GAB_OPTIONAL.items():
            assert isinstance(e.get(key, ""), kind)
    by_name = {e["name"]: e for e in entries}
    native = by_name["df-app/native/linux/amd64"]
    assert native["unit"] == "s" and native["value"] == pytest.approx(105.0)
    assert native["range"].startswith("± ") and "n=5" in native["extra"]
    assert by_name["df-app/qemu-user/linux/arm64"]["value"] == pytest.approx(315.0)


def test_bencher_metric_format() -> None:
    doc = json.loads(ci_export.export_text(frame(_records()), "bencher"))
    _validate(json.loads((DATA / "bmf.schema.json").read_text()), doc)
    metric = doc["df-app/native/linux/amd64"]["build-time"]
    assert metric["value"] == pytest.approx(105.0)
    assert metric["lower_value"] <= metric["value"] <= metric["upper_value"]
    assert metric["lower_value"] == pytest.approx(100.0)  # the median's interval, n=5
    assert metric["upper_value"] == pytest.approx(120.0)
    assert all(len(name) <= 1024 for name in doc)
    assert all(len(measure) <= 64 for m in doc.values() for measure in m)


def test_unknown_format_is_named() -> None:
    with pytest.raises(ValueError, match="unknown format 'gab'"):
        ci_export.export_text(frame(_records()), "gab")
