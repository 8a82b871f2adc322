"""Scenarios: what to build. A scenario is a TOML file plus its source folder."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.platforms import Platform, parse_platform

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
DEFAULT_SCENARIO = "cbench"
SCENARIO_FILE = "scenario.toml"

_TOP_KEYS = {
    "name",
    "description",
    "platforms",
    "base_image",
    "source",
    "toolchain",
    "build",
    "artifacts",
    "smoke",
}


@dataclass(frozen=True)
class Artifact:
    """A file the build makes (`built`, relative to the build folder) and where the
    image keeps it (`path`, absolute)."""

    built: str
    path: str


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    name: str
    description: str
    file: Path
    source_dir: Path
    platforms: tuple[Platform, ...]
    base_image: str
    packages: tuple[str, ...]
    build_command: str
    artifacts: tuple[Artifact, ...]
    smoke_command: tuple[str, ...]
    smoke_expect: str
    touch: str = ""
    touch_comment: str = "/* archbench warm build {nonce} */"

    def digest(self) -> str:
        """Return a sha256 over the scenario file and every source file (sorted by path)."""
        h = hashlib.sha256()
        h.update(self.file.read_bytes())
        for path in sorted(p for p in self.source_dir.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(self.source_dir)).encode())
            h.update(b"\0")
            h.update(path.read_bytes())
        return h.hexdigest()

    def expected_output(self, platform: Platform) -> str:
        """Return the smoke expectation with `{arch}` filled in for `platform`."""
        return self.smoke_expect.replace("{arch}", platform.uname)


def _need(data: dict[str, Any], key: str, kind: type, where: str, file: Path) -> Any:
    if key not in data:
        raise UsageError(f"{file}: missing key {where}{key} ({kind.__name__} expected)")
    value = data[key]
    if not isinstance(value, kind):
        raise UsageError(
            f"{file}: key {where}{key} must be a {kind.__name__}, not {type(value).__name__}"
        )
    return value


def load_scenario_file(file: Path) -> Scenario:
    """Parse one scenario file. Raises UsageError naming the file and the bad key."""
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{file}: cannot read scenario: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{file}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        valid = ", ".join(sorted(_TOP_KEYS))
        raise UsageError(f"{file}: unknown key {unknown[0]!r}; valid: {valid}")
    name = _need(data, "name", str, "", file)
    source = _need(data, "source", dict, "", file)
    source_dir = (file.parent / _need(source, "path", str, "source.", file)).resolve()
    if not source_dir.is_dir():
        raise UsageError(f"{file}: source.path {source['path']!r} is not a folder")
    try:
        platforms = tuple(parse_platform(p) for p in _need(data, "platforms", list, "", file))
    except UsageError as exc:
        raise UsageError(f"{file}: key platforms: {exc}") from exc
    toolchain = _need(data, "toolchain", dict, "", file)
    build = _need(data, "build", dict, "", file)
    arts = _need(data, "artifacts", dict, "", file)
    artifacts = []
    for built, path in arts.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise UsageError(f"{file}: key artifacts.{built} must be an absolute image path")
        artifacts.append(Artifact(built, path))
    if not artifacts:
        raise UsageError(f"{file}: key artifacts must name at least one file")
    smoke = _need(data, "smoke", dict, "", file)
    return Scenario(
        name=name,
        description=str(data.get("description", "")),
        file=file.resolve(),
        source_dir=source_dir,
        platforms=platforms,
        base_image=str(data.get("base_image", "debian:bookworm")),
        packages=tuple(_need(toolchain, "packages", list, "toolchain.", file)),
        build_command=_need(build, "command", str, "build.", file),
        artifacts=tuple(artifacts),
        smoke_command=tuple(_need(smoke, "command", list, "smoke.", file)),
        smoke_expect=_need(smoke, "expect", str, "smoke.", file),
        touch=_touch(build, source_dir, file),
        touch_comment=str(build.get("touch_comment", "/* archbench warm build {nonce} */")),
    )


def _touch(build: dict[str, Any], source_dir: Path, file: Path) -> str:
    touch = build.get("touch", "")
    if not isinstance(touch, str):
        raise UsageError(f"{file}: key build.touch must be a file name in the source folder")
    if touch and not (source_dir / touch).is_file():
        raise UsageError(f"{file}: key build.touch names {touch!r}, not a file in {source_dir}")
    return touch


def available_scenarios(root: Path = SCENARIO_DIR) -> list[str]:
    """Return the names of the scenarios under `root` (folders with a scenario file)."""
    return sorted(p.parent.name for p in root.glob(f"*/{SCENARIO_FILE}"))


def resolve_scenario(ref: str, root: Path = SCENARIO_DIR) -> Scenario:
    """Return the scenario named `ref` under `root`, or the scenario file at path `ref`.

    Raises UsageError naming the bad value and the valid names.
    """
    candidate = Path(ref)
    if candidate.suffix == ".toml" or candidate.is_dir() or "/" in ref:
        file = candidate / SCENARIO_FILE if candidate.is_dir() else candidate
        if file.is_file():
            return load_scenario_file(file)
        raise UsageError(f"no scenario file at {ref!r}")
    file = root / ref / SCENARIO_FILE
    if file.is_file():
        return load_scenario_file(file)
    raise UsageError(f"unknown scenario {ref!r}; valid: {', '.join(available_scenarios(root))}")
