"""Teardown undoes only what setup recorded; gc frees only what no stored run refers to."""

import json
from pathlib import Path

import pytest

from bench.engine.results import Record
from bench.errors import HostNotReady
from bench.host import gc, services, teardown
from bench.host import record as hostrecord
from bench.host import setup as provision
from bench.tools import apt, docker, qemu, registry


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A host whose archbench state lives under tmp_path; nothing of the real host moves."""
    state = tmp_path / "state"
    monkeypatch.setattr(hostrecord, "RECORD", state / "host.json")
    monkeypatch.setattr(hostrecord, "DAEMON_JSON_BEFORE", state / "daemon.json.before")
    monkeypatch.setattr(registry, "STORAGE_DIR", tmp_path / "lib" / "registry")
    own = (tmp_path / "cache", tmp_path / "etc-archbench", tmp_path / "log")
    monkeypatch.setattr(teardown, "OWN_DIRS", own)
    daemon_json = tmp_path / "etc-docker" / "daemon.json"
    monkeypatch.setattr(teardown, "DAEMON_JSON", daemon_json)
    monkeypatch.setattr(services, "started_daemons", lambda: {})
    handlers = {"qemu-aarch64", "qemu-arm", "python3.11"}
    monkeypatch.setattr(qemu, "binfmt_names", lambda root=None: set(handlers))
    removed_handlers: list[str] = []
    monkeypatch.setattr(
        qemu, "unregister_binfmt", lambda name, root=None: removed_handlers.append(name)
    )
    monkeypatch.setattr(
        apt, "installed_packages", lambda: {"mmdebstrap:all", "arch-test:all", "vim:amd64"}
    )
    purged: list[list[str]] = []
    monkeypatch.setattr(apt, "purge", lambda pkgs, log_path=None: purged.append(list(pkgs)))
    monkeypatch.setattr(apt, "simulate_purge", lambda pkgs: [p.split(":")[0] for p in pkgs])
    monkeypatch.setattr(apt, "installed_dependencies", lambda package: set())
    for d in own:
        d.mkdir(parents=True)
    return {
        "tmp": tmp_path,
        "own": own,
        "daemon_json": daemon_json,
        "removed_handlers": removed_handlers,
        "purged": purged,
    }


def test_host_record_merges_and_survives_damage(host):
    hostrecord.add_packages(["b:all", "a:amd64"])
    hostrecord.add_packages(["a:amd64", "c:all"])
    hostrecord.add_binfmt(["qemu-aarch64"])
    assert hostrecord.load().packages == ["a:amd64", "b:all", "c:all"]
    assert hostrecord.load().binfmt == ["qemu-aarch64"]
    hostrecord.RECORD.write_text("{truncated")
    assert hostrecord.load() == hostrecord.HostRecord()


def test_dry_run_says_everything_and_changes_nothing(host):
    hostrecord.add_packages(["mmdebstrap:all", "arch-test:all"])
    hostrecord.add_binfmt(["qemu-aarch64"])
    host["daemon_json"].parent.mkdir()
    host["daemon_json"].write_text("{}")
    hostrecord.add_files([host["daemon_json"]])
    said: list[str] = []
    actions = teardown.teardown(purge=True, dry_run=True, say=said.append)
    text = "\n".join(said)
    assert "binfmt_misc handler qemu-aarch64" in text
    assert "qemu-arm" not in text  # the host had it before setup: not setup's to remove
    assert "arch-test:all, mmdebstrap:all" in text and "vim" not in text
    assert all(line.startswith("would remove ") for line in said)
    assert len(actions) == len(said)
    assert host["daemon_json"].exists() and all(d.exists() for d in host["own"])
    assert host["removed_handlers"] == [] and host["purged"] == []


def test_teardown_removes_only_what_setup_recorded(host):
    hostrecord.add_packages(["mmdebstrap:all", "arch-test:all", "gone:all"])
    hostrecord.add_binfmt(["qemu-aarch64"])
    keep = host["tmp"] / "etc-docker" / "users-own.json"
    keep.parent.mkdir()
    keep.write_text("{}")
    host["daemon_json"].write_text('{"features": {}}')
    hostrecord.DAEMON_JSON_BEFORE.write_text('{"log-level": "warn"}')
    teardown.teardown(purge=False, dry_run=False, say=lambda _m: None)
    assert not any(d.exists() for d in host["own"])
    assert host["removed_handlers"] == ["qemu-aarch64"]
    assert json.loads(host["daemon_json"].read_text()) == {"log-level": "warn"}
    assert keep.exists()
    assert host["purged"] == []  # packages go only with --purge
    assert hostrecord.load().packages  # and the record of them stays for a later --purge
    teardown.teardown(purge=True, dry_run=False, say=lambda _m: None)
    # Exactly the recorded packages that are still installed: no autoremove, no others.
    assert host["purged"] == [["arch-test:all", "mmdebstrap:all"]]
    assert not hostrecord.RECORD.parent.exists()


def test_purge_keeps_what_a_package_installed_since_needs(host, monkeypatch):
    hostrecord.add_packages(["mmdebstrap:all", "arch-test:all"])

    simulated: list[list[str]] = []

    def simulate(pkgs):
        # users-tool, installed after setup, depends on mmdebstrap.
        simulated.append(list(pkgs))
        return [p.split(":")[0] for p in pkgs] + (
            ["users-tool"] if "mmdebstrap:all" in pkgs else []
        )

    monkeypatch.setattr(apt, "simulate_purge", simulate)
    monkeypatch.setattr(
        apt,
        "installed_dependencies",
        lambda package: {"users-tool", "mmdebstrap", "libc6"} if package == "users-tool" else set(),
    )
    said: list[str] = []
    teardown.teardown(purge=True, dry_run=False, say=said.append)
    assert host["purged"] == [["arch-test:all"]]
    assert "keeping mmdebstrap:all: users-tool, installed since, needs it" in said
    # Only the candidate users-tool needs is simulated alone, not every package of setup's.
    assert ["arch-test:all"] not in simulated[:-1] and ["mmdebstrap:all"] in simulated
    assert hostrecord.RECORD.exists()  # kept for a later --purge


def test_purge_refuses_when_apt_would_still_remove_more(host, monkeypatch):
    hostrecord.add_packages(["mmdebstrap:all", "arch-test:all"])
    # Each alone removes nothing else, the two together do: refuse, remove nothing.
    monkeypatch.setattr(
        apt,
        "simulate_purge",
        lambda pkgs: [p.split(":")[0] for p in pkgs] + (["users-tool"] if len(pkgs) > 1 else []),
    )
    with pytest.raises(HostNotReady, match="users-tool"):
        teardown.teardown(purge=True, dry_run=False, say=lambda _m: None)
    assert host["purged"] == []


def test_setup_records_dpkg_difference_even_when_install_fails(host, monkeypatch):
    states = iter([{"old:all"}, {"old:all", "new1:all", "new2:amd64"}])
    monkeypatch.setattr(apt, "installed_packages", lambda: next(states))
    monkeypatch.setattr(provision, "_engine_suitable", lambda: (True, ""))
    monkeypatch.setattr(apt, "installed_version", lambda p: "" if p == "arch-test" else "1")
    monkeypatch.setattr(apt, "update", lambda log_path=None: None)

    def failing_install(pkgs, log_path=None):
        raise RuntimeError("apt stopped half-way")

    monkeypatch.setattr(apt, "install", failing_install)
    monkeypatch.setattr(provision.shutil, "which", lambda prog: f"/usr/bin/{prog}")
    with pytest.raises(RuntimeError):
        provision.ensure_packages(lambda _m: None, host["tmp"] / "log.txt")
    assert hostrecord.load().packages == ["new1:all", "new2:amd64"]


def test_arch_test_is_a_host_package():
    # mmdebstrap needs it for any foreign architecture and only recommends it.
    assert "arch-test" in provision.HOST_PACKAGES


def test_a_missing_program_brings_its_package_back(monkeypatch):
    monkeypatch.setattr(apt, "installed_version", lambda p: "1.0")
    monkeypatch.setattr(
        provision.shutil, "which", lambda prog: None if prog == "debugfs" else f"/usr/bin/{prog}"
    )
    assert provision.missing_host_packages() == ["e2fsprogs"]


def _manifest_store(storage: Path, repo: str, digests: list[str]) -> None:
    base = storage / "docker/registry/v2/repositories" / repo / "_manifests/revisions/sha256"
    for d in digests:
        (base / d.removeprefix("sha256:")).mkdir(parents=True)
        (base / d.removeprefix("sha256:") / "link").write_text(d)


def test_gc_keeps_what_runs_refer_to_and_base_images(tmp_path, monkeypatch):
    storage = tmp_path / "registry"
    _manifest_store(storage, "archbench/tiny", ["sha256:aa", "sha256:bb", "sha256:cc", "sha256:dd"])
    _manifest_store(storage, "archbench/debian", ["sha256:ee"])
    _manifest_store(storage, "library/debian", ["sha256:ff"])
    assert registry.repositories(storage) == [
        "archbench/debian",
        "archbench/tiny",
        "library/debian",
    ]
    records = [
        Record(
            kind="cell",
            run_id="r",
            size=1,
            rep=1,
            status="ok",
            wall_s=1.0,
            started_at="2026-11-29T00:00:00+00:00",
            scenario="tiny",
            strategy="cross",
            platform="linux/arm64",
            digest="sha256:aa",
            platform_digests={"linux/arm64": "sha256:bb"},
            cache="warm",
        ),
    ]
    results = tmp_path / "results"
    monkeypatch.setattr(gc, "list_runs", lambda root: [results / "r"])
    monkeypatch.setattr(gc, "load_run", lambda path: ({}, records))
    # The index aa lists cc as one of its manifests: kept with it.
    monkeypatch.setattr(
        gc, "_children", lambda address, repo, d: {"sha256:cc"} if d == "sha256:aa" else set()
    )
    monkeypatch.setattr(
        docker,
        "cache_mounts",
        lambda prefix: {
            "archbench-tiny-cross-s1-arm64": ["r1"],
            "archbench-tiny-cross-s2-arm64": ["r2"],
        },
    )
    found = gc.collect(results, "127.0.0.1:5000", storage)
    assert found.manifests == [("archbench/tiny", "sha256:dd")]
    assert found.kept_manifests == 3
    assert found.cache_mounts == ["archbench-tiny-cross-s2-arm64"]


def test_cache_mount_ids_parse_buildx_du(monkeypatch):
    text = (
        "ID:\t\tycl8\nType:\t\tregular\n\n"
        "ID:\t\tvabb\nMutable:\ttrue\n"
        "Description:\tcached mount /cache from exec /bin/sh -c make with id "
        '"/archbench-tiny-cross-s1-arm64"\n\n'
        "ID:\t\tzz\n"
        'Description:\tcached mount /x from exec sh with id "/someone-else"\n'
    )

    class Done:
        stdout = text
        ok = True

    monkeypatch.setattr(docker.proc, "run", lambda *a, **k: Done())
    assert docker.cache_mounts("archbench-") == {"archbench-tiny-cross-s1-arm64": ["vabb"]}


def test_each_registry_address_has_its_own_storage():
    assert registry.storage_dir(registry.DEFAULT_REGISTRY) == registry.STORAGE_DIR
    other = registry.storage_dir("127.0.0.1:5055")
    assert other != registry.STORAGE_DIR and other.parent == registry.STORAGE_DIR.parent


SAVED = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -s 10.9.9.9/32 -j DROP
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -o eth0 -j MASQUERADE
COMMIT
"""


def test_engine_rules_are_told_from_the_hosts_own():
    from bench.tools import net

    kept = net.without_engine_rules(SAVED)
    assert "DOCKER" not in kept and "docker0" not in kept
    assert "-A INPUT -s 10.9.9.9/32 -j DROP" in kept  # the host's own rule stays
    assert "-A POSTROUTING -o eth0 -j MASQUERADE" in kept
    assert net.forward_policy(SAVED) == "DROP"
    assert net.forward_policy(net.with_forward_policy(kept, "ACCEPT")) == "ACCEPT"
    assert kept.count("COMMIT") == 2


def test_mounts_below_deepest_first():
    mounts = (
        "overlay /var/lib/docker/rootfs/overlayfs/abc overlay rw 0 0\n"
        "tmpfs /var/lib/docker tmpfs rw 0 0\n"
        "nsfs /run/docker/netns/x nsfs rw 0 0\n"
        "tmpfs /var/lib/dockerx tmpfs rw 0 0\n"
    )
    assert teardown.mounts_below(Path("/var/lib/docker"), mounts) == [
        "/var/lib/docker/rootfs/overlayfs/abc",
        "/var/lib/docker",
    ]


def test_a_pid_file_naming_another_process_is_never_signalled(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(services, "PID_DIR", tmp_path)
    (tmp_path / "dockerd.pid").write_text("1\n")  # init, not a dockerd
    (tmp_path / "containerd.pid").write_text(f"{os.getpid()}\n")  # this python
    assert "dockerd" not in services.started_daemons() or services.started_daemons()[
        "dockerd"
    ] not in (1, os.getpid())
    killed: list[int] = []
    monkeypatch.setattr(services.os, "kill", lambda pid, sig: killed.append(pid))
    services.stop_daemon("dockerd", 1)
    services.stop_daemon("containerd", os.getpid())
    assert killed == []
    assert not (tmp_path / "dockerd.pid").exists()


@pytest.mark.parametrize(
    ("bridge", "forward_now", "expected"),
    [(True, "0", True), (False, "1", True), (False, "0", False)],
)
def test_engine_network_goes_even_when_the_engine_was_killed_from_outside(
    host, monkeypatch, bridge, forward_now, expected
):
    # No live dockerd (killed by something else), but its bridge or forwarding outlive it.
    hostrecord.add_packages(["docker.io:amd64"])
    hostrecord.keep_network_before({"ip_forward": "0", "forward_policy": "ACCEPT"})
    monkeypatch.setattr(teardown.net, "bridge_exists", lambda name="docker0": bridge)
    monkeypatch.setattr(teardown.net, "ip_forward", lambda: forward_now)
    whats = [a.what for a in teardown.plan(purge=False)]
    assert any(w.startswith("the engine's network") for w in whats) is expected


def test_installed_dependencies_read_apt_cache_depends():
    text = """chromium
  Depends: libasound2
    libasound2t64
 |Depends: libepoxy0
  Depends: <debconf-2.0>
    debconf
  PreDepends: libc6
libasound2t64
  Depends: libc6
"""
    assert apt.parse_depends(text) == {
        "chromium",
        "libasound2",
        "libasound2t64",
        "libepoxy0",
        "debconf",
        "libc6",
    }
