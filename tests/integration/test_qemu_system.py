"""The qemu-system strategy with the real emulator, Debian's real kernel and a real guest.

The first run prepares the guests (minutes: the arm64 root is bootstrapped under
qemu-user); later runs find them in /var/cache/archbench/guest.
"""

import shutil
import time
from pathlib import Path

import psutil
import pytest
from elftools.elf.elffile import ELFFile

from bench.platforms import KNOWN, Platform
from bench.scenarios.loader import load_scenario_file
from bench.strategies.base import BuildSettings
from bench.strategies.dockerfile import build_env
from bench.strategies.guest.build import run_in_guest
from bench.strategies.guest.cpu import cpu_string
from bench.strategies.guest.image import GuestImage, prepare_guest
from bench.strategies.qemu_system import QemuSystem
from bench.tools import docker
from tests.conftest import DATA, need

TINY = load_scenario_file(DATA / "scenarios" / "tiny" / "scenario.toml")
AMD64, ARM64 = KNOWN["linux/amd64"], KNOWN["linux/arm64"]
PLATFORMS = [pytest.param(ARM64, id="arm64"), pytest.param(AMD64, id="amd64")]


def _need_guest_tools(platform: Platform) -> None:
    need(shutil.which(f"qemu-system-{platform.qemu_name}") is not None, "qemu-system")
    for tool in ("mmdebstrap", "mkfs.ext4", "debugfs", "depmod"):
        need(shutil.which(tool) is not None, tool)


def _prepared(platform: Platform, request: pytest.FixtureRequest) -> GuestImage:
    _need_guest_tools(platform)
    if platform.name != "linux/amd64":
        # The foreign root file system's second stage runs under qemu-user.
        request.getfixturevalue("binfmt_arm64")
    return prepare_guest(platform, TINY.packages)


def _qemu_processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        name = p.info["name"] or ""
        if name.startswith("qemu-system") and any(str(path) in a for a in p.info["cmdline"] or []):
            found.append(p)
    return found


@pytest.mark.parametrize("platform", PLATFORMS)
def test_tiny_builds_inside_a_real_guest(
    platform: Platform, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    image = _prepared(platform, request)
    run = run_in_guest(
        image,
        TINY.source_dir,
        TINY.build_command,
        1,
        [("build/tiny", "tiny")],
        tmp_path / "out",
        env=build_env(TINY, cross=False, platform=platform),
        timeout=900,
        log_path=tmp_path / "console.log",
    )
    assert run.status == "ok", run.console_tail
    assert run.failure_class == "" and run.exit_code == 0
    assert run.boot_s > 0 and run.build_s > 0 and run.total_s >= run.boot_s + run.build_s
    assert run.accel in ("kvm", "tcg")
    expected_cpu = "host" if run.accel == "kvm" else cpu_string(platform.qemu_name)
    assert run.cpu == expected_cpu
    assert run.vcpus >= 1 and run.memory_mb >= 512
    with open(run.artifacts["tiny"], "rb") as f:
        assert ELFFile(f).header["e_machine"] == platform.elf_machine
    assert "archbench-guest: build-end rc=0" in (tmp_path / "console.log").read_text()
    assert not _qemu_processes_using(image.root_disk)


def test_a_guest_that_never_finishes_is_killed_at_the_timeout(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    image = _prepared(AMD64, request)
    started = time.monotonic()
    run = run_in_guest(
        image,
        TINY.source_dir,
        "sleep 600",
        1,
        [("build/tiny", "tiny")],
        tmp_path / "out",
        env=build_env(TINY, cross=False, platform=AMD64),
        timeout=20,
        log_path=tmp_path / "console.log",
    )
    elapsed = time.monotonic() - started
    assert run.status == "timeout" and run.failure_class == "timeout"
    assert run.exit_code == -1 and run.artifacts == {}
    assert run.console_tail.strip(), "the console tail is kept"
    assert elapsed < 20 + 30, "ended at the timeout (plus the group's grace period)"
    assert not _qemu_processes_using(image.root_disk)
    assert not any(
        (p.info["name"] or "").startswith("qemu-system")
        and any(str(tmp_path) in a for a in p.info["cmdline"] or [])
        for p in psutil.process_iter(["name", "cmdline"])
    )


def test_a_failing_build_is_a_compile_error(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    image = _prepared(AMD64, request)
    run = run_in_guest(
        image,
        TINY.source_dir,
        "$CC -o build/tiny does-not-exist.c",
        1,
        [("build/tiny", "tiny")],
        tmp_path / "out",
        env=build_env(TINY, cross=False, platform=AMD64),
        timeout=600,
    )
    assert run.status == "failed" and run.failure_class == "compile-error"
    assert run.exit_code != 0 and run.boot_s > 0
    assert "does-not-exist.c" in run.console_tail


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_prepared_guest_comes_from_the_cache(
    platform: Platform, request: pytest.FixtureRequest
) -> None:
    first = _prepared(platform, request)
    again = prepare_guest(platform, TINY.packages)
    assert again.prepare_s < 1.0
    assert (again.kernel, again.initrd, again.root_disk) == (
        first.kernel,
        first.initrd,
        first.root_disk,
    )
    assert again.kernel_version.endswith(platform.debian_arch)


@pytest.mark.engine
@pytest.mark.registry
def test_strategy_builds_packs_and_pushes_a_runnable_image(
    registry: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _prepared(ARM64, request)
    request.getfixturevalue("binfmt_arm64")
    settings = BuildSettings(registry, 1, "debian:bookworm", 900, host=AMD64)
    tag = f"{registry}/archbench/tiny:qemu-system-test-arm64"
    outcome = QemuSystem().build(TINY, [ARM64], settings, tag, tmp_path / "build.log")
    assert outcome.status == "ok", outcome.log_tail
    assert outcome.digest.startswith("sha256:")
    assert outcome.extra["cpu"] == "max,pauth-impdef=on"  # an arm64 guest on this amd64 host
    assert outcome.extra["cpu_variant"] == "max-pauth-impdef"
    assert outcome.extra["build_s"] > 0 and outcome.extra["pack_s"] > 0
    assert outcome.extra["compiler"].startswith("gcc")
    ref = f"{tag.rsplit(':', 1)[0]}@{outcome.digest}"
    done = docker.run_image(ref, ARM64.name, pull="always")
    assert done.ok, done.tail()
    assert TINY.expected_output(ARM64) in done.stdout
