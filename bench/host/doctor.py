"""`archbench doctor`: what this host can do, and what fixes what it cannot."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from bench.errors import ArchbenchError
from bench.host import services
from bench.host import setup as provision
from bench.platforms import KNOWN, Platform, host_platform
from bench.strategies import REGISTRY
from bench.tools import apt, docker, mmdebstrap, qemu, registry
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


def collect(address: str, platforms: list[Platform]) -> list[Capability]:
    """Return every capability row for this host."""
    say = lambda _m: None  # noqa: E731
    rows = _engine_rows(say)
    host = host_platform()
    for p in KNOWN.values():
        if p == host:
            continue
        entry = qemu.read_binfmt(p.qemu_name)
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
    kvm = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
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


def strategy_grid(platforms: list[Platform]) -> list[dict[str, Any]]:
    """Return one row per strategy and platform: available, or why not and the fix."""
    host = host_platform()
    grid = []
    for name, strategy in REGISTRY.items():
        for p in platforms:
            a = strategy.probe(p, host)
            grid.append(
                {
                    "strategy": name,
                    "platform": p.name,
                    "available": a.available,
                    "reason": a.reason,
                    "fix": a.fix,
                }
            )
    return grid


def as_json(rows: list[Capability], grid: list[dict[str, Any]], ready: bool) -> dict[str, Any]:
    """Return the doctor's findings as one JSON-ready dict."""
    return {"ready": ready, "capabilities": [asdict(r) for r in rows], "strategies": grid}


def ready(rows: list[Capability]) -> bool:
    """Return whether every required capability is present."""
    return all(r.ok for r in rows if r.required)
