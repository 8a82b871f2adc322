"""Named failures. Known failure texts of external tools map to these at the tool
boundary (`classify_failure`), so code above it handles types, not strings."""

from __future__ import annotations

from collections.abc import Sequence


class ArchbenchError(Exception):
    """Base of every error archbench raises on purpose."""


class UsageError(ArchbenchError):
    """Bad input from the user: an unknown name, a malformed value. Exit code 2."""


class HostNotReady(ArchbenchError):
    """A tool or service the command needs is not installed. Exit code 2."""


class ToolMissing(HostNotReady):
    """An external program is not on PATH."""

    def __init__(self, program: str) -> None:
        super().__init__(f"{program} is not installed; run `archbench setup`")
        self.program = program


class CommandFailed(ArchbenchError):
    """An external program exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, tail: str) -> None:
        super().__init__(f"{' '.join(argv[:4])} ... exited {returncode}: {tail[-2000:]}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.tail = tail


class CommandTimeout(ArchbenchError):
    """An external program ran past its timeout and was ended with its group."""

    def __init__(self, argv: Sequence[str], seconds: float, output: str) -> None:
        super().__init__(f"{' '.join(argv[:4])} ... timed out after {seconds:.0f} s")
        self.argv = tuple(argv)
        self.seconds = seconds
        self.output = output


class BuildFailed(ArchbenchError):
    """A build exited non-zero; `failure_class` names why, when known."""

    def __init__(self, failure_class: str, tail: str) -> None:
        super().__init__(f"build failed ({failure_class})")
        self.failure_class = failure_class
        self.tail = tail


class BinfmtMissing(BuildFailed):
    """A foreign binary ran without a binfmt_misc handler: "exec format error"."""


class EmulatorCrash(BuildFailed):
    """qemu-user died inside the build: "qemu: uncaught target signal"."""


class PlatformMismatch(BuildFailed):
    """The base image has no manifest for the requested platform."""


class RegistryUnavailable(HostNotReady):
    """The registry does not answer at its address."""


class EngineUnavailable(HostNotReady):
    """The Docker engine does not answer."""


# (substring of the tool's output, failure class, exception type): first match wins.
FAILURE_PATTERNS: tuple[tuple[str, str, type[BuildFailed]], ...] = (
    ("exec format error", "exec-format-error", BinfmtMissing),
    ("qemu: uncaught target signal", "emulator-crash", EmulatorCrash),
    ("no match for platform in manifest", "platform-mismatch", PlatformMismatch),
    ("Cannot allocate memory", "out-of-memory", BuildFailed),
    ("Temporary failure resolving", "network", BuildFailed),
    ("Could not resolve", "network", BuildFailed),
    ("connection refused", "network", BuildFailed),
    ("error: ", "compile-error", BuildFailed),
    ("Error 1", "compile-error", BuildFailed),
)


def classify_failure(output: str) -> BuildFailed:
    """Return the named exception for a failed build's output (not raised)."""
    for needle, failure_class, exc_type in FAILURE_PATTERNS:
        if needle in output:
            return exc_type(failure_class, output[-4000:])
    return BuildFailed("unknown", output[-4000:])


class ResultsUnwritable(ArchbenchError):
    """A record or the manifest could not be written (a full disk, a read-only folder).

    Exit code 1: the run stops, since nothing more it measured could be kept.
    """


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM ended the command; `signum` says which (exit 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


class SourceUnavailable(HostNotReady):
    """A scenario's source could not be downloaded, verified or unpacked. Exit code 2."""
