"""Decisions behind the fault suite that need no engine: exit codes of signals, output
kept when a log cannot be written, the registry failure class, and the engine started
(and said so) when it does not answer."""

import signal
from pathlib import Path

import pytest

from bench import cli
from bench.engine import runner
from bench.errors import Interrupted
from bench.host import services
from bench.tools import proc


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_exits_128_plus_its_number(monkeypatch, capsys, signum, code):
    def interrupted(_args):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(signum)

    monkeypatch.setattr(cli.show, "run", interrupted)
    assert cli.main(["show"]) == code
    assert f"interrupted ({signal.Signals(signum).name})" in capsys.readouterr().err


def test_sigterm_handler_raises_interrupted_with_its_number():
    with pytest.raises(Interrupted) as caught:
        cli._interrupt(signal.SIGTERM, None)
    assert caught.value.signum == signal.SIGTERM
    assert isinstance(caught.value, KeyboardInterrupt)


def test_a_log_on_a_full_disk_neither_hangs_nor_loses_output():
    # /dev/full answers every write with ENOSPC; 200000 lines overflow any pipe buffer,
    # so a pump that stopped at the first failed write would leave the child blocked.
    done = proc.run(["seq", "1", "200000"], timeout=60, log_path=Path("/dev/full"))
    assert done.ok
    assert done.stdout.splitlines()[-1] == "200000"


def test_a_failed_build_with_no_registry_answering_is_a_registry_failure():
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    assert runner.registry_failure("127.0.0.1:1", "network") == "registry"
    assert runner.registry_failure("127.0.0.1:1", "unknown") == "registry"
    assert runner.registry_failure("127.0.0.1:1", "compile-error") == "compile-error"


def test_engine_not_answering_is_started_and_said(monkeypatch, tmp_path):
    said: list[str] = []
    monkeypatch.setattr(services, "PID_DIR", tmp_path)
    started: list[list[str]] = []
    answers = iter([False, True])
    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(services, "engine_answers", lambda: next(answers))
    monkeypatch.setattr(services, "_containerd_answers", lambda: True)
    monkeypatch.setattr(services, "_clear_stale_pidfile", lambda: None)
    monkeypatch.setattr(services, "_wait", lambda predicate, _s: predicate())
    monkeypatch.setattr(
        services.proc, "spawn_daemon", lambda argv, _log: started.append(list(argv)) or 1
    )
    services.ensure_engine(said.append)
    assert said == ["starting dockerd"]
    assert started and started[0][0] == "dockerd"


def test_engine_answering_is_left_alone(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(services, "engine_answers", lambda: True)
    monkeypatch.setattr(
        services.proc, "spawn_daemon", lambda *_a: pytest.fail("started a running engine")
    )
    services.ensure_engine(said.append)
    assert said == []


def test_a_build_reports_the_digest_buildkit_pushed_not_the_engines_later_push():
    from bench.tools import docker

    tag = "127.0.0.1:5000/archbench/t:cross-arm64"
    own, other = "sha256:" + "5" * 64, "sha256:" + "b" * 64
    text = (
        f"pushing manifest for {tag}@{own} done\n"
        "pushing layer d2b7eabf535e done\n"
        f"pushing manifest for {tag}@{other} 0.1s done\n"
    )
    assert docker._buildkit_pushed(text, tag) == own
    assert docker._buildkit_pushed(text, tag + "-x") == ""
