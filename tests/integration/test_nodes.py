"""Build nodes, with a second Docker engine on this host as the node (an amd64 node).

The engine is started and stopped by the fixtures here only: its own socket, data-root,
exec-root, pidfile, containerd namespaces and bridge (a private /24), all removed again
however a test ends. It shows native amd64 cells built on the node and named as built
there, arm64 on it reported as emulation (qemu-user on the node), node-unreachable when
the node stops in the middle of a run, and an index joining platforms built on two
nodes. Both engines share this host's cores: nothing here says how fast a fleet is.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from bench.engine.results import Record, read_runs
from bench.host import teardown
from bench.host.nodes import NODES_FILE_ENV
from bench.tools import proc
from tests.conftest import DATA, need

RUN_ROOT = Path("/run/archbench-node-test")
DATA_ROOT = Path("/var/lib/archbench-node-test")
MAIN_SOCKET = "/var/run/docker.sock"


@dataclass
class SecondEngine:
    """A second dockerd on this host, as the fixtures started it."""

    ident: str
    pid: int
    socket: Path
    bridge: str
    subnet: str
    namespace: str
    run_dir: Path
    data_dir: Path

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after 30 s) and wait until it is gone."""
        with contextlib.suppress(psutil.NoSuchProcess):
            daemon = psutil.Process(self.pid)
            if daemon.name() != "dockerd":
                return
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except psutil.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)


def _free_subnet() -> str:
    """Return a private /24 no interface of this host uses."""
    used = proc.run(["ip", "-4", "-o", "addr", "show"], timeout=10).stdout
    routes = proc.run(["ip", "-4", "route", "show"], timeout=10).stdout
    taken = [
        ipaddress.ip_network(word, strict=False)
        for word in (used + " " + routes).split()
        if "/" in word and word[0].isdigit()
    ]
    for third in range(200, 256):
        net = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise RuntimeError("no free 10.213.x.0/24 on this host")


def _answers(socket: Path) -> bool:
    done = proc.run(["docker", "-H", f"unix://{socket}", "info", "--format", "{{.ID}}"], timeout=20)
    return done.ok and bool(done.stdout.strip())


def _drop_rules(bridge: str, subnet: str) -> None:
    """Delete the iptables rules that name the bridge or its subnet, one by one (the main
    engine's rules are never rewritten)."""
    table = ""
    for line in proc.run(["iptables-save"], timeout=30).stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and (bridge in line.split() or subnet in line):
            proc.run(["iptables", "-t", table, "-D", *shlex.split(line[3:])], timeout=30)


def _drop_namespace(namespace: str) -> None:
    """Remove what the engine left in containerd's namespace, then the namespace."""

    def ctr(*args: str) -> proc.Completed:
        return proc.run(["ctr", "-n", namespace, *args], timeout=120)

    for kind in ("containers", "images", "leases"):
        names = ctr(kind, "ls", "-q").stdout.split()
        if names:
            ctr(kind, "rm", *names)
    for _ in range(30):  # snapshots go child first: repeat until none is left
        rows = ctr("snapshots", "ls").stdout.splitlines()[1:]
        keys = [r.split()[0] for r in rows if r.strip()]
        if not keys:
            break
        for key in keys:
            ctr("snapshots", "rm", key)
    blobs = ctr("content", "ls", "-q").stdout.split()
    for start in range(0, len(blobs), 100):
        ctr("content", "rm", *blobs[start : start + 100])
    proc.run(["ctr", "namespaces", "rm", namespace], timeout=60)


@contextlib.contextmanager
def second_engine() -> Iterator[SecondEngine]:
    """Start a second dockerd beside the host's (HOST-NOTES' recipe), yield it, and stop
    and remove it, its bridge, rules, folders and containerd namespaces however the
    block ends."""
    need(shutil.which("dockerd") is not None, "dockerd")
    need(shutil.which("ctr") is not None, "ctr (containerd's client)")
    need(Path("/run/containerd/containerd.sock").exists(), "containerd running")
    ident = secrets.token_hex(3)
    run_dir, data_dir = RUN_ROOT / ident, DATA_ROOT / ident
    subnet = _free_subnet()
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    engine = SecondEngine(
        ident=ident,
        pid=0,
        socket=run_dir / "docker.sock",
        bridge=f"abnt{ident}",
        subnet=subnet,
        namespace=f"archbench-node-test-{ident}",
        run_dir=run_dir,
        data_dir=data_dir,
    )
    try:
        run_dir.mkdir(parents=True)
        data_dir.mkdir(parents=True)
        proc.run(["ip", "link", "add", engine.bridge, "type", "bridge"], timeout=10, check=True)
        proc.run(
            ["ip", "addr", "add", f"{gateway}/24", "dev", engine.bridge], timeout=10, check=True
        )
        proc.run(["ip", "link", "set", engine.bridge, "up"], timeout=10, check=True)
        engine.pid = proc.spawn_daemon(
            [
                "dockerd",
                "--host",
                engine.endpoint,
                "--data-root",
                str(data_dir / "data"),
                "--exec-root",
                str(run_dir / "exec"),
                "--pidfile",
                str(run_dir / "docker.pid"),
                "--containerd",
                "/run/containerd/containerd.sock",
                "--containerd-namespace",
                engine.namespace,
                "--containerd-plugins-namespace",
                engine.namespace + "-plugins",
                "--bridge",
                engine.bridge,
            ],
            run_dir / "dockerd.log",
        )
        deadline = time.monotonic() + 90
        while not _answers(engine.socket):
            if time.monotonic() > deadline or not psutil.pid_exists(engine.pid):
                log = (run_dir / "dockerd.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"the second engine did not start:\n{log}")
            time.sleep(1)
        yield engine
    finally:
        if engine.pid:
            engine.stop()
        for point in teardown.mounts_below(run_dir, Path("/proc/mounts").read_text()):
            proc.run(["umount", "-l", point], timeout=30)
        for point in teardown.mounts_below(data_dir, Path("/proc/mounts").read_text()):
            proc.run(["umount", "-l", point], timeout=30)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
        for root in (RUN_ROOT, DATA_ROOT):
            with contextlib.suppress(OSError):
                root.rmdir()  # only when no other test's engine is in it
        proc.run(["ip", "link", "delete", engine.bridge], timeout=10)
        _drop_rules(engine.bridge, subnet)
        # dockerd keeps build history in a namespace of its own, `<namespace>_history`.
        for ns in (engine.namespace, engine.namespace + "_history", engine.namespace + "-plugins"):
            _drop_namespace(ns)


@pytest.fixture(scope="module")
def node_engine(registry: str) -> Iterator[SecondEngine]:
    with second_engine() as engine:
        yield engine


@pytest.fixture
def nodes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """archbench's node list in tmp_path (the host's own is never touched), and every
    context the test's nodes created removed afterwards."""
    path = tmp_path / "nodes.json"
    monkeypatch.setenv(NODES_FILE_ENV, str(path))
    yield path
    with contextlib.suppress(OSError, ValueError):
        for name in json.loads(path.read_text()).get("nodes", {}):
            subprocess.run(["docker", "context", "rm", "--force", name], capture_output=True)


def archbench(*args: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout
    )


def tiny_copy(folder: Path, name: str) -> Path:
    """Copy the tiny scenario under its own name (its tags are then this test's own)."""
    shutil.copytree(DATA / "scenarios" / "tiny", folder)
    toml = folder / "scenario.toml"
    toml.write_text(toml.read_text().replace('name = "tiny"', f'name = "{name}"'))
    return toml


def run_args(scenario: Path, tmp_path: Path, *more: str) -> list[str]:
    return [
        "run",
        str(scenario),
        "--strategy",
        "native",
        "--platform",
        "linux/amd64,linux/arm64",
        "--no-combined",
        "--results",
        str(tmp_path / "results"),
        "--reports",
        str(tmp_path / "reports"),
        *more,
    ]


def records(tmp_path: Path) -> list[Record]:
    runs, warnings = read_runs(sorted((tmp_path / "results").iterdir()))
    assert not warnings
    return [r for run in runs for r in run.records]


def cell(found: list[Record], strategy: str, platform: str, node: str) -> list[Record]:
    return [
        r
        for r in found
        if r.kind == "cell"
        and (r.strategy, r.platform, r.node) == (strategy, platform, node)
        and not r.warmup
    ]


def test_native_amd64_on_the_node_and_arm64_there_is_emulation(
    node_engine: SecondEngine, nodes_file: Path, tmp_path: Path, binfmt_arm64: None
) -> None:
    node = f"abn-{node_engine.ident}"
    added = archbench("nodes", "add", node, node_engine.endpoint, "--platform", "amd64,arm64")
    assert added.returncode == 0, added.stderr
    assert "linux/amd64: native" in added.stderr
    assert f"linux/arm64: emulated (qemu-user on {node}, a x86_64 node)" in added.stderr
    listed = archbench("nodes", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["architecture"] == "x86_64" and entry["platform"] == "linux/amd64"
    assert entry["declared"] == {
        "linux/amd64": "native",
        "linux/arm64": f"emulated (qemu-user on {node}, a x86_64 node)",
    }

    scenario = tiny_copy(tmp_path / "scn", f"nodes-{node_engine.ident}")
    done = archbench(*run_args(scenario, tmp_path, "--reps", "1", "--nodes", node))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pushes to 127.0.0.1:5000 itself (a local node)" in done.stderr
    found = records(tmp_path)
    (amd64,) = cell(found, "native", "linux/amd64", node)
    assert amd64.status == "ok" and amd64.validation["passed"]
    # Named as built there by the build's own metadata, not by where it was sent.
    assert amd64.built_on.split("/")[0] == node
    assert amd64.tag.endswith(f":native-amd64-on-{node}")
    assert " cores, " in amd64.host_class and "GiB, Linux " in amd64.host_class
    (arm64_native,) = cell(found, "native", "linux/arm64", node)
    assert arm64_native.status == "unavailable"
    assert "emulation" in arm64_native.reason and "not native" in arm64_native.reason
    (arm64,) = cell(found, "qemu-user", "linux/arm64", node)
    assert arm64.status == "ok" and arm64.built_on.split("/")[0] == node
    assert not [
        r
        for r in found
        if r.strategy == "native" and r.platform == "linux/arm64" and r.status == "ok"
    ]

    removed = archbench("nodes", "rm", node)
    assert removed.returncode == 0
    assert (
        subprocess.run(["docker", "context", "inspect", node], capture_output=True).returncode != 0
    )


def test_two_nodes_build_one_index_each_platform_on_its_node(
    node_engine: SecondEngine, nodes_file: Path, tmp_path: Path, binfmt_arm64: None
) -> None:
    need(Path(MAIN_SOCKET).exists(), f"the host's engine at {MAIN_SOCKET}")
    near, main = f"abn-{node_engine.ident}", f"abm-{node_engine.ident}"
    assert (
        archbench("nodes", "add", near, node_engine.endpoint, "--platform", "amd64").returncode == 0
    )
    assert (
        archbench("nodes", "add", main, f"unix://{MAIN_SOCKET}", "--platform", "arm64").returncode
        == 0
    )
    scenario = tiny_copy(tmp_path / "scn", f"nodes2-{node_engine.ident}")
    done = archbench(*run_args(scenario, tmp_path, "--reps", "2", "--nodes", f"{near},{main}"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "spreading over 2 queues at once" in done.stderr
    found = records(tmp_path)
    amd64 = cell(found, "native", "linux/amd64", near)
    arm64 = cell(found, "qemu-user", "linux/arm64", main)
    assert len(amd64) == 2 and len(arm64) == 2  # repetitions stay on their node
    assert {r.built_on.split("/")[0] for r in amd64} == {near}
    assert {r.built_on.split("/")[0] for r in arm64} == {main}
    (fleet,) = [r for r in found if r.kind == "merge" and r.strategy == "nodes"]
    assert fleet.status == "ok" and fleet.validation["passed"]
    assert set(fleet.platform_digests) == {"linux/amd64", "linux/arm64"}
    assert fleet.extra["built_on"] == {
        "linux/amd64": f"native on {near}",
        "linux/arm64": f"qemu-user on {main}",
    }
    # The same images as the strategies' own indexes joined: each node's last repetition.
    merged = {r.strategy: r for r in found if r.kind == "merge" and r.strategy != "nodes"}
    assert fleet.platform_digests["linux/amd64"] == merged["native"].platform_digests["linux/amd64"]
    assert (
        fleet.platform_digests["linux/arm64"] == merged["qemu-user"].platform_digests["linux/arm64"]
    )


def test_a_node_pushing_by_oci_archive_gets_its_image_pushed_from_this_host(
    node_engine: SecondEngine, nodes_file: Path, tmp_path: Path
) -> None:
    node = f"abo-{node_engine.ident}"
    added = archbench(
        "nodes", "add", node, node_engine.endpoint, "--platform", "amd64", "--push", "archive"
    )
    assert added.returncode == 0, added.stderr
    scenario = tiny_copy(tmp_path / "scn", f"nodesa-{node_engine.ident}")
    args = run_args(scenario, tmp_path, "--reps", "1", "--nodes", node)
    args[args.index("linux/amd64,linux/arm64")] = "linux/amd64"
    done = archbench(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exports an OCI archive, pushed to 127.0.0.1:5000 from this host" in done.stderr
    (amd64,) = cell(records(tmp_path), "native", "linux/amd64", node)
    assert amd64.status == "ok" and amd64.validation["passed"]
    assert amd64.built_on.split("/")[0] == node
    # Validation read the image back from the registry by the digest the archive held.
    assert amd64.digest.startswith("sha256:")


def test_a_node_stopped_during_a_run_fails_its_cells_as_node_unreachable(
    registry: str, nodes_file: Path, tmp_path: Path
) -> None:
    with second_engine() as engine:
        node = f"abu-{engine.ident}"
        assert (
            archbench("nodes", "add", node, engine.endpoint, "--platform", "amd64").returncode == 0
        )
        scenario = tiny_copy(tmp_path / "scn", f"nodesu-{engine.ident}")
        args = run_args(scenario, tmp_path, "--reps", "4", "--nodes", node)
        args[args.index("linux/amd64,linux/arm64")] = "linux/amd64"
        running = subprocess.Popen(
            [sys.executable, "-m", "bench", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 1200
            cells: list[Path] = []
            while not cells and running.poll() is None and time.monotonic() < deadline:
                time.sleep(1)
                cells = list((tmp_path / "results").glob("*/records/*-cell-*.json"))
            assert cells, "no cell finished on the node"
            engine.stop()
            output, _ = running.communicate(timeout=600)
        finally:
            if running.poll() is None:
                running.kill()
    assert running.returncode == 1, output[-3000:]
    found = cell(records(tmp_path), "native", "linux/amd64", node)
    assert found[0].status == "ok"
    unreachable = [r for r in found if r.failure_class == "node-unreachable"]
    assert unreachable and all(r.status == "failed" for r in unreachable)
    assert all(
        r.failure_class == "node-unreachable" for r in found[len(found) - len(unreachable) :]
    )
    assert "node-unreachable" in output
