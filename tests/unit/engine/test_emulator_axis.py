"""The emulator as an axis of the matrix: expansion, keys, tags, interleaving, records."""

from dataclasses import replace
from pathlib import Path

from bench.analysis.compare import recipe_of
from bench.analysis.paired import compare_pairs, parse_pair
from bench.engine import runner
from bench.engine.manifest import ManifestCell, RequestInfo, RunManifest
from bench.engine.matrix import Cell, cell_of, expand, schedule
from bench.engine.results import EmulatorFacts, Record, RunStore, record_from_dict
from bench.platforms import parse_platform
from bench.strategies.qemu_user import emulator_limit
from bench.tools import buildtrace, emulators

TRIXIE = "1:10.0.13+ds-0+deb13u1"
BOOKWORM = "1:7.2+dfsg-7+deb12u18+b3"
AMD64 = parse_platform("linux/amd64")


def emulator(spec: str, version: str, binaries=(("aarch64", "/x/qemu-aarch64"),)):
    return emulators.Emulator(
        spec, "qemu-user", version, spec, "ab" * 32, Path("/x"), binaries, "10.0.13"
    )


HOST = emulators.Emulator("host", "qemu-user-static", BOOKWORM, "host", "", None, ())
TRIXIE_EMU = emulator("trixie", TRIXIE)
BOOKWORM_EMU = emulator("bookworm", BOOKWORM)


def record(cell: Cell, rep: int, wall: float, facts: EmulatorFacts | None, status="ok") -> Record:
    return Record(
        "cell",
        "r1",
        cell.scenario,
        cell.size,
        cell.strategy,
        cell.platform,
        rep,
        status,
        wall,
        "",
        cpu=cell.cpu,
        emulator=facts,
    )


def test_each_emulating_cell_is_expanded_per_emulator_and_others_are_not():
    cells = expand(
        [("cbench", ["linux/arm64"])],
        ["qemu-user", "cross", "qemu-system"],
        [1],
        cpus=["", "max"],
        emulators=["", "qemu10.0"],
    )
    user = [(c.cpu, c.emulator) for c in cells if c.strategy == "qemu-user"]
    assert user == [("", ""), ("", "qemu10.0"), ("max", ""), ("max", "qemu10.0")]
    assert [c.emulator for c in cells if c.strategy == "cross"] == [""]
    assert len([c for c in cells if c.strategy == "qemu-system"]) == 4
    # No axis given: the cells (and their keys) are those of runs before the axis.
    plain = expand([("cbench", ["linux/arm64"])], ["qemu-user"], [1])
    assert [c.key for c in plain] == ["cbench-s1-qemu-user-linux-arm64"]


def test_host_cells_keep_their_tags_and_pinned_ones_name_the_release():
    host = Cell("cbench", 1, "qemu-user", "linux/arm64")
    pinned = replace(host, emulator="qemu10.0")
    both = replace(host, cpu="max", emulator="qemu10.0")
    arm64 = parse_platform("linux/arm64")
    assert runner.cell_tag("r/archbench/cbench", host, arm64) == (
        "r/archbench/cbench:qemu-user-arm64"
    )
    assert runner.cell_tag("r/archbench/cbench", pinned, arm64) == (
        "r/archbench/cbench:qemu-user-qemu10.0-arm64"
    )
    assert runner.cell_tag("r/archbench/cbench", both, arm64).endswith(
        ":qemu-user-max-qemu10.0-arm64"
    )
    assert pinned.key == "cbench-s1-qemu-user-linux-arm64-eqemu10.0"
    assert len({host.key, pinned.key, both.key}) == 3
    for c in (pinned, both):
        assert "@" not in runner.cell_tag("r/x", c, arm64).split(":", 1)[1]


def test_emulator_variants_of_one_cell_are_adjacent_and_alternate():
    cells = expand(
        [("cbench", ["linux/arm64"])],
        ["qemu-user", "cross"],
        [1],
        emulators=["", "qemu10.0", "qemu7.2"],
    )
    plan = schedule(cells, reps=2)
    first = [c.emulator for _, _, c in plan[:4] if c.strategy == "qemu-user"]
    second = [c.emulator for _, _, c in plan[4:] if c.strategy == "qemu-user"]
    assert first == ["", "qemu10.0", "qemu7.2"]
    assert second == first[::-1]
    positions = [i for i, (_, _, c) in enumerate(plan[:4]) if c.strategy == "qemu-user"]
    assert positions == list(range(positions[0], positions[0] + 3))


def test_records_name_their_cell_by_the_emulator_old_and_host_ones_as_before():
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64")
    pinned = runner.emulator_facts(TRIXIE_EMU)
    assert cell_of(record(cell, 1, 9.0, pinned)).emulator == "qemu10.0"
    assert cell_of(record(cell, 1, 9.0, runner.emulator_facts(HOST))).emulator == ""
    assert cell_of(record(cell, 1, 9.0, None)).key == cell.key
    # A v2 record of a run under one pinned emulator (before the axis) names it too.
    old = record_from_dict(
        {
            "kind": "cell",
            "run_id": "r0",
            "scenario": "cbench",
            "size": 1,
            "strategy": "qemu-user",
            "platform": "linux/arm64",
            "rep": 1,
            "status": "ok",
            "wall_s": 5.0,
            "started_at": "",
            "schema_version": 2,
            "extra": {"emulator": {"spec": "trixie", "version": TRIXIE, "tag": "qemu10.0"}},
        }
    )
    assert cell_of(old).emulator == "qemu10.0"
    # The fault of a crash is a typed field and round-trips.
    crashed = replace(record(cell, 1, 0.0, pinned, "failed"), emulator_fault="QEMU 10.0.13: x")
    from dataclasses import asdict

    again = record_from_dict(asdict(crashed))
    assert again.emulator_fault == "QEMU 10.0.13: x" and again.emulator == pinned


def test_a_record_without_facts_names_its_pinned_cell():
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64", emulator="qemu7.2")
    r = runner._record(cell, "r1", 1, "unavailable", 0.0, reason="x")
    assert cell_of(r) == cell


def test_same_version_twice_is_measured_once_and_same_release_is_told_apart():
    said = []
    ten = emulator("10.0", TRIXIE)
    assert emulators.distinct([HOST, TRIXIE_EMU, ten], said.append) == (HOST, TRIXIE_EMU)
    assert said and "measured once" in said[0]
    other = emulator("trixie-backports", "1:10.0.14+ds-1")
    found = emulators.distinct([TRIXIE_EMU, other], said.append)
    assert [e.tag for e in found] == ["qemu10.0.13_ds-0_deb13u1", "qemu10.0.14_ds-1"]
    assert [e.axis for e in found] == [e.tag for e in found]
    assert HOST.axis == ""


def test_request_finds_each_cells_emulator():
    req = runner.RunRequest(
        (), ("qemu-user",), (), (1,), 1, Path("."), "r", emulators=(HOST, TRIXIE_EMU)
    )
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64")
    assert req.emulator_of(cell) is HOST
    assert req.emulator_of(replace(cell, emulator="qemu10.0")) is TRIXIE_EMU
    assert req.emulator_of(replace(cell, emulator="qemu9.9")) is None
    assert runner.RunRequest((), (), (), (1,), 1, Path("."), "r").emulator_of(cell) is None


def test_a_pinned_emulator_cell_is_unavailable_where_it_cannot_run():
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64", emulator="qemu10.0")
    assert emulator_limit(cell, TRIXIE_EMU, AMD64) == ""
    assert emulator_limit(replace(cell, emulator=""), HOST, AMD64) == ""
    native = emulator_limit(replace(cell, platform="linux/amd64"), TRIXIE_EMU, AMD64)
    assert "host's platform" in native
    # A guest cell's limit is its system emulator's, judged when that is fetched; a
    # guest of the host's own platform is emulated too.
    system = replace(cell, strategy="qemu-system")
    assert emulator_limit(system, TRIXIE_EMU, AMD64) == ""
    assert emulator_limit(replace(system, platform="linux/amd64"), TRIXIE_EMU, AMD64) == ""
    missing = emulator_limit(replace(cell, platform="linux/riscv64"), TRIXIE_EMU, AMD64)
    assert "no qemu-riscv64" in missing


def test_the_manifest_stores_the_axis_only_when_given():
    info = RequestInfo(["cbench"], {}, ["qemu-user"], [], [1], 3)
    cell = ManifestCell("k", "cbench", 1, "qemu-user", "linux/arm64")
    manifest = RunManifest("ok", "", "cli", info, [cell], {})
    data = manifest.to_json()
    assert "emulators" not in data["request"] and "emulator" not in data["cells"][0]
    manifest = RunManifest(
        "ok",
        "",
        "cli",
        replace(info, emulators=["host", "trixie"]),
        [replace(cell, emulator="qemu10.0")],
        {},
    )
    data = manifest.to_json()
    assert data["request"]["emulators"] == ["host", "trixie"]
    assert RunManifest.from_dict(data).cells[0].emulator == "qemu10.0"


def test_a_crash_is_named_with_its_signal_and_step():
    text = (
        "[build 3/4] RUN ldconfig\n"
        "[build 3/4] RUN ldconfig qemu: uncaught target signal 11 (Segmentation fault) - "
        "core dumped\n"
        "ERROR: [build 3/4] RUN ldconfig: process did not complete successfully\n"
    )
    assert buildtrace.emulator_crash(text) == ("11 (Segmentation fault)", "build 3/4")
    assert buildtrace.emulator_crash("ERROR: RUN x: qemu: uncaught target signal 4") == (
        "4",
        "RUN x",
    )
    assert buildtrace.emulator_crash("error: undefined reference") is None


def test_a_pinned_emulator_is_the_recipe_not_the_hosts():
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64")
    prov = {"qemu_user": "qemu-aarch64 version 7.2", "qemu_user_package": BOOKWORM}
    host = recipe_of(record(cell, 1, 5.0, runner.emulator_facts(HOST)), prov)
    pinned = recipe_of(record(cell, 1, 5.0, runner.emulator_facts(TRIXIE_EMU)), prov)
    assert host["emulator qemu_user"] == "qemu-aarch64 version 7.2"
    assert pinned["emulator qemu_user"] == "10.0.13"
    assert TRIXIE in pinned["emulator qemu_user_package"]
    other = replace(TRIXIE_EMU, sha256="cd" * 32)
    assert recipe_of(record(cell, 1, 5.0, runner.emulator_facts(other)), prov) != pinned


def test_pair_compares_emulator_versions_within_one_run(tmp_path):
    store = RunStore(tmp_path, "r1")
    store.write_manifest({"request": {"order": "interleaved"}})
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64")
    facts = {"": runner.emulator_facts(HOST), "qemu10.0": runner.emulator_facts(TRIXIE_EMU)}
    for rep in range(1, 6):
        for axis, factor in (("", 1.0), ("qemu10.0", 1.5)):
            store.add(record(replace(cell, emulator=axis), rep, 40.0 * factor + rep, facts[axis]))
    assert parse_pair("emulator=host,qemu10.0") == ("emulator", "host", "qemu10.0")
    found = compare_pairs(store.path, "emulator", "host", "qemu10.0")
    assert len(found.pairs) == 1
    pair = found.pairs[0]
    assert pair.cell_b.endswith("-eqemu10.0") and 1.4 < pair.ratio < 1.6


def test_the_flag_is_an_axis_of_emulating_strategies_only():
    import pytest

    from bench.cli.run import _emulators
    from bench.errors import UsageError

    assert _emulators([], ("qemu-user",)) == ()
    assert _emulators(["host"], ("qemu-user", "cross")) == ()
    with pytest.raises(UsageError, match="only qemu-user and qemu-system"):
        _emulators(["host,trixie"], ("cross", "native"))
    with pytest.raises(UsageError, match="bad --emulator"):
        _emulators(["trixie", "../x"], ("qemu-user",))


def test_doctor_grid_shows_qemu_user_and_qemu_system_per_cached_emulator(tmp_path):
    import json

    from bench.host.doctor import strategy_grid
    from bench.platforms import KNOWN
    from bench.scenarios.loader import resolve_scenario
    from tests.unit.strategies.test_probe import full_host

    entry = tmp_path / "qemu-user_1%3a10.0.13+ds-0+deb13u1"
    (entry / "tree").mkdir(parents=True)
    (entry / "emulator.json").write_text(
        json.dumps(
            {
                "package": "qemu-user",
                "version": TRIXIE,
                "sha256": "ab",
                "binaries": {"aarch64": "usr/bin/qemu-aarch64", "arm": "usr/bin/qemu-arm"},
            }
        )
    )
    (tmp_path / "half-unpacked").mkdir()
    found = emulators.cached(tmp_path)
    assert [(e.version, e.tag) for e in found] == [(TRIXIE, "qemu10.0")]
    assert found[0].binary("aarch64") == entry / "tree" / "usr/bin/qemu-aarch64"
    assert emulators.cached(tmp_path / "missing") == []
    platforms = [KNOWN[p] for p in ("linux/amd64", "linux/arm64", "linux/riscv64")]
    grid = strategy_grid(resolve_scenario("cbench"), platforms, full_host(), found, tmp_path)
    pinned = {r["platform"]: r for r in grid if r["variant"] == "qemu-user-qemu10.0"}
    assert (
        pinned["linux/arm64"]["available"] and pinned["linux/arm64"]["emulator_version"] == TRIXIE
    )
    assert "host's platform" in pinned["linux/amd64"]["reason"]
    assert "no qemu-riscv64" in pinned["linux/riscv64"]["reason"]
    host = [r for r in grid if r["variant"] == "qemu-user"]
    assert [r["emulator"] for r in host] == ["host"] * 3
    # qemu-system takes the axis too: a closure not fetched yet is what a run fetches
    # first; a cached one that cannot start says exactly why.
    system = {r["platform"]: r for r in grid if r["variant"] == "qemu-system-qemu10.0"}
    assert system["linux/arm64"]["available"]
    assert system["linux/arm64"]["note"] == (
        f"not fetched yet: a run fetches qemu-system-arm {TRIXIE} first"
    )
    assert "no guest recipe" in system["linux/riscv64"]["reason"]
    broken = tmp_path / "qemu-system-arm_1%3a10.0.13+ds-0+deb13u1"
    (broken / "root" / "usr" / "bin").mkdir(parents=True)
    (broken / "root" / "usr" / "bin" / "qemu-system-aarch64").write_text("not an ELF file")
    (broken / "system.json").write_text(
        json.dumps(
            {
                "package": "qemu-system-arm",
                "version": TRIXIE,
                "sha256": "cd",
                "binaries": {"aarch64": "usr/bin/qemu-system-aarch64"},
            }
        )
    )
    assert [e.version for e in emulators.cached(tmp_path)] == [TRIXIE]
    grid = strategy_grid(resolve_scenario("cbench"), platforms, full_host(), found, tmp_path)
    system = {r["platform"]: r for r in grid if r["variant"] == "qemu-system-qemu10.0"}
    assert not system["linux/arm64"]["available"]
    assert "qemu-system-aarch64: not a readable ELF file" in system["linux/arm64"]["reason"]


def test_show_and_the_frame_name_the_emulator_and_its_crashes():
    from bench.analysis.show import cell_rows
    from bench.report.frame import frame

    cell = Cell("cbench", 1, "qemu-user", "linux/arm64")
    pinned = replace(cell, emulator="qemu10.0")
    facts = runner.emulator_facts(TRIXIE_EMU)
    records = [
        record(cell, 1, 30.0, runner.emulator_facts(HOST)),
        replace(record(pinned, 1, 40.0, facts), flakes=("emulator-crash",)),
        replace(
            record(pinned, 2, 1.0, facts, "failed"),
            failure_class="emulator-crash",
            emulator_fault="QEMU 10.0.13: signal 11 (Segmentation fault) in step build 3/4",
        ),
    ]
    rows = {r["cell"]: r for r in cell_rows(records)}
    assert rows[cell.key]["emulator"].startswith("host: ")
    assert rows[cell.key]["emulator_crashes"] == 0
    row = rows[pinned.key]
    assert row["emulator"].startswith("qemu10.0: qemu-user 1:10.0.13+ds-0+deb13u1 (trixie")
    assert row["emulator_crashes"] == 2 and row["flakes"] == 1
    assert row["emulator_faults"] == [records[2].emulator_fault]
    df = frame(records)
    assert list(df["emulator"]) == ["host", "qemu10.0", "qemu10.0"]
    assert list(df["variant"]) == ["qemu-user", "qemu-user-qemu10.0", "qemu-user-qemu10.0"]
    assert list(df["emulator_version"])[1] == "10.0.13"


def store_emulator_run(root, run_id, axes, reps=5, seed=1, crash_rep=None):
    """A run of one cbench arm64 qemu-user cell under each emulator of `axes`
    ({axis value: (emulator, factor)}), interleaved, with a machine drift over the run."""
    import numpy as np

    rng = np.random.default_rng(seed)
    store = RunStore(root, run_id)
    store.write_manifest(
        {"run_id": run_id, "status": "ok", "request": {"order": "interleaved"}, "cells": []}
    )
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64")
    drift = 1.0
    for rep in range(1, reps + 1):
        order = list(axes) if rep % 2 else list(axes)[::-1]
        for axis in order:
            emu, factor = axes[axis]
            drift *= 1 + 0.02 * rng.standard_normal()
            wall = 60 * factor * drift * (1 + 0.01 * rng.standard_normal())
            r = replace(record(replace(cell, emulator=axis), rep, wall, None), run_id=run_id)
            r = replace(
                r, emulator=runner.emulator_facts(emu), started_at=f"2026-11-29T04:{rep:02d}"
            )
            if axis and rep == crash_rep:
                r = replace(
                    r,
                    status="failed",
                    wall_s=3.0,
                    failure_class="emulator-crash",
                    emulator_fault="QEMU 10.0.13: signal 11 (Segmentation fault) in step build 3/4",
                )
            if axis and rep == 1:
                r = replace(r, flakes=("emulator-crash",))
            store.add(r)
    return store.path


def test_the_report_has_an_emulator_versions_table_and_chart(tmp_path):
    from bench.report.frame import emulator_versions, frame
    from bench.report.writer import write_report

    run = store_emulator_run(
        tmp_path / "results",
        "20261129T040000Z-emu",
        {"": (HOST, 1.0), "qemu10.0": (replace(TRIXIE_EMU, reported="10.0.13 (Debian)"), 1.3)},
        crash_rep=4,
    )
    out = tmp_path / "report"
    written = {p.name for p in write_report([run], out)}
    assert {"emulators.csv", "emulators.png", "emulators.svg"} <= written
    summary = (out / "summary.md").read_text()
    assert "## Emulator versions" in summary
    line = next(x for x in summary.splitlines() if "| qemu10.0 |" in x)
    cols = [c.strip() for c in line.strip("|").split("|")]
    assert cols[4] == "10.0.13 (Debian)" and cols[5] == "4"
    ratio = float(cols[6].split()[0])
    assert 1.15 < ratio < 1.45 and "x slower" in cols[6]
    assert cols[8:11] == ["1", "1", "1"]  # failed, crashes, flakes (retried in repetition 1)
    assert "signal 11 (Segmentation fault) in step build 3/4" in summary
    host = next(x for x in summary.splitlines() if "| host |" in x)
    assert "1 (reference)" in host
    from bench.engine.results import read_runs

    runs, _ = read_runs([run])
    table = emulator_versions(frame(list(runs[0].records)))
    pinned = table[table["emulator"] == "qemu10.0"].iloc[0]
    assert pinned["ci_low"] < pinned["ratio"] < pinned["ci_high"]
    assert pinned["p_slower"] < 0.01


def test_without_the_host_the_lowest_version_is_the_reference(tmp_path):
    from bench.engine.results import read_runs
    from bench.report.frame import emulator_versions, frame

    seven = replace(BOOKWORM_EMU, reported="7.2.22 (Debian)")
    ten = replace(TRIXIE_EMU, reported="10.0.13 (Debian)")
    run = store_emulator_run(
        tmp_path, "r2", {"qemu10.0": (ten, 0.8), "qemu7.2": (replace(seven, label="qemu7.2"), 1.0)}
    )
    runs, _ = read_runs([run])
    table = emulator_versions(frame(list(runs[0].records)))
    assert list(table["emulator"]) == ["qemu7.2", "qemu10.0"]
    assert set(table["reference"]) == {"qemu7.2"}
    assert 0.7 < table.iloc[1]["ratio"] < 0.9
    # A run without the axis has no such table (and its report no such section).
    plain = store_emulator_run(tmp_path, "r3", {"": (HOST, 1.0)})
    runs, _ = read_runs([plain])
    df = frame([replace(r, emulator=None) for r in runs[0].records])
    assert emulator_versions(df).empty


def test_the_run_command_crosses_cpu_and_emulator_into_four_cells(monkeypatch):
    import pytest

    from bench.cli import main

    asked: list[str] = []

    def resolve(spec, *, say, cache_dir=None):
        asked.append(spec)
        return {"host": HOST, "trixie": TRIXIE_EMU, "bookworm": BOOKWORM_EMU}[spec]

    seen: list[runner.RunRequest] = []

    class Stop(Exception):
        pass

    def execute(req, say):
        seen.append(req)
        raise Stop

    monkeypatch.setattr(emulators, "resolve", resolve)
    monkeypatch.setattr(runner, "execute", execute)
    base = ["run", "cbench", "--strategy", "qemu-user", "--platform", "linux/arm64"]
    with pytest.raises(Stop):
        main([*base, "--cpu", "default,max", "--emulator", "host,trixie"])
    cells = runner.request_cells(seen[-1])
    assert [c.variant for c in cells] == [
        "qemu-user",
        "qemu-user-qemu10.0",
        "qemu-user-max",
        "qemu-user-max-qemu10.0",
    ]
    with pytest.raises(Stop):
        main([*base, "--emulator", "bookworm", "--emulator", "trixie", "--reps", "3"])
    assert asked[-2:] == ["bookworm", "trixie"]
    assert [c.variant for c in runner.request_cells(seen[-1])] == [
        "qemu-user-qemu7.2",
        "qemu-user-qemu10.0",
    ]
    assert seen[-1].reps == 3


def test_each_emulator_keeps_its_own_warm_build_cache_and_gc_knows_it():
    from bench.host.gc import referred
    from bench.scenarios.loader import resolve_scenario
    from bench.strategies import REGISTRY
    from bench.strategies.base import BuildSettings

    scenario = resolve_scenario("cbench")
    settings = BuildSettings("r", 1, scenario.base_image, 60.0, host=AMD64)
    user = REGISTRY["qemu-user"]
    host_file = user.dockerfile(scenario, replace(settings, emulator=HOST))
    assert host_file == user.dockerfile(scenario, settings)
    pinned_file = user.dockerfile(scenario, replace(settings, emulator=TRIXIE_EMU))
    assert "id=archbench-cbench-qemu-user-s1-$TARGETARCH" in host_file
    assert "id=archbench-cbench-qemu-user-qemu10.0-s1-$TARGETARCH" in pinned_file
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64", emulator="qemu10.0")
    _, mounts = referred([record(cell, 1, 5.0, runner.emulator_facts(TRIXIE_EMU))])
    assert mounts == {"archbench-cbench-qemu-user-qemu10.0-s1-arm64"}


def test_the_engine_names_each_stored_record_by_its_cells_emulator():
    engine = runner.Engine.__new__(runner.Engine)  # `named` reads the request alone
    engine.req = runner.RunRequest(
        (), ("qemu-user",), (), (1,), 1, Path("."), "r", emulators=(HOST, TRIXIE_EMU)
    )
    cell = Cell("cbench", 1, "qemu-user", "linux/arm64")
    failed = runner._record(replace(cell, emulator="qemu10.0"), "r1", 1, "failed", 0.0)
    assert failed.emulator == EmulatorFacts(tag="qemu10.0")
    assert engine.named(failed).emulator == runner.emulator_facts(TRIXIE_EMU)
    assert engine.named(record(cell, 1, 5.0, None)).emulator == runner.emulator_facts(HOST)
    cross = record(replace(cell, strategy="cross"), 1, 5.0, None)
    assert engine.named(cross).emulator is None
    engine.req = replace(engine.req, emulators=())
    assert engine.named(record(cell, 1, 5.0, None)).emulator is None


def test_the_hosts_binfmt_link_is_asked_its_version_through_its_target(tmp_path, monkeypatch):
    from bench.tools import qemu as qemu_tool

    line = tmp_path / "version-line"
    line.write_text("qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n")
    static = tmp_path / "qemu-aarch64-static"
    # Like QEMU's binfmt-P wrapper: called by the link's name, its argument is a program.
    static.write_text(f'#!/bin/sh\ncase "$0" in *-binfmt-P) exit 1;; esac\ncat {line}\n')
    static.chmod(0o755)
    link = tmp_path / "aarch64-binfmt-P"
    link.symlink_to(static)
    monkeypatch.setattr(qemu_tool, "user_version", lambda qemu_name="aarch64": "")
    host = replace(HOST, binaries=(("aarch64", str(link)),))
    assert emulators.with_reported_version(host).reported == (
        "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
    )
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    # The host's emulator runs whatever it says; a pinned one that does not run is refused.
    assert (
        emulators.with_reported_version(
            replace(HOST, binaries=(("aarch64", str(broken)),))
        ).reported
        == ""
    )
    import pytest

    with pytest.raises(emulators.EmulatorUnavailable):
        emulators.with_reported_version(replace(TRIXIE_EMU, binaries=(("aarch64", str(broken)),)))


def system_emulator(qemu_name: str, package: str):
    from bench.tools.qemu_system import Launcher
    from bench.tools.system_emulators import SystemEmulator

    root = Path(f"/c/{package}/root")
    return SystemEmulator(
        "trixie",
        "qemu10.0",
        qemu_name,
        package,
        TRIXIE,
        "trixie",
        "cd" * 32,
        root,
        Launcher(root / "ld.so", (root / "lib",), root / f"usr/bin/qemu-system-{qemu_name}"),
        250_000_000,
        ((package, TRIXIE, "cd" * 32),),
        "10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)",
    )


def test_guest_cells_on_a_pinned_emulator_get_its_system_emulator_or_the_reason():
    from bench.strategies.base import Availability
    from bench.tools.emulators import EmulatorUnavailable

    req = runner.RunRequest(
        (), ("qemu-system",), (), (1,), 1, Path("."), "r", emulators=(HOST, TRIXIE_EMU)
    )
    arm = Cell("cbench", 1, "qemu-system", "linux/arm64", emulator="qemu10.0")
    cells = [
        replace(arm, emulator=""),
        arm,
        replace(arm, cpu="max"),
        replace(arm, platform="linux/amd64"),
        replace(arm, strategy="qemu-user"),
        replace(arm, platform="linux/riscv64"),
    ]
    availability = {c: Availability(True) for c in cells}
    availability[cells[-1]] = Availability(False, "no guest recipe for linux/riscv64")
    asked: list[tuple[str, str]] = []

    def provide(emulator, qemu_name, *, say):
        asked.append((emulator.spec, qemu_name))
        if qemu_name == "x86_64":
            raise EmulatorUnavailable("qemu-system-x86 1:10.0.13: libpmem.so.1 (not found)")
        return system_emulator(qemu_name, "qemu-system-arm")

    systems, unavailable = runner.pinned_system_emulators(
        cells, req, availability, print, provide=provide
    )
    # Once per emulator and guest target; the host's, qemu-user's and unavailable cells
    # ask nothing.
    assert asked == [("trixie", "aarch64"), ("trixie", "x86_64")]
    assert [s.qemu_name for s in systems] == ["aarch64"]
    assert unavailable == {
        cells[3]: "qemu10.0's qemu-system-x86_64 (trixie) cannot run here: "
        "qemu-system-x86 1:10.0.13: libpmem.so.1 (not found)"
    }
    req = replace(req, system_emulators=systems)
    assert req.system_emulator_of(arm) is systems[0]
    assert req.system_emulator_of(cells[0]) is None
    assert req.system_emulator_of(cells[3]) is None
    # A merge or combined record names no one platform.
    assert req.system_emulator_of(replace(arm, platform="")) is None
    settings = runner._settings(req, resolve_scenario_cbench(), arm, AMD64)
    assert settings.emulator is TRIXIE_EMU and settings.system_emulators == systems
    host_settings = runner._settings(req, resolve_scenario_cbench(), cells[0], AMD64)
    assert host_settings.emulator is HOST and host_settings.system_emulators == ()
    facts = runner.system_emulator_facts(systems[0])
    assert (facts.package, facts.version, facts.tag) == ("qemu-system-arm", TRIXIE, "qemu10.0")
    assert facts.reported.startswith("10.0.13") and facts.sha256 == "cd" * 32
    prov = runner.system_emulator_provenance(systems[0])
    assert prov["command"][0] == "/c/qemu-system-arm/root/ld.so"
    assert prov["closure"] == [["qemu-system-arm", TRIXIE, "cd" * 32]]


def resolve_scenario_cbench():
    from bench.scenarios.loader import resolve_scenario

    return resolve_scenario("cbench")


def test_a_guest_on_a_pinned_emulator_never_falls_back_to_the_hosts_qemu():
    import pytest

    from bench.strategies.base import BuildSettings
    from bench.strategies.qemu_system import pinned_system
    from bench.tools.emulators import EmulatorUnavailable

    arm64 = parse_platform("linux/arm64")
    settings = BuildSettings("r", 1, "b", 60.0, host=AMD64)
    assert pinned_system(settings, arm64) is None
    assert pinned_system(replace(settings, emulator=HOST), arm64) is None
    system = system_emulator("aarch64", "qemu-system-arm")
    pinned = replace(settings, emulator=TRIXIE_EMU, system_emulators=(system,))
    assert pinned_system(pinned, arm64) is system
    with pytest.raises(EmulatorUnavailable, match="no system emulator for linux/amd64"):
        pinned_system(pinned, AMD64)
