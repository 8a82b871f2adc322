from pathlib import Path

from bench.tools import docker

LOG = (Path(__file__).resolve().parents[2] / "data" / "buildx-moby-push-race.log").read_text()
TAG = "127.0.0.1:5000/archbench/cbench:qemu-user-combined"


def test_race_is_recognised_and_the_tag_repointed(monkeypatch):
    calls = []
    monkeypatch.setattr(docker.registry, "retag", lambda *a: calls.append(a))
    digest = docker._repair_moby_push(LOG, TAG)
    assert digest.startswith("sha256:bd103713")
    assert calls == [("127.0.0.1:5000/archbench/cbench", digest, "qemu-user-combined")]


def test_other_failures_are_left_alone(monkeypatch):
    monkeypatch.setattr(docker.registry, "retag", lambda *a: (_ for _ in ()).throw(AssertionError))
    assert docker._repair_moby_push("error: expected ';'", TAG) == ""
    assert docker._repair_moby_push(LOG, TAG.replace("combined", "x")) == ""
