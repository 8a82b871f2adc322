"""`archbench doctor`: what this host can do, and what fixes what it cannot."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.engine.matrix import HOST_EMULATOR, expand
from bench.errors import ArchbenchError
from bench.host import services
from bench.host import setup as provision
from bench.host.facts import Host
from bench.platforms import KNOWN, Platform, parse_platform
from bench.scenarios.loader import Scenario
from bench.strategies import REGISTRY, probe_cells
from bench.strategies.qemu_user import emulator_limit
from bench.tools import apt, docker, mmdebstrap, qemu, registry, system_emulators
from bench.tools.emulators import CACHE_DIR as EMULATOR_CACHE
from bench.tools.emulators import Emulator, EmulatorUnavailable
from bench.validate.image import image_platforms


@dataclass(frozen=True)
class Capability:
    """One row of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


def _engine_rows(say: Any) -> list[Capability]:
    rows = []
    try:
        services.ensure_engine(say)
        info = docker.engine_info()
        rows.append(
            Capability("engine", True, f"Docker Engine {info.server_version}", required=True)
        )
        rows.append(
            Capability(
                "containerd image store",
                info.containerd_store,
                "on"
                if info.containerd_store
                else "off: multi-platform images cannot be kept locally",
                "archbench setup",
                required=True,
            )
        )
    except ArchbenchError as exc:
        rows.append(Capability("engine", False, str(exc), "archbench setup", required=True))
        return rows
    bx = docker.buildx_version()
    rows.append(
        Capability("buildx", bool(bx), bx or "plugin missing", "archbench setup", required=True)
    )
    rows.append(
        Capability(
            "builder docker-container",
            False,
            "unavailable: needs a moby/buildkit image, and no container registry is reachable "
            "here (Debian has no buildkitd package)",
            "archbench setup --builder-image REF (where a BuildKit image is reachable)",
        )
    )
    return rows


def collect(address: str, platforms: list[Platform], facts: Host) -> list[Capability]:
    """Return every capability row for this host (`facts`: what it was found to have)."""
    say = lambda _m: None  # noqa: E731
    rows = _engine_rows(say)
    host = facts.platform
    for p in KNOWN.values():
        if p == host:
            continue
        entry = facts.binfmt_entry(p.qemu_name)
        if entry is None:
            rows.append(
                Capability(
                    f"binfmt {p.architecture}",
                    False,
                    f"no qemu-{p.qemu_name} handler",
                    "archbench setup",
                    required=p in platforms,
                )
            )
        else:
            rows.append(
                Capability(
                    f"binfmt {p.architecture}",
                    entry.enabled and entry.fix_binary,
                    f"{'enabled' if entry.enabled else 'disabled'}, interpreter "
                    f"{entry.interpreter}, flags {entry.flags}",
                    "archbench setup",
                    required=p in platforms,
                )
            )
    qu = qemu.user_version()
    rows.append(
        Capability(
            "qemu-user",
            bool(qu),
            qu or "qemu-user-static not installed",
            "archbench setup",
            required=True,
        )
    )
    for name in ("aarch64", "x86_64"):
        qs = qemu.system_version(name)
        rows.append(
            Capability(
                f"qemu-system-{name}",
                bool(qs),
                qs or "not installed",
                "apt-get install qemu-system-arm qemu-system-x86",
            )
        )
    kvm = facts.kvm
    rows.append(
        Capability(
            "/dev/kvm",
            kvm,
            "opens (whether guests boot under it is decided by booting one)" if kvm else "absent",
        )
    )
    for p in KNOWN.values():
        pkg = "gcc" if p == host else f"gcc-{p.gnu_triplet.replace('_', '-')}"
        version = apt.candidate_version(pkg) if shutil.which("apt-cache") else ""
        rows.append(
            Capability(
                f"cross compiler {p.architecture}{p.variant}",
                bool(version),
                f"{pkg} {version} from Debian's archive (installed in the build stage)"
                if version
                else f"{pkg} not offered by apt",
                "apt-get update",
            )
        )
    mm = mmdebstrap.version()
    rows.append(
        Capability("mmdebstrap", bool(mm), mm or "not installed", "archbench setup", required=True)
    )
    try:
        services.ensure_registry(address, say)
        rows.append(Capability("registry", True, f"http://{address}/v2/ answers", required=True))
        have: dict[str, set[str]] = {}
        for suite in sorted({p.suite for p in platforms}):
            try:
                body = registry.get_manifest(provision.base_image_ref(address, suite=suite)).body
                have[suite] = set(image_platforms(body))
            except (LookupError, ArchbenchError):
                have[suite] = set()
        for p in platforms:
            ref = provision.base_image_ref(address, suite=p.suite)
            found = p.name in have[p.suite]
            rows.append(
                Capability(
                    f"base image {p.name}",
                    found,
                    ref if found else f"not in the local registry ({ref})",
                    f"archbench setup --platform {p.name}",
                    required=True,
                )
            )
    except ArchbenchError as exc:
        rows.append(Capability("registry", False, str(exc), "archbench setup", required=True))
    return rows


def strategy_grid(
    scenario: Scenario,
    platforms: list[Platform],
    host: Host,
    pinned: Sequence[Emulator] = (),
    cache_dir: Path = EMULATOR_CACHE,
) -> list[dict[str, Any]]:
    """Return one row per strategy variant and platform: available, or why not and the fix.

    The cells are those `run` expands for `scenario` (size 1, cold, default CPU), and
    each is judged by the same `probe_cells` the run asks, so the two agree. qemu-user
    and qemu-system run under the host's emulator (`emulator` 'host'), and once more
    under each of `pinned` (the emulators earlier runs unpacked: `--emulator` can use them
    without a download), judged as `run` judges a cell on the emulator axis; a
    qemu-system variant by its cached system emulator (`system_state`). `note` says what
    an available pinned qemu-system cell runs, or that a run would fetch it first.
    """
    axis = {e.axis: e for e in pinned}
    cells = expand(
        [(scenario.name, [p.name for p in platforms])],
        list(REGISTRY),
        [1],
        emulators=["", *axis] if axis else (),
    )
    found = probe_cells(cells, {scenario.name: scenario}, host)
    rows = []
    for c, a in found.items():
        emulator = axis.get(c.emulator)
        limit = emulator_limit(c, emulator, host.platform) if a.available else ""
        note = ""
        if a.available and not limit and c.strategy == "qemu-system" and emulator is not None:
            limit, note = system_state(emulator, c.platform, cache_dir)
        rows.append(
            {
                "strategy": c.strategy,
                "variant": c.variant,
                "emulator": c.emulator or HOST_EMULATOR,
                "emulator_version": emulator.version if emulator else "",
                "platform": c.platform,
                "available": a.available and not limit,
                "reason": limit or a.reason,
                "fix": "" if limit else a.fix,
                "note": note,
            }
        )
    return rows


def system_state(
    emulator: Emulator, platform: str, cache_dir: Path = EMULATOR_CACHE
) -> tuple[str, str]:
    """Return (why a qemu-system cell of `platform` cannot run under pinned `emulator`,
    or ''; a note when it can) from the cache alone: a cached closure is checked to run
    (a run would do the same), one not yet fetched is what a run fetches first."""
    qemu_name = parse_platform(platform).qemu_name
    try:
        system = system_emulators.cached_system(emulator, qemu_name, cache_dir)
        if system is None:
            package = system_emulators.package_for(qemu_name)
            return "", f"not fetched yet: a run fetches {package} {emulator.version} first"
        system = system_emulators.check_runs(system)
    except EmulatorUnavailable as exc:
        return str(exc), ""
    return "", f"runs {system.reported}"


def as_json(rows: list[Capability], grid: list[dict[str, Any]], ready: bool) -> dict[str, Any]:
    """Return the doctor's findings as one JSON-ready dict."""
    return {"ready": ready, "capabilities": [asdict(r) for r in rows], "strategies": grid}


def ready(rows: list[Capability]) -> bool:
    """Return whether every required capability is present."""
    return all(r.ok for r in rows if r.required)
