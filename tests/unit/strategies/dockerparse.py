"""A tiny Dockerfile reader for tests: stages, their instructions, RUN steps and case arms.

It reads what archbench writes (no heredocs, no escape directive), the way BuildKit
does: continuation lines joined into one instruction, blank and comment lines dropped,
`--flag=value` options split off the arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str
    lines: tuple[str, ...]  # the physical lines, continuation backslashes removed

    def steps(self) -> list[str]:
        """A RUN's `&&` steps as archbench writes them: one per continuation line that
        starts with `&&` (a step may span lines, as a multi-line case does)."""
        text = "\n".join(self.lines)
        text = text.split(" ", 1)[1] if text.startswith(self.keyword) else text
        for flag, value in self.flags.items():
            text = text.replace(f"--{flag}={value}", "", 1)
        return [s.strip() for s in re.split(r"\n\s*&& ", text.strip())]

    def case_arms(self) -> dict[str, str]:
        """The arms of the `case "$TARGETARCH/$TARGETVARIANT"` in this instruction:
        pattern -> what it runs (without the closing `;;`)."""
        joined = " ".join(line.strip() for line in self.lines)
        body = joined.split('case "$TARGETARCH/$TARGETVARIANT" in', 1)[1].split(" esac", 1)[0]
        return {m[0]: m[1].strip() for m in re.findall(r"(\S+)\) (.*?) ;;", body)}


@dataclass
class Stage:
    base: str
    name: str
    platform: str
    instructions: list[Instruction] = field(default_factory=list)

    def keywords(self) -> list[str]:
        return [i.keyword for i in self.instructions]

    def only(self, keyword: str) -> Instruction:
        """The one instruction of this kind in the stage."""
        found = [i for i in self.instructions if i.keyword == keyword]
        assert len(found) == 1, f"{len(found)} {keyword} in stage {self.name or self.base}"
        return found[0]


def instructions(text: str) -> list[Instruction]:
    """Return the Dockerfile's instructions in order."""
    out: list[Instruction] = []
    pending: list[str] = []
    for line in text.split("\n"):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].rstrip())
            continue
        lines = (*pending, line)
        pending = []
        keyword, _, rest = " ".join(lines).strip().partition(" ")
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            option, _, rest = rest.partition(" ")
            name, _, value = option[2:].partition("=")
            flags[name] = value
            rest = rest.lstrip()
        out.append(Instruction(keyword.upper(), flags, rest.strip(), lines))
    assert not pending, "a continuation line ends the file"
    return out


def stages(text: str) -> list[Stage]:
    """Return the Dockerfile's stages; raises AssertionError when text precedes a FROM."""
    found: list[Stage] = []
    for inst in instructions(text):
        if inst.keyword == "FROM":
            base, _, name = inst.args.partition(" AS ")
            found.append(Stage(base.strip(), name.strip(), inst.flags.get("platform", "")))
        else:
            assert found, f"{inst.keyword} before any FROM"
            found[-1].instructions.append(inst)
    return found


def stage(text: str, name: str) -> Stage:
    """The stage called `name`."""
    (found,) = [s for s in stages(text) if s.name == name]
    return found
