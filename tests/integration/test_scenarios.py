"""The shipped scenarios for real: a third-party project fetched from Debian's source
archive with its own tests run in each image, a packaging image built both emulated and
by unpacking, more target platforms (arm/v7, riscv64 from trixie), and what a bad
download or a bad scenario file gives."""

import shutil
from pathlib import Path

import pytest

from bench.engine.results import load_run, resolve_run
from bench.tools import qemu
from tests.conftest import DATA, ROOT, need
from tests.conftest import run_archbench as run

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]


def cells(tmp_path: Path) -> dict[tuple[str, str], object]:
    _, records = load_run(resolve_run(None, tmp_path / "results"))
    return {(r.strategy, r.platform): r for r in records if r.kind == "cell"}


def checks(record) -> dict[str, dict]:
    return {c["name"]: c for c in record.validation["checks"]}


def test_zlib_builds_from_debian_source_and_passes_its_own_tests(
    archbench_cmd, registry, binfmt_arm64, tmp_path
):
    done = run(
        archbench_cmd,
        tmp_path,
        str(ROOT / "scenarios" / "zlib"),
        "--strategy",
        "native,cross",
        "--platform",
        "amd64,arm64",
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    got = cells(tmp_path)
    for key, how in ((("native", "linux/amd64"), "natively"), (("cross", "linux/arm64"), "qemu")):
        record = got[key]
        assert record.status == "ok", record.log_tail
        test = checks(record)["test"]
        assert test["passed"] and not test["skipped"]
        assert "archbench zlib round trip\\nzlib tests passed" in test["detail"]
        assert how in test["detail"]
    assert "aarch64-linux-gnu-gcc" in got[("cross", "linux/arm64")].compiler.version


def test_packaging_image_emulated_and_unpacked(archbench_cmd, registry, binfmt_arm64, tmp_path):
    done = run(
        archbench_cmd,
        tmp_path,
        str(ROOT / "scenarios" / "pkgimage"),
        "--strategy",
        "qemu-user,cross,qemu-system",
        "--platform",
        "arm64",
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    got = cells(tmp_path)
    for strategy in ("qemu-user", "cross"):
        record = got[(strategy, "linux/arm64")]
        assert record.status == "ok", record.log_tail
        c = checks(record)
        assert c["test"]["passed"] and "UTF-8\\n[1,2,3]\\nbusybox ok" in c["test"]["detail"]
        elf = [x for x in record.validation["checks"] if x["name"] == "elf"]
        assert len(elf) == 2 and all("AArch64" in x["detail"] for x in elf)
    assert "dpkg -x" in got[("cross", "linux/arm64")].approximate
    assert got[("qemu-user", "linux/arm64")].approximate == ""
    vm = got[("qemu-system", "linux/arm64")]
    assert vm.status == "unavailable" and "image scenario" in vm.reason


def test_arm_v7_and_riscv64_build_and_validate(archbench_cmd, registry, tmp_path):
    for name in ("arm", "riscv64"):
        entry = qemu.read_binfmt(name)
        need(entry is not None and entry.enabled, f"qemu-{name} registered in binfmt_misc")
    # Its own name, so that its indexes do not replace the amd64+arm64 ones of `tiny`
    # that other tests validate.
    scenario = tmp_path / "tinyplat"
    shutil.copytree(DATA / "scenarios" / "tiny", scenario)
    toml = scenario / "scenario.toml"
    toml.write_text(toml.read_text().replace('name = "tiny"', 'name = "tinyplat"'))
    done = run(
        archbench_cmd,
        tmp_path,
        str(scenario),
        "--strategy",
        "cross,qemu-user,qemu-system",
        "--platform",
        "arm/v7,riscv64",
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    got = cells(tmp_path)
    expect = {"linux/arm/v7": ("ARM", "armv7l"), "linux/riscv64": ("RISC-V", "riscv64")}
    for platform, (machine, uname) in expect.items():
        for strategy in ("cross", "qemu-user"):
            record = got[(strategy, platform)]
            assert record.status == "ok", record.log_tail
            c = checks(record)
            assert machine in c["elf"]["detail"], c["elf"]["detail"]
            assert f"arch={uname} target={uname}" in c["smoke"]["detail"]
        vm = got[("qemu-system", platform)]
        assert vm.status == "unavailable" and "no guest recipe" in vm.reason


BAD_SOURCE = """
name = "fetchfail"
platforms = ["linux/amd64"]
[source]
url = "{url}"
sha256 = "{sha}"
[toolchain]
packages = ["gcc"]
[build]
command = "true"
[artifacts]
"x" = "/x"
[smoke]
command = ["/x"]
expect = ""
"""


@pytest.mark.parametrize("kind", ["unreachable", "checksum"])
def test_a_bad_download_stops_the_run_naming_the_url(archbench_cmd, tmp_path, kind):
    if kind == "unreachable":
        url, sha = "http://127.0.0.1:9/nothing-1.0.tar.gz", "0" * 64
    else:
        tarball = tmp_path / "thing-1.0.tar.gz"
        tarball.write_bytes(b"not what the scenario expects")
        url, sha = tarball.as_uri(), "1" * 64
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(BAD_SOURCE.format(url=url, sha=sha))
    done = run(archbench_cmd, tmp_path, str(scenario), "--strategy", "native", timeout=300)
    assert done.returncode == 2
    errors = [x for x in done.stderr.splitlines() if x.startswith("archbench: error")]
    assert len(errors) == 1 and url in errors[0], done.stderr
    assert done.stderr.strip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())
