"""`run --bake`: each target of a bake file, as `docker buildx bake --print` resolves it,
becomes a Dockerfile scenario with its context, Dockerfile, stage, args and platforms."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.scenarios.userfile import bake_scenarios
from tests.conftest import DATA

pytestmark = [pytest.mark.engine]

BAKE = """
group "default" {
  targets = ["svc"]
}
target "svc" {
  context = "go-service"
  target = "runtime"
  args = { GO_PACKAGE = "golang-go" }
  platforms = ["linux/amd64", "linux/arm64"]
}
target "compile" {
  inherits = ["svc"]
  target = "builder"
  platforms = ["linux/arm64"]
}
"""


@pytest.fixture
def bake_file(tmp_path: Path) -> Path:
    shutil.copytree(DATA / "dockerfiles" / "go-service", tmp_path / "go-service")
    file = tmp_path / "docker-bake.hcl"
    file.write_text(BAKE)
    return file


def test_each_bake_target_is_a_scenario(bake_file: Path) -> None:
    (svc,) = bake_scenarios(bake_file)  # the default group
    assert svc.kind == "dockerfile" and svc.dockerfile is not None
    assert svc.name == "bake-go-service-svc"
    assert svc.dockerfile.context == (bake_file.parent / "go-service").resolve()
    assert svc.dockerfile.path.name == "Dockerfile" and svc.dockerfile.target == "runtime"
    assert svc.dockerfile.build_args == (("GO_PACKAGE", "golang-go"),)
    assert [p.name for p in svc.platforms] == ["linux/amd64", "linux/arm64"]
    both = bake_scenarios(bake_file, ("svc", "compile"))
    compile_ = next(s for s in both if s.name.endswith("compile"))
    assert compile_.dockerfile is not None and compile_.dockerfile.target == "builder"
    assert [p.name for p in compile_.platforms] == ["linux/arm64"]  # its own, inherited args
    assert compile_.dockerfile.build_args == (("GO_PACKAGE", "golang-go"),)


def test_bad_bake_target_is_named(bake_file: Path) -> None:
    with pytest.raises(UsageError, match="bake --print failed"):
        bake_scenarios(bake_file, ("nope",))
