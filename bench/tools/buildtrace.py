"""BuildKit's solve status as `docker buildx build --progress=rawjson` writes it: a stream
of JSON objects (vertexes with name, started, completed, cached, error; statuses; logs).
Turned here into timed steps and a readable text, without parsing plain progress."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

_STAGE = re.compile(r"^\[(?:(?P<stage>[\w.-]+) )?(?P<step>\d+)/(?P<of>\d+)\] (?P<what>.*)$")


@dataclass(frozen=True)
class Step:
    """One BuildKit vertex that ran (or was taken from the cache)."""

    name: str
    stage: str
    started: str
    seconds: float
    cached: bool
    category: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BuildTrace:
    """What a rawjson stream said: the steps, and a text rendering of logs and errors."""

    steps: tuple[Step, ...]
    text: str
    errors: tuple[str, ...]

    def seconds_by_category(self) -> dict[str, float]:
        """Return the summed step time per category (cached steps count zero)."""
        out: dict[str, float] = {}
        for s in self.steps:
            out[s.category] = out.get(s.category, 0.0) + (0.0 if s.cached else s.seconds)
        return out


def _time(value: str) -> datetime:
    # BuildKit writes nanoseconds; datetime keeps microseconds.
    head, _, frac = value.rstrip("Z").partition(".")
    frac = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{frac}+00:00")


def categorize(name: str) -> tuple[str, str]:
    """Return (stage, category) of a vertex name.

    Categories: toolchain (the toolchain stage's RUNs), compile (the build stage's RUNs),
    copy (COPY/ADD), base-image (FROM and metadata), export (exporting, pushing), and
    internal (context transfer, Dockerfile load).
    """
    if name.startswith(("exporting", "pushing", "naming", "unpacking")):
        return "", "export"
    if "load metadata for" in name or name.startswith("resolve "):
        return "", "base-image"
    if name.startswith("[internal]"):
        return "", "internal"
    m = _STAGE.match(name)
    if not m:
        return "", "other"
    stage = m.group("stage") or ""
    what = m.group("what")
    if what.startswith("FROM"):
        return stage, "base-image"
    if what.startswith(("COPY", "ADD")):
        return stage, "copy"
    if what.startswith("RUN"):
        return stage, "toolchain" if stage == "toolchain" else "compile"
    return stage, "other"


def parse_objects(stream: str) -> list[dict[str, Any]]:
    """Return every JSON object in `stream`, skipping text between them."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    i = 0
    while True:
        i = stream.find("{", i)
        if i < 0:
            return objects
        try:
            obj, end = decoder.raw_decode(stream, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict):
            objects.append(obj)
        i = end


def parse(stream: str) -> BuildTrace:
    """Return the steps and text of a rawjson progress stream (plain text around the
    JSON, such as buildx's final `ERROR:` line, is kept in the text)."""
    vertexes: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    names: dict[str, str] = {}
    lines: list[str] = []
    errors: list[str] = []
    for obj in parse_objects(stream):
        for v in obj.get("vertexes") or []:
            digest = str(v.get("digest", ""))
            names[digest] = str(v.get("name", ""))
            if digest not in vertexes:
                order.append(digest)
            if v.get("completed") or digest not in vertexes:
                vertexes[digest] = v
            if v.get("error"):
                errors.append(f"{v.get('name', '')}: {v['error']}")
                lines.append(f"ERROR: {v.get('name', '')}: {v['error']}")
        for s in obj.get("statuses") or []:
            if s.get("completed"):
                lines.append(f"{s.get('id', '')} done")
        for entry in obj.get("logs") or []:
            try:
                data = base64.b64decode(entry.get("data", "")).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                continue
            prefix = names.get(str(entry.get("vertex", "")), "")
            lines.extend(f"[{prefix}] {line}" if prefix else line for line in data.splitlines())
    plain = re.sub(r"\{.*\}", "", stream, flags=re.S) if "{" in stream else stream
    lines.extend(line for line in plain.splitlines() if line.strip())
    steps = []
    for digest in order:
        v = vertexes[digest]
        if not v.get("started") or not v.get("completed"):
            continue
        seconds = (_time(v["completed"]) - _time(v["started"])).total_seconds()
        stage, category = categorize(str(v.get("name", "")))
        steps.append(
            Step(
                str(v.get("name", "")),
                stage,
                str(v["started"]),
                max(seconds, 0.0),
                bool(v.get("cached", False)),
                category,
            )
        )
    return BuildTrace(tuple(steps), "\n".join(lines), tuple(errors))


_CRASH = re.compile(r"qemu: uncaught target signal (?P<signal>\d+)(?: \((?P<name>[^)]*)\))?")
_STEP = re.compile(r"^(?:\[(?P<step>[^\]]+)\] |ERROR: (?P<failed>.+?): )")


def emulator_crash(text: str) -> tuple[str, str] | None:
    """Return (signal, step) of the first qemu-user crash ("qemu: uncaught target signal
    11 (Segmentation fault)") in a build's text (`BuildTrace.text`, whose log lines are
    prefixed with their step's name): signal as '11 (Segmentation fault)', step as
    BuildKit names it ('' when the line names none). None when no crash is in it."""
    for line in text.splitlines():
        match = _CRASH.search(line)
        if match is None:
            continue
        signal = match["signal"] + (f" ({match['name']})" if match["name"] else "")
        step = _STEP.match(line)
        return signal, (step["step"] or step["failed"]) if step else ""
    return None
