"""The local registry: Debian's docker-registry (distribution) on loopback, and a
minimal client of the OCI distribution HTTP API for reading what was pushed."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import inputs
from bench.errors import RegistryUnavailable, UsageError
from bench.paths import STATE_DIR
from bench.tools import proc

DEFAULT_REGISTRY = "127.0.0.1:5000"
BINARY = "docker-registry"
CONFIG_PATH = Path("/etc/archbench/registry.yml")
STORAGE_DIR = STATE_DIR / "registry"

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def registry_address(cli_value: str | None = None) -> str:
    """Return the registry HOST:PORT: the flag, else $ARCHBENCH_REGISTRY, else the default.

    Raises UsageError unless it is HOST:PORT with a port from 1 to 65535 (no scheme,
    path, blank or control character).
    """
    env = os.environ.get("ARCHBENCH_REGISTRY")
    value = cli_value or env or DEFAULT_REGISTRY
    try:
        return inputs.registry(value)
    except ValueError as exc:
        where = " (from $ARCHBENCH_REGISTRY)" if not cli_value and env else ""
        raise UsageError(f"{exc}{where}") from None


def require_loopback(address: str) -> str:
    """Return `address` when it is a valid HOST:PORT on loopback (localhost,
    127.0.0.0/8 or ::1): the only place archbench's own plain-HTTP registry listens.

    Raises UsageError otherwise.
    """
    try:
        inputs.registry(address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not inputs.is_loopback(address):
        raise UsageError(
            f"registry address {address!r} is not on loopback; archbench binds "
            "its registry to 127.0.0.0/8, ::1 or localhost only"
        )
    return address


def storage_dir(address: str) -> Path:
    """Return where the registry archbench runs at `address` keeps its images: one
    folder per address, so that two registries never share (or collect) each other's."""
    if address == DEFAULT_REGISTRY:
        return STORAGE_DIR
    return STORAGE_DIR.with_name("registry-" + address.replace(":", "-"))


def config_text(address: str, storage: Path = STORAGE_DIR) -> str:
    """Return a distribution config listening on `address` (loopback only) over HTTP.

    Raises UsageError for an address off loopback, or a value that could add a line.
    """
    require_loopback(address)
    if inputs.has_control(str(storage)):
        raise UsageError(f"registry storage {str(storage)!r} cannot be written into its config")
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: {_yaml_scalar(address)}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
    )


def _yaml_scalar(text: str) -> str:
    # A bracketed IPv6 host would read as a YAML list: quote it (nothing else needs it).
    return f'"{text}"' if text.startswith("[") else text


def ping(address: str, timeout: float = 3) -> bool:
    """Return whether `GET /v2/` answers 200 at `address`."""
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=timeout) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry serves it."""

    digest: str
    media_type: str
    body: dict[str, Any]
    raw: bytes = b""


def split_ref(ref: str) -> tuple[str, str, str]:
    """Split HOST:PORT/REPO[:TAG|@DIGEST] into (host, repo, tag-or-digest)."""
    host, _, rest = ref.partition("/")
    if "@" in rest:
        repo, _, reference = rest.partition("@")
    elif ":" in rest:
        repo, _, reference = rest.rpartition(":")
    else:
        repo, reference = rest, "latest"
    if not repo:
        raise UsageError(f"bad image reference {ref!r}; expected HOST:PORT/REPO[:TAG|@DIGEST]")
    return host, repo, reference


def get_manifest(ref: str, timeout: float = 30) -> Manifest:
    """Fetch the manifest or index of `ref` over plain HTTP.

    Raises RegistryUnavailable when the registry does not answer, and LookupError when
    it answers that the reference does not exist.
    """
    host, repo, reference = split_ref(ref)
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
    )
    raw, headers = _fetch(req, f"{ref}: not found in the registry", host, timeout)
    media = headers.get("Content-Type", "")
    digest = headers.get("Docker-Content-Digest") or ("sha256:" + hashlib.sha256(raw).hexdigest())
    body: dict[str, Any] = json.loads(raw)
    return Manifest(digest, media or str(body.get("mediaType", "")), body, raw)


def put_manifest(ref: str, raw: bytes, media_type: str, timeout: float = 30) -> str:
    """PUT `raw` as the manifest of `ref` (a tag or digest); return the stored digest.

    Raises RegistryUnavailable when the registry refuses or does not answer.
    """
    host, repo, reference = split_ref(ref)
    req = urllib.request.Request(
        f"http://{host}/v2/{repo}/manifests/{reference}",
        data=raw,
        method="PUT",
        headers={"Content-Type": media_type},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return str(resp.headers.get("Docker-Content-Digest", ""))
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnavailable(f"registry {host} refused manifest {ref}: {exc}") from exc


def retag(repo_ref: str, digest: str, tag: str) -> None:
    """Point `<repo>:<tag>` at the manifest `<repo>@<digest>`, byte for byte."""
    manifest = get_manifest(f"{repo_ref}@{digest}")
    put_manifest(f"{repo_ref}:{tag}", manifest.raw, manifest.media_type)


def get_blob(host: str, repo: str, digest: str, timeout: float = 120) -> bytes:
    """Return the blob `digest` of `repo`, checked against its digest.

    Raises RegistryUnavailable, or LookupError when the registry does not have it.
    """
    url = f"http://{host}/v2/{repo}/blobs/{digest}"
    data, _ = _fetch(
        urllib.request.Request(url), f"{host}/{repo}@{digest}: blob not found", host, timeout
    )
    algo, _, want = digest.partition(":")
    if algo == "sha256" and hashlib.sha256(data).hexdigest() != want:
        raise RegistryUnavailable(f"blob {digest} from {host}/{repo} does not match its digest")
    return data


def has_blob(host: str, repo: str, digest: str, timeout: float = 30) -> bool:
    """Whether `repo` of the registry at `host` holds the blob `digest`."""
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/{digest}", method="HEAD")
    try:
        _fetch(req, "", host, timeout)
    except LookupError:
        return False
    return True


def put_blob(host: str, repo: str, digest: str, data: bytes, timeout: float = 600) -> None:
    """Upload `data` as the blob `digest` of `repo` in one request (POST, then a
    monolithic PUT). Raises RegistryUnavailable when the registry refuses."""
    start = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST")
    try:
        with urllib.request.urlopen(start, timeout=timeout) as resp:
            location = str(resp.headers.get("Location", ""))
        if location.startswith("/"):
            location = f"http://{host}{location}"
        sep = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{sep}digest={digest}",
            data=data,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(put, timeout=timeout):
            pass
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnavailable(
            f"registry {host} refused blob {digest} of {repo}: {exc}"
        ) from exc


def _fetch(
    req: urllib.request.Request, not_found: str, host: str, timeout: float
) -> tuple[bytes, Any]:
    """GET `req`; return the body and the response headers.

    Raises LookupError(`not_found`) on 404 and RegistryUnavailable on any other error
    answer or when the registry does not answer.
    """
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise LookupError(not_found) from exc
        raise RegistryUnavailable(
            f"registry {host} answered {exc.code} for {req.full_url}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnavailable(f"registry {host} does not answer: {exc}") from exc


def repositories(storage: Path = STORAGE_DIR) -> list[str]:
    """Return every repository stored under `storage` (filesystem driver layout)."""
    root = storage / "docker" / "registry" / "v2" / "repositories"
    found = []
    for manifests in root.glob("**/_manifests"):
        found.append(str(manifests.parent.relative_to(root)))
    return sorted(found)


def stored_manifests(repo: str, storage: Path = STORAGE_DIR) -> list[str]:
    """Return the digests of every manifest revision `repo` holds, tagged or not.

    The HTTP API lists tags only; a tag moved by a later push leaves its old manifest
    behind, reachable by digest, and only the storage shows it.
    """
    revisions = (
        storage
        / "docker"
        / "registry"
        / "v2"
        / "repositories"
        / repo
        / "_manifests"
        / "revisions"
        / "sha256"
    )
    if not revisions.is_dir():
        return []
    return sorted(f"sha256:{p.name}" for p in revisions.iterdir() if (p / "link").exists())


def delete_manifest(address: str, repo: str, digest: str, timeout: float = 30) -> None:
    """Delete the manifest `repo@digest` (and every tag on it) from the registry.

    Raises RegistryUnavailable when the registry refuses or does not answer.
    """
    req = urllib.request.Request(f"http://{address}/v2/{repo}/manifests/{digest}", method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return
        raise RegistryUnavailable(
            f"registry {address} refused to delete {repo}@{digest}: {exc.code}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnavailable(f"registry {address} does not answer: {exc}") from exc


def garbage_collect(config: Path, log_path: Path | None = None) -> str:
    """Run the registry's garbage collector over `config`'s storage; return its output.

    Deleted manifests' blobs are freed only by this pass. Raises CommandFailed.
    """
    done = proc.run(
        [BINARY, "garbage-collect", "--delete-untagged", str(config)],
        timeout=900,
        check=True,
        log_path=log_path,
    )
    return done.stdout
