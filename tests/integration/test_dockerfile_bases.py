"""A Dockerfile's bases and build inputs: a base the mirror lacks fails at once by name;
`setup --import` puts an OCI archive's every platform in the mirror, where an unmodified
FROM finds it; --secret reaches the build as buildx passes it."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from bench.tools import registry as reg
from tests.conftest import run_archbench as run

pytestmark = [pytest.mark.engine, pytest.mark.registry]


def test_missing_base_fails_at_once_with_its_name(archbench_cmd, registry, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    name = f"archbench-absent-{uuid.uuid4().hex[:8]}"
    (app / "Dockerfile").write_text(
        f"FROM {name}:1 AS deps\nRUN true\nFROM debian:bookworm\n"
        "COPY --from=deps /etc/hostname /x\n"
    )
    done = run(archbench_cmd, tmp_path, "--dockerfile", str(app / "Dockerfile"), timeout=120)
    assert done.returncode == 2
    assert f"does not hold {name}:1 (looked up as {registry}/library/{name}:1)" in done.stderr
    assert "archbench setup --import ARCHIVE" in done.stderr
    assert not (tmp_path / "results").exists()


def test_import_oci_archive_every_platform(archbench_cmd, registry, tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text(
        "FROM scratch\nARG TARGETARCH\nCOPY hello-${TARGETARCH} /hello\n"
    )
    for arch in ("amd64", "arm64"):
        (tmp_path / "img" / f"hello-{arch}").write_text(arch)
    archive = tmp_path / "img.tar"
    subprocess.run(
        [
            "docker",
            "buildx",
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--output",
            f"type=oci,dest={archive}",
            str(tmp_path / "img"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    name = f"archbenchtest/imp{uuid.uuid4().hex[:8]}:v1"
    done = subprocess.run(
        [*archbench_cmd, "setup", "--import", str(archive)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--import-name NAME:TAG" in done.stderr  # unnamed
    done = subprocess.run(
        [*archbench_cmd, "setup", "--import", str(archive), "--import-name", name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "(linux/amd64, linux/arm64)" in done.stderr
    index = reg.get_manifest(f"{registry}/{name}").body
    platforms = {
        m["platform"]["architecture"]
        for m in index["manifests"]
        if m.get("platform", {}).get("os") == "linux"
    }
    assert platforms == {"amd64", "arm64"}
    # An unmodified FROM of that name now resolves through the mirror, for both platforms.
    (tmp_path / "use").mkdir()
    (tmp_path / "use" / "Dockerfile").write_text(f"FROM {name}\n")
    built = subprocess.run(
        [
            "docker",
            "buildx",
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--output",
            "type=cacheonly",
            str(tmp_path / "use"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]


def test_not_an_archive_is_named(archbench_cmd, registry, tmp_path):
    bad = tmp_path / "x.tar"
    bad.write_text("not a tar")
    done = subprocess.run(
        [*archbench_cmd, "setup", "--import", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "not a readable tar archive" in done.stderr


def test_secret_passes_through_to_the_build(archbench_cmd, registry, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text(
        "FROM debian:bookworm\n"
        'RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" = s3cret '
        "&& echo secret-seen > /seen\n"
    )
    secret = tmp_path / "token.txt"
    secret.write_text("s3cret")
    done = run(
        archbench_cmd,
        tmp_path,
        "--dockerfile",
        str(app / "Dockerfile"),
        "--strategy",
        "native",
        "--platform",
        "amd64",
        "--secret",
        f"id=token,src={secret}",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope")
    done = run(
        archbench_cmd,
        tmp_path,
        "--dockerfile",
        str(app / "Dockerfile"),
        "--strategy",
        "native",
        "--platform",
        "amd64",
        "--secret",
        f"id=token,src={wrong}",
        timeout=600,
    )
    assert done.returncode == 1  # the RUN saw the other secret and failed
