"""`archbench teardown`: undo what `archbench setup` did on this host, and only that."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import HostNotReady
from bench.host import nodes as hostnodes
from bench.host import record as hostrecord
from bench.host import services
from bench.host.setup import BUILDER_NAME, DAEMON_JSON
from bench.paths import CACHE_DIR
from bench.tools import apt, contexts, docker, net, proc, qemu, registry

Say = Callable[[str], None]

# What setup creates that belongs to archbench alone, whatever the host had before
# (besides every registry's storage, one folder per address).
OWN_DIRS = (
    CACHE_DIR,
    registry.CONFIG_PATH.parent,
    services.LOG_DIR,
)
# Stopped last to first: the registry and the engine before the containerd under it.
STOP_ORDER = ("registry", "dockerd", "containerd")


@dataclass(frozen=True)
class Action:
    """One thing teardown removes: what it is, and how."""

    what: str
    do: Callable[[], None]
    keep: bool = False  # only said: what teardown leaves, and why


def _stop_rank(name: str) -> int:
    for rank, prefix in enumerate(STOP_ORDER):
        if name.startswith(prefix):
            return rank
    return len(STOP_ORDER)


def _remove_tree(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path, ignore_errors=True)


def _remove_file(path: Path) -> Callable[[], None]:
    return lambda: path.unlink(missing_ok=True)


def _restore_daemon_json() -> None:
    shutil.copyfile(hostrecord.DAEMON_JSON_BEFORE, DAEMON_JSON)
    hostrecord.DAEMON_JSON_BEFORE.unlink()


def _remove_engine_network(before: dict[str, str]) -> None:
    if net.bridge_exists():
        net.delete_bridge()
    net.remove_engine_rules(before.get("forward_policy", ""))
    if before.get("ip_forward") in ("0", "1"):
        net.set_ip_forward(before["ip_forward"])


def engine_network_left(before: dict[str, str]) -> bool:
    """Return whether the engine's network outlives it: its bridge, or forwarding
    switched on that the host had off before setup."""
    forward_before = before.get("ip_forward", "")
    return net.bridge_exists() or (
        forward_before in ("0", "1") and net.ip_forward() not in ("", forward_before)
    )


def _unmount_below(path: Path) -> None:
    """Lazily unmount whatever a stopped engine left mounted below `path`."""
    for mount in mounts_below(path, Path("/proc/mounts").read_text()):
        proc.run(["umount", "-l", mount], timeout=30)


def mounts_below(path: Path, mounts: str) -> list[str]:
    """Return the mount points at or below `path` in /proc/mounts text, deepest first."""
    found = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) > 1:
            point = fields[1].replace("\\040", " ")
            if point == str(path) or point.startswith(str(path).rstrip("/") + "/"):
                found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _remove_state_dir(path: Path) -> Callable[[], None]:
    def remove() -> None:
        _unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)

    return remove


def _nothing() -> None:
    """A line of the plan that is only said."""


def _remove_builder() -> None:
    proc.run([docker.DOCKER, "buildx", "rm", "--force", BUILDER_NAME], timeout=120)


@dataclass(frozen=True)
class PurgePlan:
    """The packages setup installed that teardown purges, and those it keeps because a
    package installed since depends on them (with that package's name)."""

    purge: tuple[str, ...]
    kept: tuple[tuple[str, str], ...] = ()


def _outside(removed: list[str], mine: set[str]) -> list[str]:
    return sorted(p for p in removed if p not in mine and p.split(":")[0] not in mine)


def purge_plan(packages: list[str]) -> PurgePlan:
    """Return which of `packages` (setup's, name:arch) to purge, asking apt's simulation.

    A package that something installed after setup depends on is kept, never purged
    with its dependent: teardown removes nothing setup did not install. Raises
    HostNotReady when apt's simulation of the final set would still remove another.
    """
    installed = apt.installed_packages()
    still = sorted(p for p in packages if p in installed)
    if not still:
        return PurgePlan(())
    mine = {p.split(":")[0] for p in still} | set(still)
    kept: list[tuple[str, str]] = []
    dependents = _outside(apt.simulate_purge(still), mine)
    if dependents:
        # Which of setup's packages do the newer ones need? Their installed dependencies
        # name the candidates; one simulation per candidate confirms it (not one per
        # package setup installed: dozens of seconds each on a provisioned host).
        needed: set[str] = set()
        for dependent in dependents:
            needed |= apt.installed_dependencies(dependent.split(":")[0])
        for package in still:
            if package.split(":")[0] not in needed:
                continue
            others = _outside(apt.simulate_purge([package]), mine)
            if others:
                kept.append((package, others[0]))
    purge = [p for p in still if p not in {k for k, _ in kept}]
    if purge:
        others = _outside(apt.simulate_purge(purge), mine)
        if others:
            raise HostNotReady(
                "purging the packages setup installed would also remove "
                + ", ".join(others)
                + ", installed since; remove those first or tear down without --purge"
            )
    return PurgePlan(tuple(purge), tuple(kept))


def node_actions(nodes_file: Path | None = None) -> list[Action]:
    """Return the actions that remove what `archbench nodes add` and builder creation
    made: the buildx builders and docker contexts archbench created (contexts it only
    adopted stay), then its record of them. Reads only; needs no engine (contexts and
    builders are the client's)."""
    book = hostnodes.load(nodes_file)
    path = nodes_file or hostnodes.nodes_file()
    actions: list[Action] = []
    for name in book.builders:
        actions.append(
            Action(
                f"buildx builder {name} (created by archbench)",
                lambda name=name: _remove_named_builder(name),  # type: ignore[misc]
            )
        )
    for node in book.nodes.values():
        if node.created_context and contexts.inspect(node.name) is not None:
            actions.append(
                Action(
                    f"docker context {node.name} ({node.endpoint}; added by archbench nodes add)",
                    lambda name=node.name: contexts.remove(name),  # type: ignore[misc]
                )
            )
        elif not node.created_context:
            actions.append(
                Action(f"docker context {node.name}: it existed before archbench", _nothing, True)
            )
    if path.exists():
        actions.append(Action(f"archbench's node list {path}", _remove_file(path)))
    return actions


def _remove_named_builder(name: str) -> None:
    proc.run([docker.DOCKER, "buildx", "rm", "--force", name], timeout=120)


def plan(purge: bool) -> list[Action]:
    """Return what teardown would remove on this host, in order. Reads only."""
    record = hostrecord.load()
    # Nodes and builders first: they are the client's, and need nothing that stops below.
    actions: list[Action] = node_actions()
    daemons = services.started_daemons()
    engine_up = "dockerd" in daemons and services.engine_answers()
    if engine_up and proc.run([docker.DOCKER, "buildx", "inspect", BUILDER_NAME], timeout=30).ok:
        actions.append(Action(f"buildx builder {BUILDER_NAME}", _remove_builder))
    for name, pid in sorted(daemons.items(), key=lambda item: _stop_rank(item[0])):
        actions.append(
            Action(
                f"daemon {name} (pid {pid}), stopped",
                lambda name=name, pid=pid: services.stop_daemon(name, pid),  # type: ignore[misc]
            )
        )
    if any(p.startswith("docker.io:") for p in record.packages) and (
        "dockerd" in daemons or engine_network_left(record.network_before)
    ):
        # The engine is setup's: so are its bridge, its rules and the forwarding it
        # switched on, which outlive the daemon, even one killed from outside.
        actions.append(
            Action(
                f"the engine's network: bridge {net.BRIDGE}, its iptables rules"
                + (
                    f", FORWARD policy back to {record.network_before['forward_policy']}"
                    f" and ip_forward back to {record.network_before['ip_forward']}"
                    if record.network_before.get("forward_policy")
                    else ""
                ),
                lambda: _remove_engine_network(record.network_before),
            )
        )
    for name in record.binfmt:
        if name in qemu.binfmt_names():
            actions.append(
                Action(
                    f"binfmt_misc handler {name}",
                    lambda name=name: qemu.unregister_binfmt(name),  # type: ignore[misc]
                )
            )
    storages = sorted(registry.STORAGE_DIR.parent.glob("registry*"))
    for path in [*storages, *OWN_DIRS]:
        if path.exists():
            actions.append(Action(f"folder {path}", _remove_tree(path)))
    for name in record.files:
        path = Path(name)
        if path.exists():
            actions.append(Action(f"file {path} (created by setup)", _remove_file(path)))
    if hostrecord.DAEMON_JSON_BEFORE.exists():
        actions.append(
            Action(f"{DAEMON_JSON}, restored as it was before setup", _restore_daemon_json)
        )
    if purge:
        packages = purge_plan(record.packages)
        if packages.purge:
            actions.append(
                Action(
                    f"{len(packages.purge)} package(s) setup installed, purged: "
                    + ", ".join(packages.purge),
                    lambda: apt.purge(list(packages.purge), log_path=None),
                )
            )
        if packages.kept:
            # Said, not done: these stay, and so does their record.
            for package, by in packages.kept:
                actions.append(
                    Action(f"{package}: {by}, installed since, needs it", _nothing, keep=True)
                )
        for name in record.dirs:
            if Path(name).exists():
                actions.append(
                    Action(
                        f"folder {name} (created by setup's packages)",
                        _remove_state_dir(Path(name)),
                    )
                )
        if not packages.kept:
            # With packages kept, the record stays: a later --purge finishes the job.
            actions.append(
                Action(
                    f"setup's record {hostrecord.RECORD.parent}",
                    _remove_tree(hostrecord.RECORD.parent),
                )
            )
    return actions


def teardown(purge: bool, dry_run: bool, say: Say) -> list[Action]:
    """Undo setup: say each action, and carry it out unless `dry_run`. Returns the plan.

    Raises HostNotReady when `purge` would remove packages setup did not install.
    """
    actions = plan(purge)
    if not actions:
        say("nothing to remove: setup left nothing on this host")
    for action in actions:
        if action.keep:
            say("keeping " + action.what)
            continue
        say(("would remove " if dry_run else "removing ") + action.what)
        if not dry_run:
            action.do()
    return actions
