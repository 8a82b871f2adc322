"""binfmt_misc registrations in full (magic, mask, flags), an emulator swapped in for one
cell under a host-wide lock per architecture, and the repair of a swap a killed run left.

binfmt_misc is host-wide: while a cell runs under another emulator, every build for that
architecture on the host would run under it too. So every archbench build that emulates
an architecture holds its lock: shared for the host's emulator, exclusive for a swap.
Before a swap, a journal under /run/archbench keeps the host's registration; it is put
back when the cell ends, however it ends, and by the next archbench command when the run
was killed (SIGKILL) in between.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from bench.errors import HostNotReady
from bench.platforms import host_platform

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
RUN_DIR = Path("/run/archbench")
# Where Debian's binfmt-support keeps each qemu-user-static handler's magic and mask: the
# template of a swap for an architecture the host has no handler for.
DEFAULTS_DIR = Path("/usr/share/binfmts")

Say = Callable[[str], None]


class BinfmtSwapFailed(HostNotReady):
    """An emulator could not be registered in binfmt_misc, or the host's registration could
    not be put back."""


@dataclass(frozen=True)
class Registration:
    """One magic-type binfmt_misc registration: what the kernel shows and takes back."""

    name: str  # qemu-aarch64
    offset: int
    magic: bytes
    mask: bytes
    interpreter: str
    flags: str  # POCF, in any order
    enabled: bool = True

    def line(self) -> str:
        """Return the text that registers this entry: `:name:M:offset:magic:mask:interp:flags`.

        Raises ValueError when a field holds the ':' separator (the kernel would split it).
        """
        if ":" in self.name or ":" in self.interpreter or "/" in self.name:
            raise ValueError(f"binfmt_misc cannot take {self.name!r} -> {self.interpreter!r}")
        return (
            f":{self.name}:M:{self.offset}:{_escape(self.magic)}:{_escape(self.mask)}:"
            f"{self.interpreter}:{self.flags}"
        )

    def swapped(self, interpreter: Path) -> Registration:
        """Return this registration with another interpreter, its flags kept (P: argv[0]
        as the host's has it) plus F: the kernel opens the interpreter now, so it runs
        inside containers whose file system lacks it."""
        flags = self.flags if "F" in self.flags else self.flags + "F"
        return replace(self, interpreter=str(interpreter), flags=flags, enabled=True)


def _escape(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data)


def parse_proc_entry(name: str, text: str) -> Registration:
    """Parse a /proc/sys/fs/binfmt_misc entry's text. Raises ValueError for an entry that is
    not of the magic type (an extension match) or lacks a field."""
    enabled = False
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line == "enabled":
            enabled = True
        elif line.startswith("flags:"):
            fields["flags"] = line.split(":", 1)[1].strip()
        elif " " in line:
            key, value = line.split(" ", 1)
            fields[key] = value.strip()
    if "extension" in fields:
        raise ValueError(f"{name} matches by extension, not by magic")
    if "magic" not in fields or "interpreter" not in fields:
        raise ValueError(f"{name}: no magic or interpreter in {text!r}")
    magic = bytes.fromhex(fields["magic"])
    mask = bytes.fromhex(fields["mask"]) if "mask" in fields else b"\xff" * len(magic)
    return Registration(
        name=name,
        offset=int(fields.get("offset", "0")),
        magic=magic,
        mask=mask,
        interpreter=fields["interpreter"],
        flags=fields.get("flags", ""),
        enabled=enabled,
    )


def parse_binfmts_default(name: str, text: str) -> Registration:
    """Parse a /usr/share/binfmts file (update-binfmts' format: `magic \\x7f\\x45...`,
    `fix_binary yes`). Raises ValueError when it names no magic."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        fields[key] = value.strip()
    if "magic" not in fields or "interpreter" not in fields:
        raise ValueError(f"{name}: no magic or interpreter")

    def unescape(value: str) -> bytes:
        return value.encode("ascii").decode("unicode_escape").encode("latin-1")

    magic = unescape(fields["magic"])
    flags = "".join(
        flag
        for flag, key in (("P", "preserve"), ("O", "open_binary"), ("C", "credentials"))
        if fields.get(key) == "yes"
    )
    flags += "F" if fields.get("fix_binary") == "yes" else ""
    return Registration(
        name=name,
        offset=int(fields.get("offset", "0") or 0),
        magic=magic,
        mask=unescape(fields["mask"]) if "mask" in fields else b"\xff" * len(magic),
        interpreter=fields["interpreter"],
        flags=flags,
    )


def read_entry_text(name: str, root: Path = BINFMT_DIR) -> str | None:
    """Return the kernel's text of the entry `name`, or None when there is none."""
    try:
        return (root / name).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None


def register(reg: Registration, root: Path = BINFMT_DIR) -> None:
    """Register `reg` (and disable it when `reg.enabled` is false). Raises OSError."""
    (root / "register").write_text(reg.line())
    if not reg.enabled:
        (root / reg.name).write_text("0")


def unregister(name: str, root: Path = BINFMT_DIR) -> None:
    """Remove the entry `name`, if there is one. Raises OSError on anything else."""
    # binfmt_misc answers EACCES, not ENOENT, for a write to an entry that does not exist.
    if not (root / name).exists():
        return
    with contextlib.suppress(FileNotFoundError):
        (root / name).write_text("-1")


@dataclass(frozen=True)
class Journal:
    """What a swap must undo: the host's registration before it (None: there was none)."""

    name: str
    original: Registration | None
    original_text: str | None  # the kernel's text of it, to check the restoration
    interpreter: str  # the emulator swapped in
    pid: int
    started: float

    def to_json(self) -> str:
        original = None
        if self.original is not None:
            original = {"line": self.original.line(), "enabled": self.original.enabled}
        return json.dumps(
            {
                "name": self.name,
                "original": original,
                "original_text": self.original_text,
                "interpreter": self.interpreter,
                "pid": self.pid,
                "started": self.started,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Journal:
        """Raises ValueError (or KeyError) on a malformed journal."""
        data = json.loads(text)
        original = None
        if data["original"] is not None:
            original = parse_line(data["original"]["line"], bool(data["original"]["enabled"]))
        return cls(
            name=str(data["name"]),
            original=original,
            original_text=data["original_text"],
            interpreter=str(data["interpreter"]),
            pid=int(data["pid"]),
            started=float(data["started"]),
        )


def parse_line(line: str, enabled: bool = True) -> Registration:
    """Parse a registration line `:name:M:offset:magic:mask:interpreter:flags`. Raises
    ValueError."""
    parts = line.split(":")
    if len(parts) != 8 or parts[0] or parts[2] != "M":
        raise ValueError(f"not a magic registration line: {line!r}")
    _, name, _, offset, magic, mask, interpreter, flags = parts

    def unescape(value: str) -> bytes:
        return value.encode("ascii").decode("unicode_escape").encode("latin-1")

    return Registration(
        name=name,
        offset=int(offset or 0),
        magic=unescape(magic),
        mask=unescape(mask),
        interpreter=interpreter,
        flags=flags,
        enabled=enabled,
    )


def _lock_path(name: str, run_dir: Path) -> Path:
    return run_dir / f"binfmt-{name}.lock"


def _journal_path(name: str, run_dir: Path) -> Path:
    return run_dir / f"binfmt-{name}.journal"


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    # A Ctrl-C or SIGTERM between unregistering one entry and registering the other
    # would leave the architecture without a handler: hold them until the pair is done.
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def arch_lock(
    qemu_name: str,
    *,
    exclusive: bool,
    say: Say,
    run_dir: Path = RUN_DIR,
    root: Path = BINFMT_DIR,
) -> Iterator[None]:
    """Hold the host-wide lock of binfmt_misc's `qemu-<qemu_name>` handler: shared while a
    build runs under the host's emulator, exclusive while a swap is in place. Waits, and
    says so, while another archbench run holds it the other way. A swap that a killed run
    left is repaired before the lock is granted."""
    name = f"qemu-{qemu_name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    path = _lock_path(name, run_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            _acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, name, say, path)
            if not _journal_path(name, run_dir).exists():
                break
            # Only a run holding the lock exclusively writes a journal; finding one while
            # holding the lock means its writer is dead. Repair it under the exclusive lock.
            if not exclusive:
                fcntl.flock(fd, fcntl.LOCK_UN)
                _acquire(fd, fcntl.LOCK_EX, name, say, path)
            _restore_from(_journal_path(name, run_dir), root, say)
            if exclusive:
                break
            fcntl.flock(fd, fcntl.LOCK_UN)
        yield
    finally:
        os.close(fd)


def _acquire(fd: int, mode: int, name: str, say: Say, path: Path) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        how = "swapped its emulator" if mode == fcntl.LOCK_SH else "is building for it"
        say(f"waiting: another archbench run holds {name} ({how}); lock {path}")
        started = time.monotonic()
        fcntl.flock(fd, mode)
        say(f"{name} is free after {time.monotonic() - started:.0f} s")


def _restore_from(journal_path: Path, root: Path, say: Say) -> None:
    """Put back the registration a journal keeps and remove the journal. Raises
    BinfmtSwapFailed when the kernel refuses."""
    try:
        journal = Journal.from_json(journal_path.read_text())
    except FileNotFoundError:
        return
    except (ValueError, KeyError) as exc:
        raise BinfmtSwapFailed(f"unreadable binfmt journal {journal_path}: {exc}") from exc
    # The journal goes with the restoration it records, or not at all: a Ctrl-C in
    # between would leave a journal of a swap already undone.
    with _signals_deferred():
        restore(journal, root)
        now = read_entry_text(journal.name, root)
        if now != journal.original_text:
            raise BinfmtSwapFailed(
                f"restored {journal.name}, but the kernel shows {now!r}, "
                f"not the host's {journal.original_text!r} (journal kept: {journal_path})"
            )
        journal_path.unlink()
    if journal.pid != os.getpid():
        say(
            f"restored the host's binfmt_misc handler {journal.name}: archbench run {journal.pid} "
            f"ended without putting it back (it had {journal.interpreter} registered)"
        )


def restore(journal: Journal, root: Path = BINFMT_DIR) -> None:
    """Replace whatever `journal.name` holds now with the host's registration (or nothing,
    when the host had none). Raises BinfmtSwapFailed."""
    try:
        with _signals_deferred():
            unregister(journal.name, root)
            if journal.original is not None:
                register(journal.original, root)
    except OSError as exc:
        raise BinfmtSwapFailed(f"putting back {journal.name}: {exc}") from exc


def template(
    qemu_name: str, root: Path = BINFMT_DIR, defaults: Path = DEFAULTS_DIR
) -> Registration:
    """Return the host's registration of `qemu-<qemu_name>`, or else Debian's default one
    (its magic and mask) for it. Raises BinfmtSwapFailed when neither exists."""
    name = f"qemu-{qemu_name}"
    text = read_entry_text(name, root)
    try:
        if text is not None:
            return parse_proc_entry(name, text)
        return parse_binfmts_default(name, (defaults / name).read_text())
    except (OSError, ValueError) as exc:
        raise BinfmtSwapFailed(f"no magic known for {name}: {exc}") from exc


@contextlib.contextmanager
def swapped(
    qemu_name: str,
    interpreter: Path,
    *,
    say: Say,
    root: Path = BINFMT_DIR,
    run_dir: Path = RUN_DIR,
    defaults: Path = DEFAULTS_DIR,
) -> Iterator[Registration]:
    """Register `interpreter` as binfmt_misc's `qemu-<qemu_name>` handler for the duration of
    the block, holding the architecture's lock exclusively, and yield the registration.

    The host's registration is written to a journal first and put back when the block
    ends, however it ends; a run killed meanwhile leaves the journal for `repair`. Raises
    BinfmtSwapFailed when the kernel refuses the registration or the restoration.
    """
    name = f"qemu-{qemu_name}"
    if qemu_name == host_platform().qemu_name:
        # Every native binary on the host would go through the emulator.
        raise BinfmtSwapFailed(f"refusing to register {name}: it is this machine's own")
    with arch_lock(qemu_name, exclusive=True, say=say, run_dir=run_dir, root=root):
        original_text = read_entry_text(name, root)
        original = parse_proc_entry(name, original_text) if original_text is not None else None
        new = template(qemu_name, root, defaults).swapped(interpreter)
        journal = Journal(name, original, original_text, str(interpreter), os.getpid(), time.time())
        journal_path = _journal_path(name, run_dir)
        tmp = journal_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(journal.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, journal_path)
        try:
            try:
                with _signals_deferred():
                    unregister(name, root)
                    register(new, root)
            except OSError as exc:
                raise BinfmtSwapFailed(f"registering {interpreter} as {name}: {exc}") from exc
            yield new
        finally:
            _restore_from(journal_path, root, say)


def repair(*, say: Say, root: Path = BINFMT_DIR, run_dir: Path = RUN_DIR) -> list[str]:
    """Put back every host registration whose swapping run is gone (its journal remains and
    nobody holds its lock); return the names repaired. Swaps of live runs are left alone.
    Raises BinfmtSwapFailed when the kernel refuses."""
    repaired: list[str] = []
    try:
        journals = sorted(run_dir.glob("binfmt-qemu-*.journal"))
    except OSError:
        return repaired
    for journal_path in journals:
        name = journal_path.name[len("binfmt-") : -len(".journal")]
        try:
            fd = os.open(_lock_path(name, run_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            # Not root: leave it to the next command run as root, but say what is wrong.
            say(f"binfmt_misc handler {name} is still swapped by a killed run: {exc}")
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run holds it: its swap is in place on purpose
            if journal_path.exists():
                _restore_from(journal_path, root, say)
                repaired.append(name)
        finally:
            os.close(fd)
    return repaired
