"""`archbench run --emulator host,trixie` on arm64: one run measures the cell under the
host's qemu-user and under trixie's QEMU, interleaved; each cell's records carry their
emulator's identity and validate, `show` and `report` name both, and the host's
binfmt_misc handlers are the same before and after.

This swaps the host-wide qemu-aarch64 handler for the trixie cell's builds: every other
arm64 build on the host runs under trixie's QEMU meanwhile (archbench runs wait for the
lock; other programs do not).
"""

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.engine.matrix import cell_of
from bench.engine.results import load_run, resolve_run
from bench.tools import binfmt, emulators
from tests.conftest import DATA, ROOT

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]

BINFMT = Path("/proc/sys/fs/binfmt_misc")


def handlers() -> dict[str, str]:
    """Every binfmt_misc handler of the host, as the kernel prints it."""
    return {
        p.name: binfmt.read_entry_text(p.name) or ""
        for p in sorted(BINFMT.iterdir())
        if p.name not in ("register", "status")
    }


def tiny_scenario(folder: Path) -> tuple[str, Path]:
    """A copy of the tiny scenario under a name of its own (no other run tags its images)."""
    name = f"emuaxis-{secrets.token_hex(4)}"
    tiny = DATA / "scenarios" / "tiny"
    shutil.copytree(tiny / "src", folder / "src")
    text = (tiny / "scenario.toml").read_text()
    (folder / "scenario.toml").write_text(text.replace('name = "tiny"', f'name = "{name}"', 1))
    return name, folder / "scenario.toml"


def archbench(archbench_cmd, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*archbench_cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_one_run_measures_the_host_and_trixie_side_by_side(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    trixie = emulators.resolve("trixie", say=print)
    before = handlers()
    name, scenario = tiny_scenario(tmp_path / "scenario")
    results = tmp_path / "results"
    done = archbench(
        archbench_cmd,
        "run",
        str(scenario),
        "--strategy",
        "qemu-user",
        "--platform",
        "linux/arm64",
        "--emulator",
        "host,trixie",
        "--reps",
        "2",
        "--no-combined",
        "--results",
        str(results),
        "--reports",
        str(tmp_path / "reports"),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert handlers() == before

    manifest, records = load_run(resolve_run(None, results))
    assert manifest["request"]["emulators"] == ["host", "trixie"]
    assert manifest["provenance"]["qemu_user_emulator"]["sha256"] == trixie.sha256
    cells = [r for r in records if r.kind == "cell"]
    by_axis = {}
    for r in cells:
        by_axis.setdefault(cell_of(r).emulator, []).append(r)
    assert sorted(by_axis) == ["", "qemu10.0"]
    for recs in by_axis.values():
        assert [r.rep for r in recs] == [1, 2]
        for r in recs:
            assert r.status == "ok" and r.validation["passed"], (r.status, r.log_tail)
            assert r.emulator is not None
    host = by_axis[""][0].emulator
    assert host.spec == "host" and host.reported
    pinned = by_axis["qemu10.0"][0].emulator
    assert (pinned.package, pinned.version, pinned.sha256) == (
        trixie.package,
        trixie.version,
        trixie.sha256,
    )
    assert pinned.reported.startswith("10.0.13 (Debian ") and pinned.tag == "qemu10.0"
    assert {r.tag.rsplit(":", 1)[1] for r in by_axis[""]} == {"qemu-user-arm64"}
    assert {r.tag.rsplit(":", 1)[1] for r in by_axis["qemu10.0"]} == {"qemu-user-qemu10.0-arm64"}
    # Interleaved (records are stored, and read, in the order they ran): round 1 one way,
    # round 2 the other.
    order = [cell_of(r).emulator for r in cells]
    assert order in (["", "qemu10.0", "qemu10.0", ""], ["qemu10.0", "", "", "qemu10.0"])
    merges = {r.tag.rsplit(":", 1)[1]: r.status for r in records if r.kind == "merge"}
    assert merges == {"qemu-user": "ok", "qemu-user-qemu10.0": "ok"}

    shown = archbench(archbench_cmd, "show", "--results", str(results), timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "emulator qemu10.0: qemu-user 1:10.0.13" in shown.stdout.replace("\n", " ")
    report = archbench(
        archbench_cmd, "report", "--results", str(results), "--out", str(tmp_path / "r2")
    )
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "r2" / "summary.md").read_text()
    assert "## Emulator versions" in summary
    row = next(line for line in summary.splitlines() if "| qemu10.0 |" in line)
    assert f"| {name} s1 |" in row and "| 2 |" in row
    assert (tmp_path / "r2" / "emulators.png").exists()
