"""`archbench run --strategy qemu-system --emulator host,trixie` on arm64: the guest cell
runs once under the host's qemu-system (7.2 on bookworm) and once under trixie's (10.0),
started from its own suite's library closure through that closure's loader; each record
names the emulator the guest ran under, and the build log shows the pinned binary.

No binfmt_misc handler changes here (qemu-user is only used, as registered, if the arm64
guest's root file system is not cached yet).
"""

import secrets
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from bench.engine.matrix import cell_of
from bench.engine.results import load_run, resolve_run
from bench.tools import apt, emulators
from tests.conftest import DATA, ROOT, need

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]


def tiny_scenario(folder: Path) -> tuple[str, Path]:
    """A copy of the tiny scenario under a name of its own (no other run tags its images)."""
    name = f"sysemu-{secrets.token_hex(4)}"
    tiny = DATA / "scenarios" / "tiny"
    shutil.copytree(tiny / "src", folder / "src")
    text = (tiny / "scenario.toml").read_text()
    (folder / "scenario.toml").write_text(text.replace('name = "tiny"', f'name = "{name}"', 1))
    return name, folder / "scenario.toml"


def test_a_guest_cell_runs_under_trixies_qemu_system_beside_the_hosts(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    for tool in ("qemu-system-aarch64", "mmdebstrap", "mkfs.ext4", "debugfs"):
        need(shutil.which(tool) is not None, tool)
    trixie = emulators.resolve("trixie", say=print)
    want_sha = apt.package_record("qemu-system-arm", trixie.version)["SHA256"]
    name, scenario = tiny_scenario(tmp_path / "scenario")
    results = tmp_path / "results"
    done = subprocess.run(
        [
            *archbench_cmd,
            "run",
            str(scenario),
            "--strategy",
            "qemu-system",
            "--platform",
            "linux/arm64",
            "--emulator",
            "host,trixie",
            "--reps",
            "1",
            "--no-combined",
            "--results",
            str(results),
            "--reports",
            str(tmp_path / "reports"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    manifest, records = load_run(resolve_run(None, results))
    [system] = manifest["provenance"]["qemu_system_emulators"]
    assert (system["package"], system["version"], system["sha256"]) == (
        "qemu-system-arm",
        trixie.version,
        want_sha,
    )
    closure = {row[0] for row in system["closure"]}
    assert {"qemu-system-arm", "libc6", "libglib2.0-0t64"} <= closure
    root = Path(system["command"][-1]).parents[2]
    assert root.is_relative_to(emulators.CACHE_DIR) and root.name == "root"
    assert Path(system["command"][0]).name == "ld-linux-x86-64.so.2"
    assert Path(system["command"][0]).is_relative_to(root)

    cells = {cell_of(r).emulator: r for r in records if r.kind == "cell"}
    assert sorted(cells) == ["", "qemu10.0"]
    for r in cells.values():
        assert r.status == "ok" and r.validation["passed"], (r.status, r.log_tail)
    pinned, host = cells["qemu10.0"], cells[""]
    assert pinned.tag.rsplit(":", 1)[1] == "qemu-system-qemu10.0-arm64"
    assert host.tag.rsplit(":", 1)[1] == "qemu-system-arm64"
    facts = pinned.emulator
    assert facts is not None
    assert (facts.package, facts.version, facts.suite, facts.sha256, facts.tag) == (
        "qemu-system-arm",
        trixie.version,
        "trixie",
        want_sha,
        "qemu10.0",
    )
    assert facts.reported.startswith("10.0.13 (Debian 1:10.0.13")
    # The guest ran under the pinned binary, and the host's cell under the host's 7.2.
    ran = pinned.extra["qemu_system"]
    assert ran["reported"] == facts.reported
    assert Path(ran["binary"]).is_relative_to(root)
    assert host.extra["qemu_system"]["reported"].startswith("7.2.")
    assert host.emulator is None or host.emulator.package != "qemu-system-arm"
    log = Path(pinned.log_file).read_text()
    assert f"# qemu-system {facts.reported} (qemu-system-arm {trixie.version}" in log
    assert pinned.guest is not None and pinned.guest.boot_s > 0
    shown = subprocess.run(
        [*archbench_cmd, "show", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"qemu10.0: qemu-system-arm {trixie.version} (trixie" in shown.stdout.replace("\n", " ")
    # Nothing of the closure is left running.
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(str(root) in a for a in p.info["cmdline"] or [])
    ]
