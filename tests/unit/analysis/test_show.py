"""`archbench show`'s rows, from the golden runs kept in tests/data/runs/."""

import json
import statistics

from bench.analysis.show import cell_rows
from bench.engine.results import load_run
from tests.conftest import DATA

RUNS = sorted((DATA / "runs").iterdir())


def _raw(run) -> list[dict]:
    """The run's records as stored JSON, in the order they were written."""
    return [json.loads(p.read_text()) for p in sorted((run / "records").iterdir())]


def test_rows_of_a_run_with_unavailable_cells():
    rows = {r["cell"]: r for r in cell_rows(load_run(RUNS[0])[1])}
    assert set(rows) == {
        "cbench-s1-native-linux-amd64",
        "cbench-s1-native-linux-arm64",
        "cbench-s1-qemu-system-linux-amd64",
        "cbench-s1-qemu-system-linux-arm64",
        "cbench-s1-qemu-user-linux-amd64",
        "cbench-s1-qemu-user-linux-arm64",
        "cbench-s1-cross-linux-amd64",
        "cbench-s1-cross-linux-arm64",
    }
    gone = rows["cbench-s1-native-linux-arm64"]
    assert gone["status"] == "unavailable" and gone["n"] == 0 and gone["stats"] is None
    assert gone["reason"] == "unavailable here (no native linux/arm64 node)"
    emulated = rows["cbench-s1-qemu-user-linux-arm64"]
    assert emulated["status"] == "ok" and emulated["n"] == 3
    assert emulated["samples"] == [74.67916041800004, 80.77594876900002, 87.35927581400006]
    assert emulated["stats"]["median"] == 80.77594876900002
    # That run predates step times and resource use: no columns are made up for it.
    assert emulated["steps"] == {} and emulated["cpu_s"] is None and emulated["peak_mib"] is None


def test_rows_follow_the_stored_cell_records_of_every_golden_run():
    for run in RUNS:
        raw = [r for r in _raw(run) if r["kind"] == "cell" and not r.get("warmup")]
        rows = cell_rows(load_run(run)[1])
        assert sum(r["n"] for r in rows) == sum(r["status"] == "ok" for r in raw)
        for row in rows:
            ok = [r for r in raw if _key(r) == row["cell"] and r["status"] == "ok"]
            assert row["samples"] == [r["wall_s"] for r in ok]
            if ok and ok[0].get("extra", {}).get("resources"):
                cpu = [
                    r["extra"]["resources"]["cpu_user_s"] + r["extra"]["resources"]["cpu_system_s"]
                    for r in ok
                ]
                assert row["cpu_s"] == statistics.median(cpu)
                compile_s = [r["extra"]["step_seconds"]["compile"] for r in ok]
                assert row["steps"]["compile"] == statistics.median(compile_s)


def test_warm_and_cpu_variants_are_rows_of_their_own():
    rows = {r["cell"]: r for r in cell_rows(load_run(RUNS[1])[1])}
    assert list(rows) == [
        "tiny-s1-qemu-user-default-linux-arm64",
        "tiny-s1-qemu-user-default-linux-arm64-warm",
        "tiny-s1-qemu-user-max-linux-arm64",
        "tiny-s1-qemu-user-max-linux-arm64-warm",
        "tiny-s1-cross-linux-arm64",
        "tiny-s1-cross-linux-arm64-warm",
    ]
    assert all(r["n"] == 2 and r["status"] == "ok" and r["flakes"] == 0 for r in rows.values())
    assert rows["tiny-s1-cross-linux-arm64"]["peak_mib"] > 0


def _key(r: dict) -> str:
    cpu = f"-{r['cpu']}" if r.get("cpu") else ""
    cache = "" if r.get("cache", "cold") == "cold" else f"-{r['cache']}"
    plat = r["platform"].replace("/", "-")
    return f"{r['scenario']}-s{r['size']}-{r['strategy']}{cpu}-{plat}{cache}"
