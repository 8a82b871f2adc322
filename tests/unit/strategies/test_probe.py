"""Availability: every strategy x platform x scenario kind, probed against fake hosts.

The expected answers are written out here from what each strategy needs; `doctor`'s
grid and the cells `run` probes must both give them.
"""

import dataclasses
import itertools

import pytest

from bench.engine.matrix import Cell
from bench.engine.runner import RunRequest, request_cells
from bench.host.doctor import strategy_grid
from bench.host.facts import Host
from bench.platforms import KNOWN
from bench.scenarios.loader import resolve_scenario
from bench.strategies import REGISTRY, probe_cells
from bench.tools.qemu import BinfmtEntry

AMD64, ARM64 = KNOWN["linux/amd64"], KNOWN["linux/arm64"]
QEMU_NAMES = sorted({p.qemu_name for p in KNOWN.values()})


def binfmt(name: str, enabled: bool = True, flags: str = "PF") -> BinfmtEntry:
    return BinfmtEntry(f"qemu-{name}", enabled, f"/usr/libexec/qemu-binfmt/{name}", flags)


def full_host(platform=AMD64) -> Host:
    """A host with every binfmt handler (enabled, F flag) and both system emulators."""
    return Host(
        platform,
        binfmt={n: binfmt(n) for n in QEMU_NAMES if n != platform.qemu_name},
        qemu_system=frozenset({"aarch64", "x86_64"}),
        kvm=True,
    )


def bare_host(platform=AMD64) -> Host:
    """A host with no binfmt handler and no system emulator."""
    return Host(platform)


HOSTS = {
    "full-amd64": full_host(AMD64),
    "bare-amd64": bare_host(AMD64),
    "full-arm64": full_host(ARM64),
    "bare-arm64": bare_host(ARM64),
}
SCENARIOS = {"compile": resolve_scenario("cbench"), "image": resolve_scenario("pkgimage")}


def expected(strategy: str, platform: str, kind: str, host: Host) -> bool:
    """What each strategy needs, written out apart from the code under test."""
    own = platform == host.platform.name
    if strategy == "native":
        return own
    if strategy == "cross":
        return True
    if strategy == "qemu-user":
        entry = host.binfmt.get(KNOWN[platform].qemu_name)
        return own or (entry is not None and entry.enabled and "F" in entry.flags)
    if strategy == "hybrid":
        entry = host.binfmt.get(KNOWN[platform].qemu_name)
        # A foreign target the host emulates, an amd64 build platform (whose loader and
        # libraries are known), a compile scenario with gcc.
        return (
            not own
            and host.platform.name == "linux/amd64"
            and kind == "compile"
            and entry is not None
            and entry.enabled
            and "F" in entry.flags
        )
    assert strategy == "qemu-system"
    return (
        platform in ("linux/amd64", "linux/arm64")
        and KNOWN[platform].qemu_name in host.qemu_system
        and kind == "compile"
    )


CASES = list(itertools.product(REGISTRY, KNOWN, SCENARIOS, HOSTS))


@pytest.fixture(autouse=True)
def _apt_offers_every_cross_compiler(monkeypatch):
    # hybrid asks apt whether Debian offers the target's gcc cross compiler: every one
    # archbench knows exists in bookworm, and the answer must not hang on this host's lists.
    from bench.strategies import hybrid

    monkeypatch.setattr(hybrid, "_cross_compiler_offered", lambda package: "12.2.0-14cross1")


def test_the_cases_cover_every_strategy_platform_and_kind():
    assert {s.kind for s in SCENARIOS.values()} == {"compile", "image"}
    assert len(CASES) == len(REGISTRY) * len(KNOWN) * 2 * len(HOSTS)


@pytest.mark.parametrize(("strategy", "platform", "kind", "host_name"), CASES)
def test_probe_gives_the_expected_answer(strategy, platform, kind, host_name):
    host, scenario = HOSTS[host_name], SCENARIOS[kind]
    a = REGISTRY[strategy].probe(scenario, Cell(scenario.name, 1, strategy, platform), host)
    assert a.available == expected(strategy, platform, kind, host)
    assert a.available or a.reason


@pytest.mark.parametrize("kind", SCENARIOS)
@pytest.mark.parametrize("host_name", HOSTS)
def test_doctor_and_run_give_the_same_answer(kind, host_name):
    host, scenario = HOSTS[host_name], SCENARIOS[kind]
    platforms = list(KNOWN.values())
    grid = strategy_grid(scenario, platforms, host)
    req = RunRequest(
        scenarios=(scenario,),
        strategies=tuple(REGISTRY),
        platforms=tuple(platforms),
        sizes=(1,),
        reps=1,
        results_root=None,
        registry="127.0.0.1:5000",
    )
    cells = request_cells(req)
    run = probe_cells(cells, {scenario.name: scenario}, host)
    assert [(r["strategy"], r["platform"]) for r in grid] == [
        (c.strategy, c.platform) for c in cells
    ]
    for row, (cell, a) in zip(grid, run.items(), strict=True):
        assert (row["available"], row["reason"], row["fix"]) == (a.available, a.reason, a.fix)
        assert row["available"] == expected(cell.strategy, cell.platform, kind, host)


def _qemu_user(host: Host, platform: str = "linux/arm64"):
    scenario = SCENARIOS["compile"]
    return REGISTRY["qemu-user"].probe(scenario, Cell("cbench", 1, "qemu-user", platform), host)


def test_qemu_user_names_what_is_wrong_with_the_handler_and_its_fix():
    missing = _qemu_user(bare_host())
    assert missing.reason == "no binfmt_misc handler qemu-aarch64"
    assert missing.fix == "archbench setup"
    off = _qemu_user(Host(AMD64, binfmt={"aarch64": binfmt("aarch64", enabled=False)}))
    assert off.reason == "binfmt_misc handler qemu-aarch64 is disabled"
    assert off.fix == "echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64"
    no_f = _qemu_user(Host(AMD64, binfmt={"aarch64": binfmt("aarch64", flags="P")}))
    assert not no_f.available and "lacks the F flag" in no_f.reason
    ok = _qemu_user(full_host())
    assert ok.available and ok.reason == "/usr/libexec/qemu-binfmt/aarch64 flags PF"
    assert _qemu_user(bare_host(), "linux/amd64").reason == "host platform: runs without emulation"


def test_qemu_system_names_the_missing_emulator_and_the_image_limit():
    scenario = SCENARIOS["compile"]
    cell = Cell("cbench", 1, "qemu-system", "linux/arm64")
    a = REGISTRY["qemu-system"].probe(scenario, cell, bare_host())
    assert a.reason == "qemu-system-aarch64 is not installed"
    assert a.fix == "apt-get install qemu-system-arm qemu-system-x86 qemu-utils"
    image = SCENARIOS["image"]
    a = REGISTRY["qemu-system"].probe(
        image, dataclasses.replace(cell, scenario="pkgimage"), full_host()
    )
    assert not a.available and "has no container engine to build an image in" in a.reason


def test_warm_cells_need_a_touch_file_and_never_run_in_a_guest():
    scenario = SCENARIOS["compile"]
    assert scenario.touch
    warm = Cell("cbench", 1, "qemu-user", "linux/arm64", "warm")
    assert REGISTRY["qemu-user"].probe(scenario, warm, full_host()).available
    untouched = dataclasses.replace(scenario, touch="")
    a = REGISTRY["qemu-user"].probe(untouched, warm, full_host())
    assert a.reason == "the scenario names no build.touch file to edit for a warm build"
    guest = dataclasses.replace(warm, strategy="qemu-system")
    a = REGISTRY["qemu-system"].probe(scenario, guest, full_host())
    assert not a.available and "each guest starts from its pristine image" in a.reason


def test_a_cpu_variant_needs_a_model_only_where_the_cpu_is_emulated():
    scenario = SCENARIOS["compile"]
    host = full_host()
    # qemu-user on the host's own platform runs natively: the variant does not apply.
    own = Cell("cbench", 1, "qemu-user", "linux/amd64", "cold", "cortex-a72")
    assert REGISTRY["qemu-user"].probe(scenario, own, host).available
    foreign = dataclasses.replace(own, platform="linux/arm64")
    assert REGISTRY["qemu-user"].probe(scenario, foreign, host).available
    riscv = dataclasses.replace(own, platform="linux/riscv64")
    a = REGISTRY["qemu-user"].probe(scenario, riscv, host)
    assert a.reason == "CPU variant 'cortex-a72' has no model for linux/riscv64"
    # A guest's CPU is always emulated, even on the host's own architecture.
    guest = dataclasses.replace(own, strategy="qemu-system")
    a = REGISTRY["qemu-system"].probe(scenario, guest, host)
    assert a.reason == "CPU variant 'cortex-a72' has no model for linux/amd64"
    default = dataclasses.replace(guest, cpu="default")
    assert REGISTRY["qemu-system"].probe(scenario, default, host).available


def test_the_platform_limit_comes_before_the_cell_limit():
    scenario = dataclasses.replace(SCENARIOS["compile"], touch="")
    cell = Cell("cbench", 1, "native", "linux/arm64", "warm")
    a = REGISTRY["native"].probe(scenario, cell, full_host())
    assert a.reason == "no native linux/arm64 node here"
    assert a.fix == (
        "archbench nodes add NAME ENDPOINT --platform linux/arm64 on a machine of that "
        "architecture, then run --nodes NAME"
    )


def test_the_base_is_abstract_and_only_buildx_strategies_write_build_stages():
    from bench.strategies import BuildxStrategy, Strategy

    with pytest.raises(TypeError, match="abstract"):
        Strategy()
    assert all(isinstance(s, Strategy) for s in REGISTRY.values())
    assert not isinstance(REGISTRY["qemu-system"], BuildxStrategy)
    assert not hasattr(REGISTRY["qemu-system"], "build_stages")
    assert {n for n, s in REGISTRY.items() if isinstance(s, BuildxStrategy)} == {
        "native",
        "qemu-user",
        "cross",
        "hybrid",
    }


def test_a_scenario_needing_target_code_makes_cross_unavailable_off_the_host():
    scenario = dataclasses.replace(SCENARIOS["compile"], needs_target_code=True)
    foreign = Cell("cbench", 1, "cross", "linux/arm64")
    a = REGISTRY["cross"].probe(scenario, foreign, full_host())
    assert not a.available and "declares build.needs_target_code" in a.reason
    assert REGISTRY["cross"].probe(SCENARIOS["compile"], foreign, full_host()).available
    # On the host's own platform a cross build runs its target's code like a native one.
    own = dataclasses.replace(foreign, platform="linux/amd64")
    assert REGISTRY["cross"].probe(scenario, own, full_host()).available
    hybrid = dataclasses.replace(foreign, strategy="hybrid")
    assert REGISTRY["hybrid"].probe(scenario, hybrid, full_host()).available
