"""What a value from a scenario file or a flag may hold, checked where it enters.

Each check returns the value (sometimes normalised) or raises ValueError with a short
reason that names the value; the scenario reader and the command line add the file and
key, or the flag, to make the usual one-line error.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import posixpath
import re
from collections.abc import Callable
from pathlib import Path

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: any of them
# could end a Dockerfile line, a shell word, a YAML line or a terminal row.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SLUG = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
SLUG_MAX = 64
# Characters a path may hold where it reaches a Dockerfile COPY/ADD or a shell word.
_PATH_PART = re.compile(r"[A-Za-z0-9._+@%=,~-]+")
# ${TARGETARCH} and ${TARGETVARIANT} are BuildKit's own ARGs, expanded in an ADD source.
_BUILD_ARG = re.compile(r"\$\{TARGET(?:ARCH|VARIANT)\}|\$TARGET(?:ARCH|VARIANT)\b")
_PACKAGE = re.compile(
    r"[a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+:~-]+)?(?:/[a-z0-9.-]+)?"
)
_IMAGE_REF = re.compile(r"[A-Za-z0-9{][A-Za-z0-9._/:@{}-]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# A line continuation (backslash, newline) in a multi-line shell command: BuildKit's
# parser and /bin/sh both drop the pair, so folding it out keeps the command's meaning.
_CONTINUATION = re.compile(r"\\\r?\n")


def has_control(text: str) -> bool:
    """Return whether `text` holds a control character (newline included)."""
    return _CONTROL.search(text) is not None


def one_line(value: str) -> str:
    """Return `value` when it holds no control character (newline, tab, CR, ESC ...).

    Raises ValueError naming the first one found.
    """
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"holds a control character ({found.group()!r}) in {value!r}")
    return value


def text_lines(value: str) -> str:
    """Return `value` when it holds no control character other than newline (text that
    is matched or shown, never written into a Dockerfile or a shell command)."""
    found = _CONTROL_BUT_NEWLINE.search(value)
    if found:
        raise ValueError(f"holds a control character ({found.group()!r}) in {value!r}")
    return value


def shell_command(value: str) -> str:
    """Return a shell command as one Dockerfile line: line continuations (backslash,
    newline) folded out and surrounding blanks stripped.

    Raises ValueError for a command with any other control character, a bare newline
    included (it would start a Dockerfile instruction of its own).
    """
    folded = _CONTINUATION.sub("", value).strip()
    if "\n" in folded:
        raise ValueError(
            f"must be one line (join the lines with && or end them with a backslash), not {value!r}"
        )
    return one_line(folded)


def slug(value: str) -> str:
    """Return `value` when it is a slug (lowercase letters and digits, single . _ - between
    them, at most SLUG_MAX characters): it names images, tags and folders."""
    if not _SLUG.fullmatch(value) or len(value) > SLUG_MAX:
        raise ValueError(
            f"must be a slug (a-z, 0-9, single . _ - between them, at most {SLUG_MAX} "
            f"characters), not {value!r}"
        )
    return value


def relative_path(value: str, *, build_args: bool = False) -> str:
    """Return `value` when it is a relative path that stays inside its tree: no leading
    `/`, no `..`, no part starting with `-`, only letters, digits and . _ + @ % = , ~ -
    (with `build_args`, also ${TARGETARCH} and ${TARGETVARIANT})."""
    bare = _BUILD_ARG.sub("x", value) if build_args else value
    parts = bare.split("/")
    if (
        not value
        or value.startswith("/")
        or ".." in parts
        or any(p.startswith("-") for p in parts)
        or not all(_PATH_PART.fullmatch(p) for p in parts if p)
    ):
        raise ValueError(
            f"must be a relative path inside the tree (letters, digits, . _ + @ % = , ~ -; "
            f"no .., no leading / or -), not {value!r}"
        )
    return value


def image_path(value: str) -> str:
    """Return `value` when it is an absolute path in an image with no `..` and only the
    characters relative_path allows (a trailing `/` names a folder)."""
    if not value.startswith("/") or value.startswith("//"):
        raise ValueError(f"must be an absolute image path, not {value!r}")
    try:
        relative_path(value[1:] or ".")
    except ValueError:
        raise ValueError(
            f"must be an absolute image path (letters, digits, . _ + @ % = , ~ -; no ..), "
            f"not {value!r}"
        ) from None
    if posixpath.normpath(value) == "/":
        raise ValueError(f"must name a file or folder below /, not {value!r}")
    return value


def inside(root: Path, relative: str) -> Path:
    """Return `root / relative` resolved (symlinks and `..` followed) when it stays
    inside `root` resolved. Raises ValueError otherwise."""
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ValueError(f"{relative!r} resolves to {target}, outside {base}")
    return target


def links_out(root: Path) -> list[tuple[Path, Path]]:
    """Return the symlinks under `root` (not followed) whose target resolves outside it,
    each with where it points."""
    base = root.resolve()
    found = []
    for path in sorted(base.rglob("*")):
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(base):
                found.append((path, target))
    return found


def package(value: str) -> str:
    """Return `value` when it is a Debian package name (optionally :arch, =version or
    /release), which is all apt-get install may receive."""
    if not _PACKAGE.fullmatch(value):
        raise ValueError(f"must be a Debian package name, not {value!r}")
    return value


def env_value(value: str) -> str:
    """Return `value` when it is safe inside a double-quoted shell word and a Dockerfile
    ENV: $NAME and ${NAME...} expansions are kept, while `"`, `\\`, backticks and `$(`
    (which would end the word or run a command) and control characters are refused."""
    one_line(value)
    if any(c in value for c in '"\\`') or "$(" in value:
        raise ValueError(f'must not hold ", \\, ` or $( (it is one shell word), not {value!r}')
    return value


def image_ref(value: str) -> str:
    """Return `value` when it is an image reference a Dockerfile FROM can hold
    (`{suite}` allowed); no blanks or controls."""
    if not _IMAGE_REF.fullmatch(value) or len(value) > 255:
        raise ValueError(f"must be an image reference like debian:bookworm, not {value!r}")
    return value


def name(value: str) -> str:
    """Return `value` when it is a plain name (letters, digits, . _ -), e.g. a builder."""
    if not _NAME.fullmatch(value) or len(value) > 128:
        raise ValueError(f"must be a name of letters, digits, . _ -, not {value!r}")
    return value


def registry(value: str) -> str:
    """Return a registry address HOST:PORT (an IPv6 host in brackets) with a port from 1
    to 65535 and no scheme, path, blank or control character.

    Raises ValueError naming the value.
    """
    bad = ValueError(
        f"bad registry {value!r}; expected HOST:PORT with a port from 1 to "
        "65535 and no scheme or path, e.g. 127.0.0.1:5000"
    )
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise bad
    if port != str(int(port)):
        raise bad
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise bad from None
    elif not _HOST.fullmatch(host) or len(host) > 253:
        raise bad
    return value


def host_name(value: str) -> bool:
    """Return whether `value` is a DNS host name or an IP address (no port, no brackets)."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOST.fullmatch(value)) and len(value) <= 253


def registry_host(address: str) -> str:
    """Return the host part of a checked registry address, without IPv6 brackets."""
    host = address.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def is_loopback(address: str) -> bool:
    """Return whether a checked registry address is on loopback: localhost, 127.0.0.0/8
    or ::1."""
    host = registry_host(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---- command-line value types (argparse turns ArgumentTypeError into a usage error) ----


def int_flag(low: int, high: int) -> Callable[[str], int]:
    """Return an argparse type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        value = text.strip()
        if not value.lstrip("+-").isdigit() or not low <= int(value) <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, not {text!r}"
            )
        return int(value)

    return parse


def float_flag(
    low: float, high: float, *, open_low: bool = False, open_high: bool = False
) -> Callable[[str], float]:
    """Return an argparse type: a finite number from `low` to `high` (each excluded with
    `open_low` / `open_high`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if open_low else value >= low
        below = value < high if open_high else value <= high
        if not math.isfinite(value) or not above or not below:
            side = f"above {low:g}" if open_low else f"from {low:g}"
            top = f"below {high:g}" if open_high else f"up to {high:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number {side} {top}, not {text!r}")
        return value

    return parse


def text_flag(check: Callable[[str], str] | None = None) -> Callable[[str], str]:
    """Return an argparse type: a non-empty value with no control character, passed
    through `check` when given."""

    def parse(text: str) -> str:
        try:
            if not text.strip():
                raise ValueError(f"must not be empty, not {text!r}")
            one_line(text)
            return check(text) if check else text
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def list_flag(check: Callable[[str], str] | None = None) -> Callable[[str], str]:
    """Return an argparse type for a comma list: no empty item, each item checked."""

    def parse(text: str) -> str:
        for item in text.split(","):
            if not item.strip():
                raise argparse.ArgumentTypeError(f"empty item in {text!r}")
            try:
                one_line(item)
                if check:
                    check(item.strip())
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return parse
