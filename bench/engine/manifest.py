"""The run manifest: what a run was asked, which cells it holds and how it ended, as a
typed value that writes (and reads back) the stored `manifest.json` keys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestInfo:
    """What `archbench run` was asked for, as the manifest keeps it."""

    scenarios: list[str]
    scenario_digests: dict[str, str]
    strategies: list[str]
    platforms: list[str]
    sizes: list[int]
    reps: int
    warmup: int = 0
    order: str = "interleaved"
    caches: list[str] = field(default_factory=lambda: ["cold"])
    cpus: list[str] = field(default_factory=list)
    emulators: list[str] = field(default_factory=list)
    retries: int = 0
    registry: str = ""
    base_image: str | None = None
    builder: str | None = None
    nodes: list[str] = field(default_factory=list)
    timeout: float = 3600.0
    attribute: str = "auto"
    needs_target_code: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestInfo:
        """Return the request a stored manifest holds; keys an older run lacks take
        their defaults. Raises KeyError when a key every run wrote is missing."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class ManifestCell:
    """One cell of the matrix, with its availability and recipe digest."""

    cell: str
    scenario: str
    size: int
    strategy: str
    platform: str
    cache: str = "cold"
    cpu: str = ""
    emulator: str = ""
    node: str = ""
    available: bool = True
    reason: str = ""
    recipe_sha256: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestCell:
        """Return a stored cell entry; keys an older run lacks take their defaults.
        Raises KeyError when a key every run wrote is missing."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _without_empty(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Return `data` without those of `keys` whose value is empty: a run without the
    emulator axis or build nodes stores its manifest as runs before them did."""
    return {k: v for k, v in data.items() if k not in keys or v}


@dataclass
class RunManifest:
    """A run's manifest, updated as the run goes (status, statistics, comparison).

    `statistics`, `artifact_comparison` and `finished_at` are None until the run
    reaches them, and are then left out of the stored JSON as before.
    """

    status: str
    started_at: str
    mode: str
    request: RequestInfo
    cells: list[ManifestCell]
    provenance: dict[str, Any]
    statistics: dict[str, dict[str, Any]] | None = None
    artifact_comparison: list[dict[str, Any]] | None = None
    finished_at: str | None = None
    # Why the run stopped early, when it did for a reason other than a signal.
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-ready dict `RunStore.write_manifest` stores (it adds run_id
        and schema_version)."""
        data: dict[str, Any] = {
            "status": self.status,
            "started_at": self.started_at,
            "mode": self.mode,
            # A run without build nodes or pinned emulators writes what runs wrote before.
            "request": _without_empty(asdict(self.request), "emulators", "nodes"),
            "cells": [_without_empty(asdict(c), "emulator", "node") for c in self.cells],
            "provenance": self.provenance,
        }
        for name in ("statistics", "artifact_comparison", "finished_at", "error"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunManifest:
        """Return the manifest of a stored `manifest.json` (as `manifest_from_dict`
        checked it). Runs stored before `mode` existed read as `cli`.

        Raises KeyError when a key every run wrote is missing.
        """
        return cls(
            status=str(data["status"]),
            started_at=str(data["started_at"]),
            mode=str(data.get("mode", "cli")),
            request=RequestInfo.from_dict(data["request"]),
            cells=[ManifestCell.from_dict(c) for c in data["cells"]],
            provenance=dict(data.get("provenance") or {}),
            statistics=data.get("statistics"),
            artifact_comparison=data.get("artifact_comparison"),
            finished_at=data.get("finished_at"),
            error=data.get("error"),
        )
