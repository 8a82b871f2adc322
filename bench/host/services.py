"""Start the daemons archbench needs when they are installed but not answering.

No init system runs them on these hosts: containerd, dockerd and the registry are
started in the background, detached, with their logs under /var/log/archbench.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bench.errors import EngineUnavailable, HostNotReady, RegistryUnavailable
from bench.tools import docker, proc, registry

LOG_DIR = Path("/var/log/archbench")
CONTAINERD_SOCKET = Path("/run/containerd/containerd.sock")
DOCKERD_PIDFILE = Path("/var/run/docker.pid")


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def engine_answers() -> bool:
    """Return whether `docker info` answers."""
    try:
        docker.engine_info(timeout=15)
    except (EngineUnavailable, HostNotReady):
        return False
    return True


def ensure_engine(say: Callable[[str], None] = lambda _m: None) -> None:
    """Make sure the Docker engine answers, starting containerd and dockerd if needed.

    Raises HostNotReady (exit 2) when they are not installed, EngineUnavailable when
    they were started but do not answer within a minute.
    """
    if shutil.which(docker.DOCKER) is None:
        raise HostNotReady("the docker client is not installed; run `archbench setup`")
    if engine_answers():
        return
    if shutil.which("dockerd") is None or shutil.which("containerd") is None:
        raise HostNotReady("no Docker engine is installed; run `archbench setup`")
    if not _containerd_answers():
        say("starting containerd")
        proc.spawn_daemon(["containerd"], LOG_DIR / "containerd.log")
        if not _wait(_containerd_answers, 30):
            raise EngineUnavailable(f"containerd did not start; see {LOG_DIR / 'containerd.log'}")
    say("starting dockerd")
    _clear_stale_pidfile()
    proc.spawn_daemon(["dockerd", "--containerd", str(CONTAINERD_SOCKET)], LOG_DIR / "dockerd.log")
    if not _wait(engine_answers, 60):
        raise EngineUnavailable(f"dockerd did not answer in 60 s; see {LOG_DIR / 'dockerd.log'}")


def _containerd_answers() -> bool:
    if not CONTAINERD_SOCKET.exists() or shutil.which("ctr") is None:
        return CONTAINERD_SOCKET.exists()
    return proc.run(["ctr", "version"], timeout=10).ok


def _clear_stale_pidfile() -> None:
    try:
        pid = int(DOCKERD_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        DOCKERD_PIDFILE.unlink(missing_ok=True)


def stop_engine(say: Callable[[str], None] = lambda _m: None) -> None:
    """Stop dockerd (to reload daemon.json); containerd keeps running."""
    try:
        pid = int(DOCKERD_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    say("stopping dockerd to reload its configuration")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    if not _wait(gone, 30):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(gone, 10)


def ensure_registry(address: str, say: Callable[[str], None] = lambda _m: None) -> None:
    """Make sure the registry answers at `address`, starting docker-registry if needed.

    Raises HostNotReady when it is not installed or not configured, RegistryUnavailable
    when it was started but does not answer.
    """
    if registry.ping(address):
        return
    if shutil.which(registry.BINARY) is None:
        raise HostNotReady(
            f"no registry answers at {address} and docker-registry is not "
            "installed; run `archbench setup`"
        )
    config = config_path(address)
    if not config.exists():
        raise HostNotReady(f"no registry is configured for {address}; run `archbench setup`")
    say(f"starting the registry on {address}")
    proc.spawn_daemon(
        [registry.BINARY, "serve", str(config)],
        LOG_DIR / f"registry-{address.replace(':', '-')}.log",
    )
    if not _wait(lambda: registry.ping(address), 30):
        raise RegistryUnavailable(f"the registry did not answer at {address}; see {LOG_DIR}")


def config_path(address: str) -> Path:
    """Return where the registry config for `address` lives."""
    if address == registry.DEFAULT_REGISTRY:
        return registry.CONFIG_PATH
    return registry.CONFIG_PATH.with_name(f"registry-{address.replace(':', '-')}.yml")
