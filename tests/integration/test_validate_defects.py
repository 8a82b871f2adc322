"""`archbench validate` against images planted with each defect a multi-arch image can
carry, built and pushed here to the real registry; the real images pass."""

import json
import shutil
import subprocess

import pytest

from bench.tools import docker
from bench.tools import registry as reg
from bench.validate.image import image_platforms
from tests.conftest import DATA

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.binfmt]

EXPECT = "arch={arch} target={arch} selftest=ok"
BOTH = ["--platform", "linux/amd64", "--platform", "linux/arm64"]
ART = ["--artifact", "/usr/local/bin/tiny"]


@pytest.fixture(scope="module")
def good(archbench_cmd, registry, binfmt_arm64, tmp_path_factory):
    """The cross strategy's real tiny image (built by a real run)."""
    out = tmp_path_factory.mktemp("good")
    done = subprocess.run(
        [
            *archbench_cmd,
            "run",
            str(DATA / "scenarios" / "tiny"),
            "--strategy",
            "cross",
            "--reps",
            "1",
            "--no-combined",
            "--results",
            str(out / "r"),
            "--reports",
            str(out / "p"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ref = f"{registry}/archbench/tiny:cross"
    return ref, image_platforms(reg.get_manifest(ref).body)


def validate(archbench_cmd, *args):
    done = subprocess.run(
        [*archbench_cmd, "validate", *args, "--json"], capture_output=True, text=True, timeout=600
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def failed(report, name, platform=""):
    return [
        c
        for c in report["images"][0]["checks"]
        if not c["passed"] and c["name"] == name and c["platform"] == platform
    ]


def test_real_images_pass(archbench_cmd, good, registry):
    ref, _ = good
    code, report, err = validate(
        archbench_cmd,
        ref,
        f"{registry}/archbench/tiny:qemu-user",
        *BOTH,
        *ART,
        "--expect-output",
        EXPECT,
    )
    assert code == 0, err
    assert report["passed"]
    names = {(c["name"], c["platform"]) for c in report["images"][0]["checks"]}
    for p in ("linux/amd64", "linux/arm64"):
        assert {("config", p), ("elf", p), ("smoke", p)} <= names
    assert len(report["comparison"]) == 2


def test_arm64_entry_with_an_x86_64_binary(archbench_cmd, good, registry, tmp_path):
    _, digests = good
    shutil.copy(DATA / "scenarios" / "tiny" / "src" / "tiny.c", tmp_path)
    subprocess.run(
        [
            "gcc",
            "-static",
            "-O2",
            "-DSIZE=1",
            "-o",
            str(tmp_path / "tiny"),
            str(tmp_path / "tiny.c"),
        ],
        check=True,
        timeout=120,
    )
    (tmp_path / "Dockerfile").write_text(
        'FROM scratch\nCOPY tiny /usr/local/bin/tiny\nCMD ["/usr/local/bin/tiny"]\n'
    )
    bad_arm = f"{registry}/archbench/tiny:defect-arm64-is-x86"
    result = docker.build(tmp_path, platforms=["linux/arm64"], tag=bad_arm, timeout=600)
    assert result.completed.ok, result.completed.tail()
    ref = f"{registry}/archbench/tiny:defect-elf"
    docker.imagetools_create(ref, [f"{registry}/archbench/tiny@{digests['linux/amd64']}", bad_arm])
    code, report, err = validate(archbench_cmd, ref, *BOTH, *ART, "--expect-output", EXPECT)
    assert code == 1
    elf = failed(report, "elf", "linux/arm64")
    assert elf and "machine is x86-64, expected AArch64" in elf[0]["detail"]
    assert "static" in elf[0]["detail"]
    assert not failed(report, "elf", "linux/amd64")
    assert "FAIL" in err and "linux/arm64" in err


def test_missing_platform(archbench_cmd, good, registry):
    _, digests = good
    ref = f"{registry}/archbench/tiny:defect-missing"
    docker.imagetools_create(ref, [f"{registry}/archbench/tiny@{digests['linux/amd64']}"])
    code, report, _ = validate(archbench_cmd, ref, *BOTH)
    assert code == 1
    check = failed(report, "platforms")
    assert check and "missing linux/arm64" in check[0]["detail"]


def test_config_disagrees_with_its_index_entry(archbench_cmd, good, registry):
    _, digests = good
    amd64 = reg.get_manifest(f"{registry}/archbench/tiny@{digests['linux/amd64']}")
    entry = {"mediaType": amd64.media_type, "digest": amd64.digest, "size": len(amd64.raw)}
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry | {"platform": {"os": "linux", "architecture": "amd64"}},
            entry | {"platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }
    ref = f"{registry}/archbench/tiny:defect-config"
    reg.put_manifest(ref, json.dumps(index).encode(), index["mediaType"])
    code, report, _ = validate(archbench_cmd, ref, *BOTH)
    assert code == 1
    check = failed(report, "config", "linux/arm64")
    assert (
        check
        and "index entry says linux/arm64, image config says linux/amd64" in check[0]["detail"]
    )
    assert not failed(report, "config", "linux/amd64")


def test_single_manifest_where_two_were_expected(archbench_cmd, good, registry):
    _, digests = good
    ref = f"{registry}/archbench/tiny@{digests['linux/amd64']}"
    code, report, _ = validate(archbench_cmd, ref, *BOTH)
    assert code == 1
    check = failed(report, "index")
    assert check and "single-platform manifest (linux/amd64)" in check[0]["detail"]
    assert "missing linux/arm64" in failed(report, "platforms")[0]["detail"]
    code, report, _ = validate(archbench_cmd, ref, "--platform", "linux/amd64")
    assert code == 0, report


def test_smoke_run_prints_the_wrong_text(archbench_cmd, good, registry, tmp_path):
    ref_good, _ = good
    (tmp_path / "Dockerfile").write_text(f'FROM {ref_good}\nCMD ["/bin/echo", "hello"]\n')
    ref = f"{registry}/archbench/tiny:defect-smoke"
    result = docker.build(tmp_path, platforms=["linux/amd64", "linux/arm64"], tag=ref, timeout=600)
    assert result.completed.ok, result.completed.tail()
    code, report, _ = validate(archbench_cmd, ref, *BOTH, *ART, "--expect-output", EXPECT)
    assert code == 1
    for p, arch in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        check = failed(report, "smoke", p)
        assert check and "printed 'hello'" in check[0]["detail"]
        assert f"arch={arch}" in check[0]["detail"]
    assert not failed(report, "elf", "linux/arm64")


def test_unreachable_registry_is_exit_2(archbench_cmd):
    code, _, err = validate(archbench_cmd, "127.0.0.1:1/none/x:y", "--platform", "linux/amd64")
    assert code == 2 and "does not answer" in err


def test_bad_artifact_path_is_exit_2(archbench_cmd, registry):
    code, _, err = validate(
        archbench_cmd, f"{registry}/x:y", "--platform", "amd64", "--artifact", "usr/bin/x"
    )
    assert code == 2 and "absolute path" in err
