"""A Dockerfile read as it is written: its stages, their instructions with line numbers,
where each stage runs ($BUILDPLATFORM or the target) and the stages a target needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UsageError
from bench.platforms import Platform

# Instructions that make a BuildKit vertex of their own (`[stage n/m] RUN ...`).
VERTEX_KEYWORDS = frozenset({"FROM", "RUN", "COPY", "ADD", "WORKDIR"})
_DIRECTIVE = re.compile(r"^#\s*(\w+)\s*=\s*(\S+)\s*$")
_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][\w]*)\2")
_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?P<mod>:[-+][^}]*)?\}|(?P<bare>[A-Za-z_]\w*))")
# The automatic platform ARGs BuildKit defines for every build.
PLATFORM_ARGS = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
)


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), its arguments with line continuations
    joined, and the line it starts on (1-based)."""

    line: int
    keyword: str
    args: str

    @property
    def text(self) -> str:
        """The instruction as BuildKit names it: `RUN make -j4`."""
        return f"{self.keyword} {self.args}".strip()

    def flag(self, name: str) -> list[str]:
        """Return the values of `--name=value` flags at the head of the arguments."""
        return [v for k, v in _flags(self.args) if k == name]


@dataclass(frozen=True)
class Stage:
    """One build stage: `FROM [--platform=P] base [AS name]` and what follows it."""

    index: int
    name: str  # the AS name, or '' (BuildKit then names it stage-<index>)
    base: str
    platform: str  # the --platform value as written, or ''
    line: int
    instructions: tuple[Instruction, ...]
    parent: int | None  # the stage it builds on, when `base` names an earlier stage
    needs: tuple[int, ...]  # stages it copies or mounts from (COPY --from, RUN --mount from=)

    @property
    def label(self) -> str:
        """The stage's name as BuildKit's vertex names show it."""
        return self.name or f"stage-{self.index}"

    @property
    def runs(self) -> tuple[Instruction, ...]:
        """The stage's RUN instructions."""
        return tuple(i for i in self.instructions if i.keyword == "RUN")


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: the global ARGs (before the first FROM) and the stages."""

    path: Path
    global_args: tuple[tuple[str, str | None], ...]
    stages: tuple[Stage, ...]
    build_args: tuple[tuple[str, str], ...] = field(default=())
    syntax: str = ""  # the `# syntax=` frontend image, if any

    def stage(self, ref: str) -> Stage:
        """Return the stage named `ref` (an AS name or an index). Raises UsageError naming
        the valid ones."""
        found = _find_stage(self.stages, ref)
        if found is None:
            valid = ", ".join(s.label for s in self.stages)
            raise UsageError(f"{self.path}: no stage {ref!r}; valid: {valid}")
        return self.stages[found]

    def final(self, target: str | None = None) -> Stage:
        """Return the stage a build of `target` (default: the last stage) produces."""
        return self.stage(target) if target else self.stages[-1]

    def chain(self, target: str | None = None) -> tuple[Stage, ...]:
        """Return every stage a build of `target` runs, in file order: the final stage,
        the stages it builds on and those it copies or mounts from, transitively."""
        todo = [self.final(target).index]
        seen: set[int] = set()
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            s = self.stages[i]
            todo.extend(([s.parent] if s.parent is not None else []) + list(s.needs))
        return tuple(s for s in self.stages if s.index in seen)

    def arg_defaults(self) -> dict[str, str]:
        """Return the global ARGs' values: --build-arg values over the defaults."""
        values = {k: v for k, v in self.global_args if v is not None}
        values.update(dict(self.build_args))
        return values

    def on_build_platform(self, stage: Stage) -> bool:
        """Whether `stage` runs on $BUILDPLATFORM: its own --platform says so (directly
        or through a global ARG), or it has none and builds on a stage that does."""
        s: Stage | None = stage
        while s is not None:
            if s.platform:
                value = expand(s.platform, self.arg_defaults(), keep_unknown=True)
                return "BUILDPLATFORM" in value or "BUILDOS" in value or "BUILDARCH" in value
            s = self.stages[s.parent] if s.parent is not None else None
        return False

    def base_images(self, target: str | None, platform: Platform, build: Platform) -> list[str]:
        """Return the external images the stages of `target` start from, with ARGs
        expanded for `platform` built on `build` (stages named as bases are left out)."""
        values = {**platform_args(platform, build), **self.arg_defaults()}
        out = []
        for s in self.chain(target):
            if s.parent is None and s.base.lower() != "scratch":
                image = expand(s.base, values)
                if image not in out:
                    out.append(image)
        return out


@dataclass(frozen=True)
class DockerfileSpec:
    """What `docker buildx build` is given for a user's Dockerfile."""

    path: Path
    context: Path
    target: str = ""
    build_args: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()
    ssh: tuple[str, ...] = ()

    def parsed(self) -> Dockerfile:
        """Return the parsed Dockerfile. Raises UsageError when it cannot be read."""
        return parse_file(self.path, dict(self.build_args))


def hub_repository(image: str) -> str | None:
    """Return `library/debian:bookworm` for a Docker Hub reference like `debian:bookworm`
    (None for an image of another registry)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return None if first != "docker.io" else hub_repository(image.partition("/")[2])
    name = image if sep else f"library/{image}"
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def platform_args(platform: Platform, build: Platform) -> dict[str, str]:
    """Return BuildKit's automatic platform ARGs for `platform` built on `build`."""
    return {
        "TARGETPLATFORM": platform.name,
        "TARGETOS": platform.os,
        "TARGETARCH": platform.architecture,
        "TARGETVARIANT": platform.variant,
        "BUILDPLATFORM": build.name,
        "BUILDOS": build.os,
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
    }


def expand(text: str, values: dict[str, str], *, keep_unknown: bool = False) -> str:
    """Return `text` with `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}`
    replaced from `values`. An unknown name becomes '' (as BuildKit expands it), or is
    kept as written with `keep_unknown`."""

    def one(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("bare")
        mod = m.group("mod") or ""
        value = values.get(name)
        if mod.startswith(":-"):
            return value if value else mod[2:]
        if mod.startswith(":+"):
            return mod[2:] if value else ""
        if value is None:
            return m.group(0) if keep_unknown else ""
        return value

    return _VAR.sub(one, text)


def _flags(args: str) -> list[tuple[str, str]]:
    """Return the leading `--name=value` (or bare `--name`) flags of an instruction."""
    out = []
    for word in args.split():
        if not word.startswith("--"):
            break
        name, _, value = word[2:].partition("=")
        out.append((name, value))
    return out


def _find_stage(stages: tuple[Stage, ...] | list[Stage], ref: str) -> int | None:
    for s in stages:
        if s.name and s.name.lower() == ref.lower():
            return s.index
    if ref.isdigit() and int(ref) < len(stages):
        return int(ref)
    return None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Return (first line number, instruction) of each logical line: continuations
    joined, comments and blank lines dropped, heredoc bodies kept in their line."""
    escape = "\\"
    lines = text.splitlines()
    for raw in lines:
        m = _DIRECTIVE.match(raw)
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2)
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        start = i + 1
        i += 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        parts = []
        cur = raw.rstrip()
        while cur.endswith(escape):
            parts.append(cur[: -len(escape)].strip())
            # Comment and blank lines inside a continued instruction are skipped.
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i >= len(lines):
                cur = ""
                break
            cur = lines[i].rstrip()
            i += 1
        parts.append(cur.strip())
        logical = " ".join(p for p in parts if p)
        for doc in _HEREDOC.finditer(logical):
            end = doc.group(3)
            body = []
            while i < len(lines):
                line = lines[i]
                i += 1
                if (line.lstrip("\t") if doc.group(1) else line) == end:
                    break
                body.append(line)
            logical += "\n" + "\n".join(body) + "\n" + end
        out.append((start, logical))
    return out


def parse(
    text: str, path: Path = Path("Dockerfile"), build_args: dict[str, str] | None = None
) -> Dockerfile:
    """Return the parsed Dockerfile `text` (`path` is only named in errors).

    Raises UsageError naming the file and line when an instruction comes before the
    first FROM (other than ARG), a FROM has no image, or there is no FROM at all.
    """
    global_args: list[tuple[str, str | None]] = []
    stages: list[Stage] = []
    head: tuple[int, str, str, str, int | None] | None = None  # line, name, base, platform, parent
    body: list[Instruction] = []

    def close() -> None:
        if head is None:
            return
        line, name, base, platform, parent = head
        needs: list[int] = []
        for ins in body:
            refs = ins.flag("from") if ins.keyword in ("COPY", "ADD") else []
            if ins.keyword == "RUN":
                for mount in ins.flag("mount"):
                    refs += [kv[5:] for kv in mount.split(",") if kv.startswith("from=")]
            for ref in refs:
                found = _find_stage(stages, expand(ref, {k: v or "" for k, v in global_args}))
                if found is not None and found not in needs:
                    needs.append(found)
        stages.append(
            Stage(len(stages), name, base, platform, line, tuple(body), parent, tuple(needs))
        )

    for line, logical in _logical_lines(text):
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            close()
            body = []
            words = args.split()
            flags = dict(_flags(args))
            rest = words[len(_flags(args)) :]
            if not rest:
                raise UsageError(f"{path}:{line}: FROM names no image")
            base = rest[0]
            name = rest[2] if len(rest) >= 3 and rest[1].upper() == "AS" else ""
            parent = _find_stage(stages, base) if not base.isdigit() else None
            head = (line, name, base, flags.get("platform", ""), parent)
            continue
        if head is None:
            if keyword != "ARG":
                raise UsageError(f"{path}:{line}: {keyword} before the first FROM")
            for word in args.split():
                key, eq, value = word.partition("=")
                global_args.append((key, value.strip("\"'") if eq else None))
            continue
        body.append(Instruction(line, keyword, args))
    close()
    if not stages:
        raise UsageError(f"{path}: no FROM instruction; a Dockerfile needs at least one")
    syntax = ""
    for raw in text.splitlines():
        m = _DIRECTIVE.match(raw)
        if not m:
            break
        if m.group(1).lower() == "syntax":
            syntax = m.group(2)
    return Dockerfile(
        path, tuple(global_args), tuple(stages), tuple((build_args or {}).items()), syntax
    )


def parse_file(path: Path, build_args: dict[str, str] | None = None) -> Dockerfile:
    """Return the parsed Dockerfile at `path`. Raises UsageError when it cannot be read
    or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the Dockerfile: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: the Dockerfile is not UTF-8 text") from exc
    return parse(text, path, build_args)


_VERTEX = re.compile(
    r"^\[(?:(?P<platform>[a-z0-9]+/[\w./-]+) )?(?:(?P<stage>[\w.-]+) )?"
    r"(?P<step>\d+)/(?P<of>\d+)\] (?P<what>.*)$",
    re.S,
)


@dataclass(frozen=True)
class VertexRef:
    """Which instruction a BuildKit vertex name (`[linux/arm64 build 3/5] RUN make`)
    stands for."""

    stage: str
    step: int
    text: str
    platform: str = ""


def vertex_ref(name: str) -> VertexRef | None:
    """Return the stage, step and instruction text of a vertex name, or None for a
    vertex that is no instruction (context transfer, export, metadata)."""
    m = _VERTEX.match(name)
    if not m:
        return None
    return VertexRef(
        m.group("stage") or "", int(m.group("step")), m.group("what"), m.group("platform") or ""
    )


def instruction_for(df: Dockerfile, ref: VertexRef) -> tuple[Stage, Instruction] | None:
    """Return the stage and instruction a vertex stands for: the stage by its label
    (or the only stage, for an unnamed one-stage file) and its step-th vertex-making
    instruction (step 1 is FROM, for a stage on an image)."""
    stage = next((s for s in df.stages if s.label == ref.stage), None)
    if stage is None and not ref.stage and len(df.stages) == 1:
        stage = df.stages[0]
    if stage is None:
        return None
    vertexed = [i for i in stage.instructions if i.keyword in VERTEX_KEYWORDS]
    if stage.parent is None:
        # A stage on an image counts its FROM as step 1; one on another stage does not.
        vertexed.insert(0, Instruction(stage.line, "FROM", stage.base))
    if 1 <= ref.step <= len(vertexed):
        return stage, vertexed[ref.step - 1]
    return None
