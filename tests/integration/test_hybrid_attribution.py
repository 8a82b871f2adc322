"""hybrid for linux/arm64 on a small C project that runs target code at build time (a
configure-style probe), beside qemu-user: both validate, both builds' CPU time is
attributed to programs from the kernel's exit records (taskstats, or process
accounting), the artifacts are compared, cross is not a candidate, and the report shows
the attribution and Amdahl's limit."""

import csv
import subprocess
from pathlib import Path

import pytest

from bench.engine.attribution import SHARED_ENGINE
from bench.engine.results import Record, read_run, resolve_run
from bench.tools import acct
from tests.conftest import run_archbench

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]

NAME = "hyattr"
ROUNDING_S = 0.02
"""What process accounting can lose per process: its user and its system time are each
counted in whole 1/100 s, rounded down."""
EXIT_S = 0.005
"""What taskstats can lose per process: the record is taken as the process begins to
exit, before its address space is torn down."""
OTHER_LOSS = 0.05
"""The share of a cell's CPU time (BuildKit's cgroup) allowed to escape accounting
beyond rounding: runc's set-up of each step, which is no program of the build."""


def coverage_bound(processes: int, total_cpu_s: float, source: str) -> float:
    """Return the least coverage a build of `processes` and `total_cpu_s` recorded by
    `source` must reach: 1 - OTHER_LOSS - the most the records can lose per process, as
    a share of the total."""
    per_process = ROUNDING_S if source == acct.SOURCE else EXIT_S
    return 1 - OTHER_LOSS - per_process * processes / total_cpu_s


SCENARIO = f"""
name = "{NAME}"
platforms = ["linux/amd64", "linux/arm64"]
[source]
path = "src"
[toolchain]
packages = ["gcc", "make", "libc6-dev"]
[build]
command = 'sh ./probe.sh && make -j"$JOBS" CC="$CC"'
needs_target_code = true
[artifacts]
"{NAME}" = "/usr/local/bin/{NAME}"
[smoke]
command = ["/usr/local/bin/{NAME}"]
expect = "arch={{arch}} target={{arch}} selftest=ok"
"""
# Compiles a program for the target and runs it during the build, as configure does.
PROBE = """set -e
printf 'int main(void) { return sizeof(long) == 8 ? 0 : 1; }\\n' > conftest.c
$CC -o conftest conftest.c
if ./conftest; then n=8; else n=4; fi
echo "#define LONG_BYTES $n" > config.h
rm -f conftest conftest.c
"""
MAKEFILE = f"""OBJS = main.o k1.o k2.o k3.o k4.o
{NAME}: $(OBJS)
\t$(CC) -o $@ $(OBJS)
%.o: %.c config.h
\t$(CC) -O2 -c -o $@ $<
"""
KERNEL = """unsigned long k{i}(unsigned long n) {{
    unsigned long a = {i};
    for (unsigned long j = 0; j < n; j++) a = a * 6364136223846793005UL + j;
    return a;
}}
"""
MAIN = """#include <stdio.h>
#include <sys/utsname.h>
#include "config.h"
#if defined(__x86_64__)
#define TARGET "x86_64"
#elif defined(__aarch64__)
#define TARGET "aarch64"
#else
#define TARGET "unknown"
#endif
unsigned long k1(unsigned long), k2(unsigned long), k3(unsigned long), k4(unsigned long);
int main(void) {
    struct utsname u;
    if (uname(&u) != 0) return 2;
    int ok = LONG_BYTES == sizeof(long) && k1(0) == 1 && k4(0) == 4 && k2(3) != k3(3);
    printf("arch=%s target=%s selftest=%s\\n", u.machine, TARGET, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
"""


def write_scenario(root: Path) -> Path:
    src = root / NAME / "src"
    src.mkdir(parents=True)
    (root / NAME / "scenario.toml").write_text(SCENARIO)
    (src / "probe.sh").write_text(PROBE)
    (src / "Makefile").write_text(MAKEFILE)
    (src / "main.c").write_text(MAIN)
    for i in range(1, 5):
        (src / f"k{i}.c").write_text(KERNEL.format(i=i))
    return root / NAME


@pytest.fixture(scope="module")
def hybrid_run(archbench_cmd, registry, binfmt_arm64, tmp_path_factory):
    root = tmp_path_factory.mktemp("hyattr")
    scenario = write_scenario(root)
    done: subprocess.CompletedProcess[str] = run_archbench(
        archbench_cmd,
        root,
        str(scenario),
        "--strategy",
        "hybrid,qemu-user,cross",
        "--platform",
        "linux/arm64",
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = read_run(resolve_run(None, root / "results"))
    cells = {r.strategy: r for r in run.records if r.kind == "cell"}
    return run, cells, root / "reports"


def test_hybrid_and_qemu_user_build_and_validate(hybrid_run):
    _, cells, _ = hybrid_run
    for strategy in ("hybrid", "qemu-user"):
        record: Record = cells[strategy]
        assert record.status == "ok" and record.validation["passed"], record.log_tail
    facts = cells["hybrid"].compiler
    assert facts.cross.startswith("gcc-12-aarch64-linux-gnu") and facts.target.startswith("gcc-12")


def test_cross_is_no_candidate_for_a_build_that_runs_target_code(hybrid_run):
    run, cells, reports = hybrid_run
    assert cells["cross"].status == "unavailable"
    assert "declares build.needs_target_code" in cells["cross"].reason
    assert run.manifest["request"]["needs_target_code"] == [NAME]
    assert "Cross is not a candidate" in (reports / "summary.md").read_text()


COMPILES = 6
"""cc1 runs of a cold build: the probe's conftest.c and five units."""


@pytest.mark.parametrize("strategy", ["hybrid", "qemu-user"])
def test_the_builds_cpu_time_is_attributed_to_programs(hybrid_run, strategy):
    _, cells, _ = hybrid_run
    a = cells[strategy].attribution
    assert a is not None and a.total_cpu_s and a.coverage is not None
    assert set(a.notes) <= {SHARED_ENGINE}, a
    names = {p.name for p in a.programs}
    # Every short-lived compile is seen; more means another build shared the engine
    # (its processes and its CPU time in BuildKit's cgroup count too).
    compiles = next(p.processes for p in a.programs if p.name == "cc1")
    assert compiles >= COMPILES, a
    print(
        f"{strategy}: coverage {a.coverage:.1%} ({a.accounted_cpu_s:.2f} s of "
        f"{a.total_cpu_s:.2f} s), {a.processes} processes, from {a.source}"
    )
    if compiles == COMPILES and not a.notes:
        assert coverage_bound(a.processes, a.total_cpu_s, a.source) <= a.coverage <= 1.05, a
    else:
        print(f"{strategy}: another build shared the engine; coverage {a.coverage:.0%} unchecked")
    # Under qemu-user through binfmt_misc (flag F) the kernel names the target program,
    # not the emulator; hybrid's compiler proper is the native cross cc1.
    assert "cc1" in names and not any(n.startswith("qemu-") for n in names), names
    assert a.cpu_by_group["compiler"] > 0 and a.cpu_by_group["make"] > 0
    assert a.cpu_by_group["shell"] > 0  # sh, and the probe


def test_hybrid_moves_the_toolchain_out_of_emulation(hybrid_run):
    _, cells, _ = hybrid_run
    emulated, hybrid = cells["qemu-user"].attribution, cells["hybrid"].attribution
    assert emulated is not None and hybrid is not None
    # The same compiler work costs far less CPU time natively than emulated.
    assert hybrid.cpu_by_group["compiler"] < emulated.cpu_by_group["compiler"] / 3


def test_the_artifact_is_compared_with_qemu_users(hybrid_run):
    run, _, _ = hybrid_run
    checks = [
        c
        for c in run.manifest.get("artifact_comparison") or []
        if c["name"] == "same-artifact" and c["platform"] == "linux/arm64"
    ]
    (check,) = checks
    detail = check["detail"]
    assert "hybrid" in detail and "qemu-user" in detail
    assert "identical" in detail or "differ in sections" in detail, detail


def test_the_report_shows_the_attribution_and_amdahls_limit(hybrid_run):
    _, cells, reports = hybrid_run
    names = {p.name for p in reports.iterdir()}
    assert {"attribution.png", "attribution.svg", "attribution.csv", "amdahl.csv"} <= names
    with (reports / "amdahl.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    share = float(row["toolchain_share"])
    assert 0 < share < 1 and float(row["limit_s"]) < float(row["qemu_user_s"])
    assert float(row["hybrid_s"]) == pytest.approx(cells["hybrid"].wall_s, rel=1e-3)
