"""Attribution of a build's CPU time to programs: groups by task name, the build's
processes told from the host's by ancestry, coverage, and the typed record field."""

import json
from dataclasses import asdict, replace

import pytest

from bench.engine import attribution
from bench.engine.attribution import GROUPS, build_processes, group_of, of_build
from bench.engine.results import Attribution, RunStore, read_run, record_from_dict
from bench.tools.process_record import ProcessRecord

T0 = 1_800_000_000


def p(comm: str, pid: int, ppid: int, cpu: float = 0.0, start: int = 0, elapsed: float = 1.0):
    return ProcessRecord(comm, pid, ppid, T0 + start, elapsed, cpu, 0.0)


@pytest.mark.parametrize(
    ("comm", "group"),
    [
        ("cc1", "compiler"),
        ("cc1plus", "compiler"),
        ("compile", "compiler"),
        ("gcc", "compiler"),
        ("gcc-12", "compiler"),
        ("aarch64-linux-g", "compiler"),
        ("x86_64-linux-gn", "compiler"),
        ("arm-linux-gnuea", "compiler"),
        ("as", "assembler"),
        ("aarch64-linux-gnu-as", "assembler"),
        ("ld", "linker"),
        ("collect2", "linker"),
        ("link", "linker"),
        ("ar", "linker"),
        ("make", "make"),
        ("sh", "shell"),
        ("dash", "shell"),
        ("bash", "shell"),
        ("configure", "shell"),
        ("conftest", "shell"),
        ("conftest.exe", "shell"),
        ("apt-get", "package-manager"),
        ("dpkg", "package-manager"),
        ("http", "package-manager"),
        ("sed", "other"),
        ("cbench", "other"),
        ("go", "other"),
    ],
)
def test_programs_fall_into_their_groups(comm, group):
    assert group_of(comm) == group


def test_a_builds_processes_descend_from_the_runtime_and_the_hosts_do_not():
    records = [
        p("cc1", 40, 30, cpu=2.0),
        p("as", 41, 30, cpu=0.5),
        p("gcc", 30, 20, cpu=0.1),
        p("make", 20, 10, cpu=0.2),
        p("sh", 10, 5, cpu=0.01),
        p("runc", 5, 1),  # the runtime, started by the engine (alive, not in the file)
        p("cc1", 99, 98, cpu=7.0),  # someone's compiler on the host
        p("bash", 98, 1),
    ]
    got = build_processes(records)
    assert sorted(r.pid for r in got) == [10, 20, 30, 40, 41]


def test_a_reused_pid_is_told_apart_by_time():
    records = [
        p("runc", 5, 1, start=0, elapsed=100),
        # pid 50 first: a host process, ended long before the build's pid 50 started.
        p("bash", 50, 1, start=-60, elapsed=1),
        p("make", 50, 5, start=10, elapsed=50),
        p("cc1", 60, 50, cpu=3.0, start=20),
        p("cc1", 61, 50, cpu=4.0, start=-59),  # the host's, child of the first pid 50
    ]
    got = build_processes(records)
    assert sorted(r.pid for r in got) == [50, 60]


def test_groups_coverage_and_top_programs():
    records = [
        p("runc", 5, 1),
        p("sh", 10, 5, cpu=1.0),
        p("make", 20, 10, cpu=1.0),
        p("cc1", 30, 20, cpu=5.0),
        p("cc1", 31, 20, cpu=3.0),
        p("as", 32, 20, cpu=1.0),
        p("cbench", 33, 10, cpu=1.0),
    ]
    got = of_build(records, [], 16.0, "cgroup docker/buildkit")
    assert set(got.cpu_by_group) == set(GROUPS)
    assert got.cpu_by_group["compiler"] == 8.0 and got.cpu_by_group["assembler"] == 1.0
    assert got.cpu_by_group["linker"] == 0.0 and got.cpu_by_group["other"] == 1.0
    assert got.accounted_cpu_s == 12.0 and got.processes == 6
    assert got.coverage == pytest.approx(0.75)
    assert got.denominator == "CPU time of cgroup docker/buildkit"
    assert got.programs[0].name == "cc1" and got.programs[0].processes == 2
    assert attribution.toolchain_share(got) == pytest.approx(9 / 12)


def test_nothing_accounted_says_why():
    got = of_build([], ["another archbench process holds process accounting"], 5.0, "x")
    assert got.processes == 0 and got.coverage == 0.0
    assert got.notes == ("another archbench process holds process accounting",)
    assert attribution.toolchain_share(got) is None
    stray = of_build([p("bash", 3, 1, cpu=1.0)], [], None, "")
    assert stray.coverage is None and "no process descending" in stray.notes[-1]


@pytest.mark.parametrize(
    ("mode", "strategy", "on"),
    [
        ("auto", "qemu-user", True),
        ("auto", "hybrid", True),
        ("auto", "cross", False),
        ("all", "native", True),
        ("none", "hybrid", False),
    ],
)
def test_which_cells_are_attributed(mode, strategy, on):
    assert attribution.attributes(mode, strategy) is on


def _cell_record() -> dict:
    return {
        "kind": "cell",
        "run_id": "r",
        "scenario": "cbench",
        "size": 1,
        "strategy": "hybrid",
        "platform": "linux/arm64",
        "rep": 0,
        "status": "ok",
        "wall_s": 10.0,
        "started_at": "2026-11-29T00:00:00+00:00",
        "schema_version": 3,
    }


def test_a_v3_record_loads_with_no_attribution():
    assert record_from_dict(_cell_record()).attribution is None


def test_an_attribution_round_trips_through_the_store(tmp_path):
    records = [p("runc", 5, 1), p("cc1", 30, 5, cpu=5.0), p("sh", 31, 5, cpu=1.0)]
    attributed = of_build(records, [], 6.5, "cgroup docker/buildkit")
    record = replace(record_from_dict(_cell_record()), attribution=attributed)
    store = RunStore(tmp_path)
    store.write_manifest({"status": "ok"})
    path = store.add(record)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 4 and data["attribution"]["cpu_by_group"]["compiler"] == 5
    (again,) = read_run(store.path).records
    assert again.attribution == attributed


def test_a_strategy_outcome_becomes_the_typed_field():
    from bench.engine.results import typed_fields

    got = typed_fields({"attribution": asdict(Attribution({"compiler": 1.0}, 1.0, 2.0, 0.5))})
    assert got["attribution"].coverage == 0.5 and got["extra"] == {}


@pytest.mark.parametrize(
    ("attr", "reason"),
    [
        ({"cpu_by_group": {"compiler": -1}}, "attribution.cpu_by_group.compiler"),
        ({"coverage": "most"}, "attribution.coverage"),
        ({"programs": [{"name": "cc1", "processes": "two"}]}, "attribution.programs"),
    ],
)
def test_a_mistyped_attribution_is_refused(attr, reason):
    data = _cell_record() | {"schema_version": 4, "attribution": attr}
    with pytest.raises(ValueError, match=reason.replace(".", r"\.")):
        record_from_dict(data)


def test_only_runc_that_the_engine_started_is_a_build():
    records = [
        p("runc", 5, 1000),  # started by dockerd (pid 1000): BuildKit's RUN step
        p("cc1", 7, 6, cpu=2.0),
        p("sh", 6, 5, cpu=0.1),
        p("containerd-shim", 50, 1),  # `docker run`: containerd's shim starts runc
        p("runc", 51, 50),
        p("cbench", 52, 51, cpu=5.0),
    ]
    got = of_build(records, [], 2.1, "cgroup", engine_pids=[1000])
    assert got.processes == 2 and got.accounted_cpu_s == 2.1 and got.notes == ()
    anyone = of_build(records, [], 7.1, "cgroup")
    assert anyone.processes == 3 and "no dockerd found" in anyone.notes[0]


def test_steps_that_overlap_are_another_builds_too():
    one_after_another = [
        p("runc", 5, 1000, start=0, elapsed=10),
        p("sh", 6, 5, cpu=1.0, start=0, elapsed=10),
        p("runc", 7, 1000, start=11, elapsed=5),
        p("sh", 8, 7, cpu=1.0, start=11, elapsed=5),
    ]
    quiet = of_build(one_after_another, [], 2.0, "cgroup", engine_pids=[1000])
    assert quiet.notes == ()
    beside = [*one_after_another, p("runc", 9, 1000, start=3, elapsed=20)]
    shared = of_build(beside, [attribution.SHARED_ENGINE], 2.0, "cgroup", engine_pids=[1000])
    assert shared.notes == (attribution.SHARED_ENGINE,)


def test_the_records_source_is_kept_and_an_acct_record_still_loads():
    from bench.tools import acct, taskstats

    records = [p("runc", 5, 1), p("cc1", 30, 5, cpu=5.0)]
    precise = of_build(records, [], 5.0, "cgroup", source=taskstats.SOURCE)
    assert precise.source == taskstats.SOURCE
    # A record stored before taskstats (schema 4, from process accounting) keeps its
    # source and notes.
    old = asdict(of_build(records, [acct.TRUNCATED], 5.5, "cgroup"))
    assert old["source"] == acct.SOURCE
    loaded = record_from_dict(_cell_record() | {"schema_version": 4, "attribution": old})
    assert loaded.attribution is not None and loaded.attribution.source == acct.SOURCE
    assert acct.TRUNCATED in loaded.attribution.notes
