"""Which strategy a build of a team's own Dockerfile is, per platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.host.facts import Host
from bench.platforms import KNOWN, parse_platform
from bench.scenarios import userfile as scen
from bench.scenarios.loader import load_scenario_file
from bench.strategies import REGISTRY, userfile
from bench.strategies.base import Availability
from bench.tools.qemu import BinfmtEntry

DATA = Path(__file__).resolve().parents[2] / "data" / "dockerfiles"
AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")
OK = Availability(True, "base says yes")
# An amd64 host with qemu-user registered (flag F) for every foreign platform.
HOST = Host(
    AMD64,
    binfmt={
        p.qemu_name: BinfmtEntry(f"qemu-{p.qemu_name}", True, f"/usr/bin/qemu-{p.qemu_name}", "PF")
        for p in KNOWN.values()
        if p != AMD64
    },
)


def _probe(name: str, strategy: str, platform: str) -> Availability:
    scenario = scen.dockerfile_scenario(DATA / name / "Dockerfile")
    return userfile.probe(strategy, scenario, parse_platform(platform), HOST, OK)


def test_every_run_on_the_target_is_qemu_user_and_never_cross() -> None:
    assert _probe("c-make", "qemu-user", "linux/arm64").available
    cross = _probe("c-make", "cross", "linux/arm64")
    assert not cross.available
    assert cross.reason == "this Dockerfile runs every RUN on the target platform"
    assert "--platform=$BUILDPLATFORM" in cross.fix


def test_a_buildplatform_build_stage_is_cross_not_qemu_user() -> None:
    assert _probe("go-service", "cross", "linux/arm64").available
    q = _probe("go-service", "qemu-user", "linux/arm64")
    assert not q.available and "builder" in q.reason and "is cross" in q.reason


@pytest.mark.parametrize("name", ["c-make", "go-service", "tarball-image"])
def test_host_platform_is_native_and_rewriting_strategies_are_unavailable(name: str) -> None:
    assert _probe(name, "native", "linux/amd64") == OK
    for strategy in ("cross", "qemu-user"):
        a = _probe(name, strategy, "linux/amd64")
        assert not a.available and "builds natively" in a.reason
    for strategy in ("qemu-system", "hybrid"):
        a = _probe(name, strategy, "linux/arm64")
        assert not a.available and "rewriting the Dockerfile" in a.reason


def test_the_users_file_is_the_recipe_never_rewritten() -> None:
    scenario = scen.dockerfile_scenario(DATA / "go-service" / "Dockerfile", target="runtime")
    text = (DATA / "go-service" / "Dockerfile").read_text()
    for strategy in ("native", "cross", "qemu-user"):
        recipe = REGISTRY[strategy].dockerfile(scenario, None)  # type: ignore[arg-type]
        assert recipe == text
    options = userfile.buildx_options(scenario, "cold")
    assert options["file"] == (DATA / "go-service" / "Dockerfile").resolve()
    assert options["target"] == "runtime" and options["no_cache"] is True


def test_scenario_file_of_kind_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text((DATA / "go-service" / "Dockerfile").read_text())
    (tmp_path / "app" / "main.go").write_text("package main\n")
    file = tmp_path / "scenario.toml"
    file.write_text(
        'name = "svc"\nkind = "dockerfile"\ndockerfile = "app/Dockerfile"\ncontext = "app"\n'
        'target = "runtime"\nplatforms = ["linux/arm64"]\nartifacts = ["/usr/local/bin/x"]\n'
        'touch = "main.go"\nbuild_args = { GO_PACKAGE = "golang-1.19-go" }\n'
        '[smoke]\ncommand = ["/usr/local/bin/x", "-version"]\nexpect = "{architecture}"\n'
    )
    s = load_scenario_file(file)
    assert s.kind == "dockerfile" and s.dockerfile is not None
    assert s.dockerfile.target == "runtime" and s.source_dir == (tmp_path / "app").resolve()
    assert s.dockerfile.build_args == (("GO_PACKAGE", "golang-1.19-go"),)
    assert [a.path for a in s.artifacts] == ["/usr/local/bin/x"]
    assert s.expected_output(ARM64) == "arm64" and s.touch == "main.go"
    file.write_text(file.read_text().replace('target = "runtime"', 'target = "tests"'))
    with pytest.raises(UsageError, match="no stage 'tests'; valid: builder, runtime"):
        load_scenario_file(file)
    file.write_text('name = "svc"\nkind = "dockerfile"\ncontext = "../.."\n')
    with pytest.raises(UsageError, match="context"):
        load_scenario_file(file)


@pytest.mark.parametrize(
    ("value", "error"),
    [("NOEQUALS", "bad --build-arg 'NOEQUALS'"), ("1X=2", "bad --build-arg '1X=2'")],
)
def test_bad_build_args_are_named(value: str, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        scen.build_arg(value)


def test_secret_values_are_checked() -> None:
    assert scen.pass_through("--secret", "id=npmrc,src=/home/u/.npmrc") == (
        "id=npmrc,src=/home/u/.npmrc"
    )
    with pytest.raises(UsageError, match="bad --ssh 'a b'"):
        scen.pass_through("--ssh", "a b")


def test_hub_repository_names() -> None:
    assert userfile.hub_repository("debian:bookworm") == "library/debian:bookworm"
    assert userfile.hub_repository("docker/dockerfile:1") == "docker/dockerfile:1"
    assert userfile.hub_repository("docker.io/library/node") == "library/node:latest"
    assert userfile.hub_repository("ghcr.io/org/img:1") is None
