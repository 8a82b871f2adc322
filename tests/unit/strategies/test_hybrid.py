from dataclasses import replace

from bench.engine.matrix import Cell
from bench.host.facts import Host
from bench.platforms import KNOWN
from bench.scenarios.loader import resolve_scenario
from bench.strategies import REGISTRY, probe_cells
from bench.strategies.base import BuildSettings
from bench.strategies.hybrid import compiler_facts, marked, split_packages

AMD64, ARM64 = KNOWN["linux/amd64"], KNOWN["linux/arm64"]
SETTINGS = BuildSettings(
    registry="127.0.0.1:5000", size=1, base_image="debian:{suite}", timeout=60, host=AMD64
)
HYBRID = REGISTRY["hybrid"]
HOST = Host(AMD64)


def _limit(scenario):
    return HYBRID.cell_limit(scenario, Cell(scenario.name, 1, "hybrid", "linux/arm64"))


def test_toolchain_stage_is_native_and_build_stage_is_the_target():
    text = HYBRID.dockerfile(resolve_scenario("cbench"), SETTINGS)
    xtool, toolchain, build, final = text.split("\n\n")[1:5]
    assert xtool.startswith("FROM buildbase-${TARGETARCH}${TARGETVARIANT} AS xtool")
    assert "apt-get install -y --no-install-recommends gcc-$PT " in xtool
    # The cross libc is never installed: the compiler must read the target root's own.
    assert "libc6-dev-" not in xtool and "cp -a /usr/lib/gcc-cross" in xtool
    # gcc 13 and later (trixie's riscv64 cross gcc) keep cc1 under libexec.
    assert 'cp -a /usr/libexec/gcc-cross "$X/libexec/"' in xtool
    assert toolchain.startswith("FROM base-${TARGETARCH}${TARGETVARIANT} AS toolchain")
    assert "apt-get install -y --no-install-recommends make libc6-dev " in toolchain
    assert "gcc" not in toolchain.split("apt-get install")[1].split("\\")[0]
    assert "COPY --from=xtool /opt/archbench/links/ /" in toolchain
    assert build.startswith("FROM toolchain AS build")
    for source, target in (
        ("/usr/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"),
        ("/usr/lib64", "/lib64"),
        ("/opt/archbench/xtool", "/opt/archbench/xtool"),
    ):
        assert f"--mount=type=bind,from=xtool,source={source},target={target} \\" in build
    assert "CROSS_TRIPLET= " in build and 'export CC="${P}gcc"' in build
    assert "$BUILDPLATFORM" not in build and "RUN" not in final


def test_a_scenario_that_names_no_libc_still_gets_the_targets_own():
    scenario = replace(resolve_scenario("cbench"), packages=("gcc", "make", "binutils"))
    xtool, target = split_packages(scenario)
    assert xtool == ["gcc-$PT", "binutils-$PT"]
    assert target == ["make", "libc6-dev"]


def test_hybrid_is_not_offered_on_the_build_platform_itself():
    a = HYBRID.probe_platform(AMD64, HOST)
    assert not a.available and "hybrid would be the native build" in a.reason


def test_hybrid_applies_to_gcc_compile_scenarios_only():
    assert _limit(resolve_scenario("cbench")) == ""
    assert _limit(resolve_scenario("zlib")) == ""
    assert _limit(resolve_scenario("pkgimage")).startswith("nothing to compile")
    assert "no gcc" in _limit(resolve_scenario("gobench"))
    cxx = replace(resolve_scenario("cbench"), packages=("gcc", "g++", "make", "libc6-dev"))
    assert "C++ is not wired" in _limit(cxx)
    # Other strategies take every scenario.
    pkgimage = resolve_scenario("pkgimage")
    cell = Cell("pkgimage", 1, "cross", "linux/arm64")
    assert REGISTRY["cross"].cell_limit(pkgimage, cell) == ""


def test_the_runner_reports_an_unsuitable_scenario_as_unavailable():
    scenarios = {"pkgimage": resolve_scenario("pkgimage")}
    cell = Cell("pkgimage", 1, "hybrid", "linux/arm64")
    found = probe_cells([cell], scenarios, HOST)[cell]
    assert not found.available
    if HYBRID.probe_platform(ARM64, HOST).available:
        assert found.reason.startswith("nothing to compile")


def test_compiler_facts_compare_the_cross_and_the_targets_gcc():
    log = (
        '#9 RUN echo "archbench-cross-cc: $(cat /opt/archbench/cross-compiler)"\n'
        "#9 0.2 archbench-cross-cc: gcc-12-aarch64-linux-gnu 12.2.0-14cross1\n"
        "#9 0.3 archbench-target-cc: gcc-12 12.2.0-14\n"
    )
    cross = marked(log, "archbench-cross-cc:")
    assert cross == "gcc-12-aarch64-linux-gnu 12.2.0-14cross1"
    same = compiler_facts(cross, marked(log, "archbench-target-cc:"))
    assert same["compiler_matches_target"] is True and "compiler_note" not in same
    newer = compiler_facts(cross, "gcc-12 12.2.0-14+deb12u1")
    assert newer["compiler_matches_target"] is False
    assert "gcc-12 12.2.0-14+deb12u1" in newer["compiler_note"]
    assert compiler_facts("", "") == {"cross_compiler": "", "target_compiler": ""}


def test_hybrid_builds_hold_the_emulated_platforms_binfmt_lock(monkeypatch, tmp_path):
    # Every RUN of a hybrid build is target code under the host's qemu-user: an emulator
    # swap by another run must wait for it, as for a qemu-user build.
    from contextlib import contextmanager

    from bench.strategies import base
    from bench.tools import binfmt

    held: list[tuple[str, bool]] = []
    inside: list[list[tuple[str, bool]]] = []

    @contextmanager
    def lock(name, *, exclusive, say, **_kw):
        held.append((name, exclusive))
        yield

    def build(self, *args, **kwargs):
        inside.append(list(held))
        return base.BuildOutcome("ok", 1.0)

    monkeypatch.setattr(binfmt, "arch_lock", lock)
    monkeypatch.setattr(base.BuildxStrategy, "build", build)
    monkeypatch.setattr(base.BuildxStrategy, "provision", build)
    scenario = resolve_scenario("cbench")
    HYBRID.provision(scenario, [AMD64, ARM64], SETTINGS, tmp_path / "log")
    HYBRID.build(scenario, [ARM64], SETTINGS, "t", tmp_path / "log")
    # The build platform's own binaries run natively: only arm64's lock, shared.
    assert inside == [[("aarch64", False)], [("aarch64", False)] * 2]
