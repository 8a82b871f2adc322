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

import psutil

from bench.errors import EngineUnavailable, HostNotReady, RegistryUnavailable
from bench.tools import docker, proc, registry

LOG_DIR = Path("/var/log/archbench")
# Pid files of the daemons archbench itself started: teardown stops those, and only those.
PID_DIR = Path("/run/archbench")
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
        _started("containerd", proc.spawn_daemon(["containerd"], LOG_DIR / "containerd.log"))
        if not _wait(_containerd_answers, 30):
            raise EngineUnavailable(f"containerd did not start; see {LOG_DIR / 'containerd.log'}")
    say("starting dockerd")
    _clear_stale_pidfile()
    _started(
        "dockerd",
        proc.spawn_daemon(
            ["dockerd", "--containerd", str(CONTAINERD_SOCKET)], LOG_DIR / "dockerd.log"
        ),
    )
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
    _started(
        registry_daemon_name(address),
        proc.spawn_daemon(
            [registry.BINARY, "serve", str(config)],
            LOG_DIR / f"registry-{address.replace(':', '-')}.log",
        ),
    )
    if not _wait(lambda: registry.ping(address), 30):
        raise RegistryUnavailable(f"the registry did not answer at {address}; see {LOG_DIR}")


def config_path(address: str) -> Path:
    """Return where the registry config for `address` lives."""
    if address == registry.DEFAULT_REGISTRY:
        return registry.CONFIG_PATH
    return registry.CONFIG_PATH.with_name(f"registry-{address.replace(':', '-')}.yml")


def registry_daemon_name(address: str) -> str:
    """Return the name under which the registry daemon for `address` is recorded."""
    return "registry-" + address.replace(":", "-")


def _started(name: str, pid: int) -> None:
    PID_DIR.mkdir(parents=True, exist_ok=True)
    (PID_DIR / f"{name}.pid").write_text(f"{pid}\n")


# The program each daemon archbench starts runs as: a pid file is trusted only when its
# process still is that program (pids are reused; a stale or wrong file names another).
DAEMON_PROGRAMS = {"containerd": "containerd", "dockerd": "dockerd", "registry": registry.BINARY}


def _is_daemon(name: str, pid: int) -> bool:
    program = next((p for n, p in DAEMON_PROGRAMS.items() if name.startswith(n)), None)
    if program is None or pid <= 1:
        return False
    try:
        argv = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return bool(argv) and Path(argv[0]).name == program


def started_daemons() -> dict[str, int]:
    """Return {name: pid} of the daemons archbench started that still run: those in its
    pid files whose process is that daemon, and those running with exactly the command
    line archbench starts them with (a pid file is lost with /run at a reboot, or was
    never written by an older archbench)."""
    found: dict[str, int] = {}
    for path in sorted(PID_DIR.glob("*.pid")):
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        if _is_daemon(path.stem, pid):
            found[path.stem] = pid
    own = {
        ("containerd",): "containerd",
        ("dockerd", "--containerd", str(CONTAINERD_SOCKET)): "dockerd",
    }
    for process in psutil.process_iter(["pid", "cmdline"]):
        argv = tuple(process.info["cmdline"] or ())
        name = own.get(argv)
        if name is None and argv[:2] == (registry.BINARY, "serve") and len(argv) == 3:
            config = Path(argv[2])
            if config == registry.CONFIG_PATH:
                name = registry_daemon_name(registry.DEFAULT_REGISTRY)
            elif config.parent == registry.CONFIG_PATH.parent:
                name = config.stem
        if name is not None and process.info["pid"] not in found.values():
            found.setdefault(name, process.info["pid"])
    return found


def stop_daemon(name: str, pid: int, seconds: float = 30) -> None:
    """Stop a daemon archbench started: SIGTERM, then SIGKILL after `seconds`. Does
    nothing to a pid that is not that daemon."""
    if not _is_daemon(name, pid):
        (PID_DIR / f"{name}.pid").unlink(missing_ok=True)
        return

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie of ours (we are its parent) counts as gone once reaped.
        with contextlib.suppress(ChildProcessError):
            return os.waitpid(pid, os.WNOHANG)[0] == pid
        return False

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(gone, seconds):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(gone, 10)
    (PID_DIR / f"{name}.pid").unlink(missing_ok=True)
