"""Scenarios: what to build. A scenario is a TOML file plus its sources: a folder next
to it, an upstream tarball fetched and verified by sha256, or both (see
scenarios/README.md for the format)."""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import inputs
from bench.errors import UsageError
from bench.platforms import Platform, parse_platform
from bench.scenarios import sources
from bench.scenarios.dockerfile import DockerfileSpec

# A scenarios/ folder in the working folder is searched first, then the shipped ones.
LOCAL_SCENARIOS = Path("scenarios")
DEFAULT_SCENARIO = "cbench"
SCENARIO_FILE = "scenario.toml"
# `{suite}` becomes each platform's Debian suite (bookworm; trixie for riscv64).
DEFAULT_BASE_IMAGE = "debian:{suite}"

Kind = Literal["compile", "image", "dockerfile"]
KINDS: tuple[Kind, ...] = ("compile", "image", "dockerfile")

# Every table and the keys it may hold: anything else is a mistake, named on load.
_KEYS: dict[str, set[str]] = {
    "": {
        "name",
        "description",
        "kind",
        "platforms",
        "base_image",
        "source",
        "toolchain",
        "build",
        "cross",
        "image",
        "artifacts",
        "smoke",
        "test",
        "dockerfile",
        "context",
        "target",
        "build_args",
        "touch",
    },
    "source": {"path", "url", "sha256", "strip", "fetch"},
    "source.fetch": {"url", "sha256", "dest", "deb_data"},
    "toolchain": {"packages"},
    "build": {"command", "env", "touch", "touch_comment", "needs_target_code"},
    "cross": {"packages", "env", "run"},
    "image": {"packages", "run", "add", "env"},
    "smoke": {"command", "expect"},
    "test": {"command", "expect"},
}
# Text that is matched or shown, never written into a Dockerfile or a shell: it may hold
# newlines, and may be empty. Shell commands are folded to one line
# (inputs.shell_command). Every other string is one line with no control character, and
# an empty one is a mistake, not a silent default.
_TEXT_KEYS = {"description", "smoke.expect", "test.expect"}
_COMMAND_KEYS = {"build.command", "cross.run", "image.run"}
STRIP_MAX = 32


@dataclass(frozen=True)
class Artifact:
    """A file the build makes (`built`, relative to the build folder; empty for an
    image scenario) and where the image keeps it (`path`, absolute)."""

    built: str
    path: str


@dataclass(frozen=True)
class ImageSteps:
    """An image scenario's recipe: Debian packages installed into the target's image,
    a shell `run` after them, files ADDed (source path -> image path; `${TARGETARCH}`
    allowed in the source) and environment variables."""

    packages: tuple[str, ...] = ()
    run: str = ""
    add: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    name: str
    description: str
    file: Path
    source_dir: Path | None  # the local source folder, if any
    platforms: tuple[Platform, ...]
    base_image: str
    packages: tuple[str, ...]
    build_command: str
    artifacts: tuple[Artifact, ...]
    smoke_command: tuple[str, ...]
    smoke_expect: str
    touch: str = ""
    touch_comment: str = "/* archbench warm build {nonce} */"
    kind: Kind = "compile"
    build_env: tuple[tuple[str, str], ...] = ()
    cross_packages: tuple[str, ...] | None = None  # None: swap gcc/libc6-dev for cross ones
    cross_env: tuple[tuple[str, str], ...] = ()
    cross_run: str = ""
    image: ImageSteps = field(default_factory=ImageSteps)
    test_command: tuple[str, ...] = ()
    test_expect: str = ""
    source_main: sources.Fetch | None = None
    source_fetch: tuple[sources.Fetch, ...] = ()
    dockerfile: DockerfileSpec | None = None  # kind "dockerfile": the user's own file
    # The build runs code built for the target (generators, its tests): cross cannot.
    needs_target_code: bool = False

    @property
    def fetched(self) -> bool:
        """Whether any of the sources is downloaded."""
        return self.source_main is not None or bool(self.source_fetch)

    def tree(self, say: Callable[[str], None] | None = None) -> Path:
        """Return the folder holding the scenario's whole source tree: the local folder
        itself, or (with fetched sources) a cached tree assembled from the verified
        downloads and the local folder. Raises SourceUnavailable naming the URL."""
        if not self.fetched:
            assert self.source_dir is not None
            return self.source_dir
        return sources.materialize(
            self.source_main,
            self.source_dir,
            self.source_fetch,
            say=say or (lambda _m: None),
        )

    def check_touch(self, tree: Path) -> None:
        """Raise UsageError when build.touch names no regular file of the assembled
        `tree`, or one that resolves outside it (through `..` or a symlink)."""
        if not self.touch:
            return
        try:
            touched = inputs.inside(tree, self.touch)
        except ValueError as exc:
            raise UsageError(f"{self.file}: key build.touch {exc}") from exc
        if not touched.is_file() or (tree / self.touch).is_symlink():
            raise UsageError(
                f"{self.file}: key build.touch names {self.touch!r}, not a file of the "
                f"source tree ({tree})"
            )

    def digest(self) -> str:
        """Return a sha256 over the scenario file, every local source file (sorted by
        path) and the checksums of the fetched ones; nothing is downloaded."""
        h = hashlib.sha256()
        h.update(self.file.read_bytes())
        if self.source_dir is not None:
            for path in sorted(p for p in self.source_dir.rglob("*") if p.is_file()):
                h.update(str(path.relative_to(self.source_dir)).encode())
                h.update(b"\0")
                h.update(path.read_bytes())
        for f in ((self.source_main,) if self.source_main else ()) + self.source_fetch:
            h.update(f"{f.url}|{f.sha256}|{f.dest}\n".encode())
        return h.hexdigest()

    def expected_output(self, platform: Platform) -> str:
        """Return the smoke expectation filled in for `platform`."""
        return fill(self.smoke_expect, platform)


def fill(template: str, platform: Platform) -> str:
    """Fill `{arch}` (uname -m), `{architecture}` (OCI: arm64, arm) and `{platform}`
    (linux/arm/v7) of an expected-output template."""
    return (
        template.replace("{arch}", platform.uname)
        .replace("{architecture}", platform.architecture)
        .replace("{platform}", platform.name)
    )


def _key(name: str) -> str:
    """Return a table key as an error names it: as written, or quoted when it holds a
    control character or a blank (so that the error stays one line)."""
    return name if name.isprintable() and " " not in name and name else repr(name)


class _Reader:
    """Typed access to one table of a scenario file; every error names file and key."""

    def __init__(self, file: Path, data: dict[str, Any], where: str = "") -> None:
        self.file = file
        self.data = data
        self.where = where
        unknown = sorted(set(data) - _KEYS[where.rstrip(".")])
        if unknown:
            valid = ", ".join(sorted(_KEYS[where.rstrip(".")]))
            raise UsageError(f"{file}: unknown key {where}{unknown[0]!r}; valid: {valid}")

    def fail(self, key: str, what: str) -> UsageError:
        return UsageError(f"{self.file}: key {self.where}{key} {what}")

    def get(self, key: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise UsageError(
                    f"{self.file}: missing key {self.where}{key} ({kind.__name__} expected)"
                )
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"must be a {kind.__name__}, not {type(value).__name__}")
        if isinstance(value, str):
            full = f"{self.where}{key}"
            if not value.strip() and full not in _TEXT_KEYS:
                raise self.fail(key, f"must not be empty, not {value!r}")
            if full in _COMMAND_KEYS:
                return self.check(key, value, inputs.shell_command)
            text = inputs.text_lines if full in _TEXT_KEYS else inputs.one_line
            return self.check(key, value, text)
        return value

    def check(self, key: str, value: str, check: Callable[[str], str]) -> str:
        """Return check(value); a ValueError becomes the one-line error naming the key."""
        try:
            return check(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def strings(
        self, key: str, *, required: bool = False, check: Callable[[str], str] = inputs.one_line
    ) -> tuple[str, ...] | None:
        value = self.get(key, list, required=required)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        if not all(v.strip() for v in value):
            raise self.fail(key, f"must not hold an empty string, not {value!r}")
        return tuple(self.check(key, v, check) for v in value)

    def packages(self, key: str, *, required: bool = False) -> tuple[str, ...] | None:
        return self.strings(key, required=required, check=inputs.package)

    def table(self, key: str, *, required: bool = False) -> _Reader | None:
        value = self.get(key, dict, required=required)
        return None if value is None else _Reader(self.file, value, f"{self.where}{key}.")

    def env(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.get(key, dict, {})
        for name, text in value.items():
            if not name.isidentifier() or not name.isascii() or not isinstance(text, str):
                raise self.fail(f"{key}.{_key(name)}", 'must be NAME = "shell word"')
            self.check(f"{key}.{name}", text, inputs.env_value)
        return tuple(value.items())


def _fetch(r: _Reader, *, main: bool) -> sources.Fetch:
    url = r.get("url", str, required=True)
    if not url.startswith(("http://", "https://", "file://")) or " " in url:
        raise r.fail("url", f"must be an http(s) or file URL, not {url!r}")
    sha = r.get("sha256", str, required=True).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise r.fail("sha256", f"must be 64 hex digits, not {sha!r}")
    if main:
        strip = r.get("strip", int, 1)
        if not 0 <= strip <= STRIP_MAX:
            raise r.fail("strip", f"must be a whole number from 0 to {STRIP_MAX}, not {strip!r}")
        return sources.Fetch(url, sha, strip=strip)
    dest = r.get("dest", str, required=True)
    if dest.startswith("/") or ".." in Path(dest).parts:
        raise r.fail("dest", f"must be a path inside the source tree, not {dest!r}")
    r.check("dest", dest, inputs.relative_path)
    return sources.Fetch(url, sha, dest=dest, deb_data=r.get("deb_data", bool, False))


def load_scenario_file(file: Path) -> Scenario:
    """Parse one scenario file. Raises UsageError naming the file and the bad key."""
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{file}: cannot read scenario: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{file}: not valid TOML: {exc}") from exc
    top = _Reader(file, data)
    name = top.check("name", top.get("name", str, required=True), inputs.slug)
    kind = top.get("kind", str, "compile")
    if kind not in KINDS:
        raise top.fail("kind", f"is {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "dockerfile":
        return _dockerfile_scenario(top, name)
    for key in ("dockerfile", "context", "target", "build_args", "touch"):
        if key in top.data:
            raise top.fail(key, 'belongs to kind = "dockerfile" scenarios')

    src = top.table("source", required=True)
    assert src is not None
    source_dir = None
    if "path" in src.data:
        # The source folder is the scenario's own: inside the folder of its file, after
        # `..` and symlinks are resolved, and with no symlink in it leading out.
        path = src.get("path", str)
        source_dir = Path(src.check("path", path, lambda p: str(inputs.inside(file.parent, p))))
        if not source_dir.is_dir():
            raise src.fail("path", f"{src.data['path']!r} is not a folder")
        if outside := inputs.links_out(source_dir):
            link, target = outside[0]
            raise src.fail("path", f"{path!r} holds a symlink leading out: {link} -> {target}")
    main = _fetch(src, main=True) if "url" in src.data else None
    if main is None and ("sha256" in src.data or "strip" in src.data):
        raise src.fail("url", "is missing (sha256 and strip describe a download)")
    extras = []
    for i, item in enumerate(src.get("fetch", list, [])):
        if not isinstance(item, dict):
            raise src.fail(f"fetch[{i}]", "must be a table ([[source.fetch]])")
        extras.append(_fetch(_Reader(file, item, "source.fetch."), main=False))
    if source_dir is None and main is None and not extras:
        raise UsageError(f"{file}: missing key source.path or source.url (one is needed)")

    try:
        platforms = tuple(parse_platform(p) for p in top.strings("platforms", required=True) or ())
    except UsageError as exc:
        raise UsageError(f"{file}: key platforms: {exc}") from exc

    cross = top.table("cross") or _Reader(file, {}, "cross.")
    test = top.table("test") or _Reader(file, {}, "test.")
    smoke = top.table("smoke", required=True)
    assert smoke is not None
    smoke_command = smoke.strings("command", required=True) or ()
    if not smoke_command:
        raise smoke.fail("command", "must not be empty (it is the image's CMD)")
    common: dict[str, Any] = {
        "name": name,
        "description": top.get("description", str, ""),
        "file": file.resolve(),
        "source_dir": source_dir,
        "platforms": platforms,
        "base_image": top.check(
            "base_image", top.get("base_image", str, DEFAULT_BASE_IMAGE), inputs.image_ref
        ),
        "smoke_command": smoke_command,
        "smoke_expect": smoke.get("expect", str, required=True),
        "kind": kind,
        "cross_packages": cross.packages("packages"),
        "cross_env": cross.env("env"),
        "cross_run": cross.get("run", str, ""),
        "test_command": test.strings("command") or (),
        "test_expect": test.get("expect", str, ""),
        "source_main": main,
        "source_fetch": tuple(extras),
    }
    if kind == "image":
        return _image_scenario(top, common)
    return _compile_scenario(top, common)


def _compile_scenario(top: _Reader, common: dict[str, Any]) -> Scenario:
    toolchain = top.table("toolchain", required=True)
    build = top.table("build", required=True)
    assert toolchain is not None and build is not None
    arts = top.get("artifacts", dict, required=True)
    artifacts = []
    for built, path in arts.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise top.fail(f"artifacts.{_key(built)}", "must be an absolute image path")
        top.check(f"artifacts.{_key(built)}", built, inputs.relative_path)
        top.check(f"artifacts.{_key(built)}", path, inputs.image_path)
        artifacts.append(Artifact(built, path))
    if not artifacts:
        raise top.fail("artifacts", "must name at least one file")
    if "image" in top.data:
        raise top.fail("image", 'belongs to kind = "image" scenarios')
    touch = build.get("touch", str, "")
    if touch:
        build.check("touch", touch, inputs.relative_path)
    scenario = Scenario(
        packages=toolchain.packages("packages", required=True) or (),
        build_command=build.get("command", str, required=True),
        artifacts=tuple(artifacts),
        touch=touch,
        touch_comment=build.get("touch_comment", str, "/* archbench warm build {nonce} */"),
        build_env=build.env("env"),
        needs_target_code=build.get("needs_target_code", bool, False),
        **common,
    )
    # A fetched tree is checked once it is assembled (check_touch), before any build.
    src_dir = scenario.source_dir
    if touch and not scenario.fetched and (src_dir is None or not (src_dir / touch).is_file()):
        raise build.fail("touch", f"names {touch!r}, not a file in the local source folder")
    if touch and src_dir is not None and not scenario.fetched:
        scenario.check_touch(src_dir)
    return scenario


def _image_scenario(top: _Reader, common: dict[str, Any]) -> Scenario:
    for key in ("toolchain", "build"):
        if key in top.data:
            raise top.fail(key, 'belongs to kind = "compile" scenarios; use [image]')
    image = top.table("image", required=True)
    assert image is not None
    paths = top.strings("artifacts", required=True) or ()
    for path in paths:
        if not path.startswith("/"):
            raise top.fail("artifacts", f"must list absolute image paths, not {path!r}")
        top.check("artifacts", path, inputs.image_path)
    add = image.get("add", dict, {})
    for src, dest in add.items():
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise image.fail(f"add.{_key(src)}", "must be an absolute image path")
        image.check(f"add.{_key(src)}", src, lambda p: inputs.relative_path(p, build_args=True))
        image.check(f"add.{_key(src)}", dest, inputs.image_path)
    return Scenario(
        packages=(),
        build_command="",
        artifacts=tuple(Artifact("", p) for p in paths),
        image=ImageSteps(
            packages=image.packages("packages") or (),
            run=image.get("run", str, ""),
            add=tuple(add.items()),
            env=image.env("env"),
        ),
        **common,
    )


def _dockerfile_scenario(top: _Reader, name: str) -> Scenario:
    """Return a `kind = "dockerfile"` scenario: the keys dockerfile (default
    Dockerfile), context (default the Dockerfile's folder), target, build_args,
    platforms, artifacts (absolute image paths), smoke and touch; paths are relative to
    the scenario file's folder and stay inside it."""
    from bench.scenarios import userfile

    file = top.file
    for key in ("source", "toolchain", "build", "image", "cross", "base_image"):
        if key in top.data:
            raise top.fail(key, 'does not belong to kind = "dockerfile" (the Dockerfile says it)')

    def local(key: str, default: str) -> Path:
        value = top.get(key, str, default)
        return Path(top.check(key, value, lambda p: str(inputs.inside(file.parent, p))))

    args = top.get("build_args", dict, {})
    for key, value in args.items():
        if not isinstance(value, str):
            raise top.fail(f"build_args.{_key(key)}", "must be a string")
    try:
        build_args = tuple(userfile.build_arg(f"{k}={v}") for k, v in args.items())
    except UsageError as exc:
        raise UsageError(f"{file}: key build_args: {exc}") from None
    try:
        platforms = tuple(parse_platform(p) for p in top.strings("platforms") or ())
    except UsageError as exc:
        raise UsageError(f"{file}: key platforms: {exc}") from exc
    smoke = top.table("smoke")
    target = top.get("target", str, "")
    if target:
        top.check("target", target, inputs.name)
    return userfile.dockerfile_scenario(
        local("dockerfile", "Dockerfile"),
        context=local("context", "."),
        target=target,
        build_args=build_args,
        platforms=platforms,
        name=name,
        description=top.get("description", str, ""),
        artifacts=top.strings("artifacts") or (),
        smoke_command=(smoke.strings("command", required=True) or ()) if smoke else (),
        smoke_expect=smoke.get("expect", str, "") if smoke else "",
        touch=top.get("touch", str, ""),
    )


def shipped_scenarios() -> Path:
    """Return the folder of the scenarios installed with archbench.

    They are the package data `bench.shipped` (the repository's top-level scenarios/
    folder, mapped by pyproject.toml); run from a source tree without an install, the
    checkout's scenarios/ folder.
    """
    spec = importlib.util.find_spec("bench.shipped")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "scenarios"


def scenario_roots() -> list[Path]:
    """Return the folders searched for a scenario by name, in order: ./scenarios, then
    the shipped scenarios (once, when they are the same folder)."""
    roots = [LOCAL_SCENARIOS.resolve(), shipped_scenarios().resolve()]
    return list(dict.fromkeys(roots))


def available_scenarios(root: Path | None = None) -> list[str]:
    """Return the names of the scenarios under `root` (folders with a scenario file);
    without `root`, under every folder of `scenario_roots()`."""
    roots = [root] if root is not None else scenario_roots()
    return sorted({p.parent.name for r in roots for p in r.glob(f"*/{SCENARIO_FILE}")})


def resolve_scenario(ref: str, root: Path | None = None) -> Scenario:
    """Return the scenario named `ref` under `root` (default: the first of
    `scenario_roots()` that holds it), or the scenario file at path `ref`.

    Raises UsageError naming the bad value and the valid names.
    """
    candidate = Path(ref)
    if candidate.suffix == ".toml" or candidate.is_dir() or "/" in ref:
        file = candidate / SCENARIO_FILE if candidate.is_dir() else candidate
        if file.is_file():
            return load_scenario_file(file)
        raise UsageError(f"no scenario file at {ref!r}")
    for folder in [root] if root is not None else scenario_roots():
        file = folder / ref / SCENARIO_FILE
        if file.is_file():
            return load_scenario_file(file)
    raise UsageError(f"unknown scenario {ref!r}; valid: {', '.join(available_scenarios(root))}")
