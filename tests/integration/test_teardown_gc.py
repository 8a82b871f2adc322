"""gc against a real registry, and teardown's dry run on the real host (changes nothing)."""

import io
import json
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.engine.results import Record, RunStore
from bench.host import services
from bench.host import setup as provision
from bench.tools import registry as reg

pytestmark = [pytest.mark.engine, pytest.mark.registry]

GC_REGISTRY = "127.0.0.1:5055"


def _tiny_image(name: str, text: str, tmp_path) -> str:
    """Import a one-file image, push it to the gc test registry; return its digest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / f"{name}.tar"
    archive.write_bytes(buf.getvalue())
    ref = f"{GC_REGISTRY}/archbench/gctest:{name}"
    subprocess.run(["docker", "import", str(archive), ref], check=True, capture_output=True)
    subprocess.run(["docker", "push", ref], check=True, capture_output=True)
    subprocess.run(["docker", "image", "rm", ref], check=True, capture_output=True)
    return reg.get_manifest(ref).digest


def _exists(digest: str) -> bool:
    url = f"http://{GC_REGISTRY}/v2/archbench/gctest/manifests/{digest}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": reg.MANIFEST_TYPES})
    try:
        with urllib.request.urlopen(req, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


@pytest.fixture
def gc_registry(registry):
    """A second registry of archbench's own, with its own storage; gone afterwards."""
    provision.configure_registry(lambda _m: None, GC_REGISTRY)
    yield GC_REGISTRY
    name = services.registry_daemon_name(GC_REGISTRY)
    pid = services.started_daemons().get(name)
    if pid:
        services.stop_daemon(name, pid)
    services.config_path(GC_REGISTRY).unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(reg.storage_dir(GC_REGISTRY))], check=True)


def test_gc_removes_only_unreferenced_images(archbench_cmd, gc_registry, tmp_path):
    kept = _tiny_image("kept", "kept\n", tmp_path)
    dropped = _tiny_image("dropped", "dropped " * 4096, tmp_path)
    results = tmp_path / "results"
    store = RunStore(results)
    store.add(
        Record(
            kind="cell",
            run_id=store.run_id,
            scenario="gctest",
            size=1,
            strategy="cross",
            platform="linux/amd64",
            rep=1,
            status="ok",
            wall_s=1.0,
            started_at="2026-11-29T00:00:00+00:00",
            tag=f"{GC_REGISTRY}/archbench/gctest:kept",
            digest=kept,
        )
    )
    store.write_manifest({"scenarios": ["gctest"]})
    storage = reg.storage_dir(GC_REGISTRY)
    blobs_before = len(list((storage / "docker/registry/v2/blobs").glob("sha256/*/*")))

    args = ["gc", "--results", str(results), "--registry", GC_REGISTRY]
    dry = subprocess.run([*archbench_cmd, *args, "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "would remove 1 registry manifest" in dry.stderr and dropped in dry.stderr
    assert _exists(kept) and _exists(dropped)

    done = subprocess.run([*archbench_cmd, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _exists(kept)
    assert not _exists(dropped)
    blobs_after = len(list((storage / "docker/registry/v2/blobs").glob("sha256/*/*")))
    assert blobs_after < blobs_before  # the dropped image's layer and config were freed


def test_teardown_dry_run_names_setups_work_and_changes_nothing(archbench_cmd, registry):
    done = subprocess.run(
        [*archbench_cmd, "teardown", "--purge", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    # Each line says what would go, or what stays because a package installed since
    # (chromium, for the report test) needs it.
    assert lines and all(
        line.startswith(("teardown: would remove ", "teardown: keeping ")) for line in lines
    )
    text = done.stderr
    assert "daemon dockerd" in text and "daemon containerd" in text
    assert f"daemon {services.registry_daemon_name(registry)}" in text
    assert "/var/cache/archbench" in text
    record = json.loads(Path("/var/lib/archbench/host.json").read_text())
    for package in record["packages"]:
        assert package in text
    assert services.engine_answers() and reg.ping(registry)
