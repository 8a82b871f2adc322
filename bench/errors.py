"""Named failures archbench raises, and the failure classes known build output maps to
(`classify_failure`)."""

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


class RegistryUnavailable(HostNotReady):
    """The registry does not answer at its address."""


class EngineUnavailable(HostNotReady):
    """The Docker engine does not answer."""


# (substring of a failed build's output, failure class): first match wins.
FAILURE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("exec format error", "exec-format-error"),
    ("qemu: uncaught target signal", "emulator-crash"),
    ("no match for platform in manifest", "platform-mismatch"),
    ("Cannot allocate memory", "out-of-memory"),
    ("Temporary failure resolving", "network"),
    ("Could not resolve", "network"),
    ("connection refused", "network"),
    # The registry answered, and refused the push: two runs pushing one repository at once
    # can race in it (an index PUT finds a manifest it names not yet linked: 400).
    ("failed to push", "push-failed"),
    ("error: ", "compile-error"),
    ("Error 1", "compile-error"),
)


def classify_failure(output: str) -> str:
    """Return the failure class of a failed build from its output ("unknown" when no
    known text is in it)."""
    for needle, failure_class in FAILURE_PATTERNS:
        if needle in output:
            return failure_class
    return "unknown"


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


class GuestError(ArchbenchError):
    """A guest cannot be prepared (a package, a module or the kernel is missing) or is
    asked for a CPU model it does not offer."""
