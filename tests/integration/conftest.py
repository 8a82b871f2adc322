import pytest

from bench.errors import ArchbenchError
from bench.host import services
from bench.tools import qemu
from bench.tools.registry import registry_address
from tests.conftest import need


@pytest.fixture(scope="session")
def registry() -> str:
    address = registry_address(None)
    try:
        services.ensure_engine()
        services.ensure_registry(address)
    except ArchbenchError as exc:
        need(False, f"engine or registry: {exc}")
    return address


@pytest.fixture(scope="session")
def binfmt_arm64() -> None:
    entry = qemu.read_binfmt("aarch64")
    need(
        entry is not None and entry.enabled and entry.fix_binary,
        "qemu-aarch64 registered in binfmt_misc with flag F",
    )
