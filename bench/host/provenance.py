"""Where and with what a result was measured."""

from __future__ import annotations

import os
import platform as _platform
from pathlib import Path
from typing import Any

import psutil

from bench import __version__
from bench.errors import ArchbenchError
from bench.platforms import Platform, host_platform
from bench.tools import apt, docker, mmdebstrap, proc, qemu


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Return the host CPU's model name."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or "unknown"


_CHECKOUT = Path(__file__).resolve().parents[2]


def git_commit(repo: Path = _CHECKOUT) -> str:
    """Return the harness checkout's commit, or '' outside a git checkout."""
    try:
        done = proc.run(["git", "-C", str(repo), "rev-parse", "HEAD"], timeout=10)
    except ArchbenchError:
        return ""
    return done.stdout.strip() if done.ok else ""


def collect(platforms: list[Platform]) -> dict[str, Any]:
    """Return the provenance of this host: CPU, kernel, tool versions, binfmt entries."""
    info: dict[str, Any] = {
        "harness_version": __version__,
        "harness_commit": git_commit(),
        "hostname": _platform.node(),
        "host_platform": host_platform().name,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "kernel": _platform.release(),
        "memory_bytes": psutil.virtual_memory().total,
        "loadavg": list(os.getloadavg()),
    }
    try:
        engine = docker.engine_info(timeout=15)
        info["docker_server"] = engine.server_version
        info["containerd_store"] = engine.containerd_store
    except ArchbenchError as exc:
        info["docker_server"] = f"unavailable: {exc}"
    info["docker_client"] = docker.client_version()
    info["buildx"] = docker.buildx_version()
    info["buildkit"] = docker.buildkit_version()
    info["containerd"] = docker.containerd_version()
    info["qemu_system"] = {name: qemu.system_version(name) for name in ("aarch64", "x86_64")}
    info["mmdebstrap"] = mmdebstrap.version()
    info["qemu_user"] = qemu.user_version()
    info["qemu_user_package"] = apt.installed_version("qemu-user-static")
    binfmt = {}
    for p in platforms:
        if p == host_platform():
            continue
        entry = qemu.read_binfmt(p.qemu_name)
        binfmt[p.name] = (
            {"interpreter": entry.interpreter, "flags": entry.flags, "enabled": entry.enabled}
            if entry
            else None
        )
    info["binfmt"] = binfmt
    info["qemu_cpu"] = os.environ.get("QEMU_CPU", "")
    return info
