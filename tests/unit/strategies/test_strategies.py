from bench.engine.matrix import Cell
from bench.host.facts import Host
from bench.platforms import KNOWN
from bench.scenarios.loader import resolve_scenario
from bench.strategies import REGISTRY, get_strategy
from bench.strategies.base import BuildSettings, compiler_version
from bench.strategies.cross import cross_packages
from tests.unit.strategies.dockerparse import stage, stages

AMD64, ARM64 = KNOWN["linux/amd64"], KNOWN["linux/arm64"]
SETTINGS = BuildSettings(
    registry="127.0.0.1:5000", size=1, base_image="debian:bookworm", timeout=60, host=AMD64
)


def test_registry_is_plain_and_ordered():
    assert list(REGISTRY) == ["native", "qemu-system", "qemu-user", "cross", "hybrid"]
    assert get_strategy("cross") is REGISTRY["cross"]


def _probe(strategy: str, platform: str, host: Host):
    scenario = resolve_scenario("cbench")
    return REGISTRY[strategy].probe(scenario, Cell(scenario.name, 1, strategy, platform), host)


def test_native_never_fakes_a_foreign_platform():
    assert _probe("native", "linux/amd64", Host(AMD64)).available
    a = _probe("native", "linux/arm64", Host(AMD64))
    assert not a.available and "no native linux/arm64 node" in a.reason


def test_qemu_system_needs_its_emulator():
    # Both branches, each on a host that has (or lacks) qemu-system-aarch64.
    a = _probe("qemu-system", "linux/arm64", Host(AMD64, qemu_system=frozenset({"aarch64"})))
    assert a.available
    a = _probe("qemu-system", "linux/arm64", Host(AMD64, qemu_system=frozenset({"x86_64"})))
    assert not a.available and "qemu-system-aarch64 is not installed" in a.reason
    assert "apt-get install qemu-system-arm" in a.fix


def test_cross_dockerfile_builds_on_the_build_platform():
    scenario = resolve_scenario("cbench")
    text = REGISTRY["cross"].dockerfile(scenario, SETTINGS)
    toolchain, build, final = stages(text)
    assert (toolchain.base, toolchain.name, toolchain.platform) == (
        "debian:bookworm",
        "toolchain",
        "$BUILDPLATFORM",
    )
    assert toolchain.keywords() == ["ARG", "ARG", "RUN"]
    packages = toolchain.only("RUN").case_arms()
    assert packages["arm64/"] == "P='gcc-aarch64-linux-gnu make libc6-dev-arm64-cross'"
    assert packages["amd64/"] == "P='gcc make libc6-dev'"
    assert packages["arm/v7"] == "P='gcc-arm-linux-gnueabihf make libc6-dev-armhf-cross'"
    assert toolchain.only("RUN").steps()[-1].startswith("apt-get update && apt-get install")
    assert (build.base, build.name) == ("toolchain", "build")
    run = build.only("RUN")
    assert run.case_arms()["arm/v7"] == "HOST_TRIPLET=arm-linux-gnueabihf DEBIAN_ARCH=armhf"
    assert (
        "export TARGETARCH TARGETVARIANT HOST_TRIPLET DEBIAN_ARCH CROSS_TRIPLET=$HOST_TRIPLET"
        in run.steps()
    )
    assert (final.base, final.name, final.platform) == ("debian:bookworm", "", "")
    assert final.keywords() == ["COPY", "CMD"]
    assert final.only("COPY").flags == {"from": "build"}
    assert final.only("COPY").args == "/out/build/cbench /usr/local/bin/cbench"
    assert final.only("CMD").args == '["/usr/local/bin/cbench"]'


def test_emulated_dockerfile_builds_on_the_target():
    text = REGISTRY["qemu-user"].dockerfile(resolve_scenario("cbench"), SETTINGS)
    found = stages(text)
    assert [(s.base, s.name) for s in found] == [
        ("debian:bookworm", "toolchain"),
        ("toolchain", "build"),
        ("debian:bookworm", ""),
    ]
    assert all(s.platform == "" for s in found)
    assert not any("$BUILDPLATFORM" in i.args for s in found for i in s.instructions)


def test_cross_packages_swap_compiler_and_libc_only():
    scenario = resolve_scenario("cbench")
    assert cross_packages(scenario, KNOWN["linux/riscv64"], AMD64) == [
        "gcc-riscv64-linux-gnu",
        "make",
        "libc6-dev-riscv64-cross",
    ]
    assert cross_packages(scenario, AMD64, AMD64) == list(scenario.packages)


def test_compiler_version_skips_the_echoed_command():
    log = (
        '#9 [build 4/4] RUN export CC=gcc && echo "archbench-cc: $($CC --version)"\n'
        "#9 0.31 archbench-cc: gcc (Debian 12.2.0-14) 12.2.0\n"
    )
    assert compiler_version(log) == "gcc (Debian 12.2.0-14) 12.2.0"
    assert compiler_version("") == ""


def test_every_known_platform_has_a_cross_case():
    text = REGISTRY["cross"].dockerfile(resolve_scenario("cbench"), SETTINGS)
    triplets = stage(text, "build").only("RUN").case_arms()
    packages = stage(text, "toolchain").only("RUN").case_arms()
    for p in KNOWN.values():
        key = f"{p.architecture}/{p.variant}"
        assert triplets[key] == f"HOST_TRIPLET={p.gnu_triplet} DEBIAN_ARCH={p.debian_arch}"
        assert packages[key].startswith("P='")
    assert (
        set(triplets)
        == set(packages)
        == {f"{p.architecture}/{p.variant}" for p in KNOWN.values()} | {"*"}
    )


def test_suite_template_gives_each_platform_its_release():
    settings = BuildSettings(
        registry="127.0.0.1:5000", size=1, base_image="debian:{suite}", timeout=60, host=AMD64
    )
    scenario = resolve_scenario("cbench")
    emulated = REGISTRY["qemu-user"].dockerfile(scenario, settings)
    assert stage(emulated, "base-riscv64").base == "debian:trixie"
    assert stage(emulated, "base-armv7").base == "debian:bookworm"
    assert stage(emulated, "toolchain").base == "base-${TARGETARCH}${TARGETVARIANT}"
    crossed = REGISTRY["cross"].dockerfile(scenario, settings)
    buildbase = stage(crossed, "buildbase-riscv64")
    assert (buildbase.base, buildbase.platform) == ("debian:trixie", "$BUILDPLATFORM")
    assert stage(crossed, "toolchain").base == "buildbase-${TARGETARCH}${TARGETVARIANT}"
    final = stages(crossed)[-1]
    assert (final.base, final.name) == ("base-${TARGETARCH}${TARGETVARIANT}", "")
    assert final.keywords() == ["COPY", "CMD"]


def test_build_env_is_the_same_contract_for_every_strategy():
    scenario = resolve_scenario("cbench")
    for name in ("native", "qemu-user", "cross"):
        text = REGISTRY[name].dockerfile(scenario, SETTINGS)
        steps = stage(text, "build").only("RUN").steps()
        assert (
            'export CC="${P}gcc" CXX="${P}g++" AR="${P}ar" RANLIB="${P}ranlib" '
            'STRIP="${P}strip"' in steps
        )
        assert steps[0] == (
            'if [ "$ARCHBENCH_CACHE" != warm ]; then rm -rf /cache/tree /cache/xdg; fi'
        )
        triplet = "$HOST_TRIPLET" if name == "cross" else ""
        assert (
            f"export TARGETARCH TARGETVARIANT HOST_TRIPLET DEBIAN_ARCH CROSS_TRIPLET={triplet}"
            in steps
        )


def test_image_scenario_runs_apt_on_the_target_or_unpacks_on_the_build_platform():
    scenario = resolve_scenario("pkgimage")
    emulated = REGISTRY["qemu-user"].dockerfile(scenario, SETTINGS)
    found = stages(emulated)
    assert [(s.base, s.name, s.platform) for s in found] == [
        ("debian:bookworm", "toolchain", ""),
        ("toolchain", "build", ""),
    ]
    build = found[-1]
    assert build.keywords() == ["ARG", "ARG", "RUN", "ARG", "ARG", "ADD", "ENV", "ENV", "CMD"]
    install, localedef = build.only("RUN").steps()
    assert install.startswith(
        "apt-get update && apt-get install -y --no-install-recommends locales jq && "
    )
    assert localedef.startswith("localedef -i en_US ")
    add = build.only("ADD")
    assert add.args == "src/payload/busybox-${TARGETARCH}.tar.xz /opt/busybox/"
    # The ADD names $TARGETARCH: an ARG of its stage must come before it.
    assert build.keywords().index("ARG") < build.keywords().index("ADD")
    crossed = REGISTRY["cross"].dockerfile(scenario, SETTINGS)
    toolchain, build, final = stages(crossed)
    assert (toolchain.base, toolchain.name, toolchain.platform) == (
        "debian:bookworm",
        "toolchain",
        "$BUILDPLATFORM",
    )
    assert toolchain.only("RUN").args.startswith(
        "apt-get update && apt-get install -y --no-install-recommends locales && "
    )
    case, mkdir, unpack, run = build.only("RUN").steps()
    assert case.startswith('case "$TARGETARCH/$TARGETVARIANT" in') and mkdir == "mkdir -p /rootfs"
    assert "apt-get install --simulate --no-install-recommends $W" in unpack
    assert 'dpkg -x "$d" /rootfs' in unpack
    assert 'cp -a "/rootfs/$d/." "/rootfs/usr/$d/"' in unpack
    assert run.startswith('export ROOT=/rootfs && mkdir -p "$ROOT/usr/lib/locale"')
    assert (final.base, final.name) == ("debian:bookworm", "")
    assert "RUN" not in final.keywords()
    assert final.keywords()[0] == "COPY" and final.instructions[0].flags == {"from": "build"}
    assert final.instructions[0].args == "/rootfs/ /"
    assert REGISTRY["cross"].approximation(scenario).startswith("packages unpacked with dpkg -x")
    assert REGISTRY["qemu-user"].approximation(scenario) == ""


def test_go_cross_build_uses_the_build_platforms_go_with_goarch():
    scenario = resolve_scenario("gobench")
    for target in KNOWN.values():
        assert cross_packages(scenario, target, AMD64) == ["golang-go"]
    crossed = REGISTRY["cross"].dockerfile(scenario, SETTINGS)
    steps = stage(crossed, "build").only("RUN").steps()
    assert 'export CGO_ENABLED="0" GOARCH="$TARGETARCH" GOARM="${TARGETVARIANT#v}"' in steps
    native = REGISTRY["native"].dockerfile(scenario, SETTINGS)
    steps = stage(native, "build").only("RUN").steps()
    assert 'export CGO_ENABLED="0"' in steps
    assert not any("GOARCH" in step for step in steps)


def _exit_recording(monkeypatch, taskstats_works: bool, acct_works: bool):
    """Return what base._record_exits picks when taskstats and process accounting
    work or refuse as told."""
    import contextlib
    from pathlib import Path

    from bench.strategies import base
    from bench.tools import acct, taskstats

    @contextlib.contextmanager
    def listening():
        if not taskstats_works:
            raise taskstats.TaskstatsUnavailable("the kernel refused a taskstats listener")
        yield taskstats.Session()

    @contextlib.contextmanager
    def accounting():
        if not acct_works:
            raise acct.AccountingUnavailable("acct(2) says Operation not permitted")
        yield acct.Session(Path("/nonexistent"))

    monkeypatch.setattr(taskstats, "listening", listening)
    monkeypatch.setattr(acct, "accounting", accounting)
    with contextlib.ExitStack() as stack:
        return base._record_exits(stack)


def test_taskstats_is_preferred_and_accounting_is_the_noted_fallback(monkeypatch):
    from bench.tools import acct, taskstats

    (session,), notes = _exit_recording(monkeypatch, True, True)
    assert session.source == taskstats.SOURCE and notes == []
    (session,), notes = _exit_recording(monkeypatch, False, True)
    assert session.source == acct.SOURCE
    assert notes == [
        "taskstats unavailable: the kernel refused a taskstats listener",
        acct.TRUNCATED,
    ]
    sessions, notes = _exit_recording(monkeypatch, False, False)
    assert sessions == [] and "taskstats unavailable" in notes[0] and "acct(2)" in notes[1]
