import shutil

from bench.platforms import KNOWN
from bench.scenario import resolve_scenario
from bench.strategies import REGISTRY, get_strategy
from bench.strategies.base import BuildSettings, compiler_version
from bench.strategies.cross import cross_packages

AMD64, ARM64 = KNOWN["linux/amd64"], KNOWN["linux/arm64"]
SETTINGS = BuildSettings(
    registry="127.0.0.1:5000", size=1, base_image="debian:bookworm", timeout=60, host=AMD64
)


def test_registry_is_plain_and_ordered():
    assert list(REGISTRY) == ["native", "qemu-system", "qemu-user", "cross", "hybrid"]
    assert get_strategy("cross") is REGISTRY["cross"]


def test_native_never_fakes_a_foreign_platform():
    native = REGISTRY["native"]
    assert native.probe(AMD64, AMD64).available
    a = native.probe(ARM64, AMD64)
    assert not a.available and "no native linux/arm64 node" in a.reason


def test_qemu_system_needs_its_emulator():
    a = REGISTRY["qemu-system"].probe(ARM64, AMD64)
    if shutil.which("qemu-system-aarch64"):
        assert a.available
    else:
        assert not a.available and "qemu-system-aarch64 is not installed" in a.reason
        assert "apt-get install qemu-system-arm" in a.fix


def test_cross_dockerfile_builds_on_the_build_platform():
    scenario = resolve_scenario("cbench")
    text = REGISTRY["cross"].dockerfile(scenario, SETTINGS)
    assert "FROM --platform=$BUILDPLATFORM debian:bookworm AS toolchain" in text
    assert "arm64/) P='gcc-aarch64-linux-gnu make libc6-dev-arm64-cross'" in text
    assert "amd64/) P='gcc make libc6-dev'" in text
    assert "arm/v7) P='gcc-arm-linux-gnueabihf make libc6-dev-armhf-cross'" in text
    assert "arm/v7) HOST_TRIPLET=arm-linux-gnueabihf DEBIAN_ARCH=armhf ;;" in text
    assert "CROSS_TRIPLET=$HOST_TRIPLET" in text
    final = text.split("\n\n")[-1]
    assert "RUN" not in final.split("FROM debian:bookworm", 1)[1]
    assert 'CMD ["/usr/local/bin/cbench"]' in text


def test_emulated_dockerfile_builds_on_the_target():
    text = REGISTRY["qemu-user"].dockerfile(resolve_scenario("cbench"), SETTINGS)
    assert "$BUILDPLATFORM" not in text
    assert text.startswith("FROM debian:bookworm AS toolchain")


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
    for p in KNOWN.values():
        assert f"{p.architecture}/{p.variant}) HOST_TRIPLET={p.gnu_triplet} " in text


def test_suite_template_gives_each_platform_its_release():
    settings = BuildSettings(
        registry="127.0.0.1:5000", size=1, base_image="debian:{suite}", timeout=60, host=AMD64
    )
    scenario = resolve_scenario("cbench")
    emulated = REGISTRY["qemu-user"].dockerfile(scenario, settings)
    assert "FROM debian:trixie AS base-riscv64" in emulated
    assert "FROM debian:bookworm AS base-armv7" in emulated
    assert "FROM base-${TARGETARCH}${TARGETVARIANT} AS toolchain" in emulated
    crossed = REGISTRY["cross"].dockerfile(scenario, settings)
    assert "FROM --platform=$BUILDPLATFORM debian:trixie AS buildbase-riscv64" in crossed
    assert "FROM buildbase-${TARGETARCH}${TARGETVARIANT} AS toolchain" in crossed
    assert crossed.rstrip().splitlines()[-3] == "FROM base-${TARGETARCH}${TARGETVARIANT}"


def test_build_env_is_the_same_contract_for_every_strategy():
    scenario = resolve_scenario("cbench")
    for name in ("native", "qemu-user", "cross"):
        text = REGISTRY[name].dockerfile(scenario, SETTINGS)
        assert 'export CC="${P}gcc" CXX="${P}g++" AR="${P}ar"' in text
        assert "rm -rf /cache/tree /cache/xdg" in text
        assert ("CROSS_TRIPLET=$HOST_TRIPLET" in text) == (name == "cross")


def test_image_scenario_runs_apt_on_the_target_or_unpacks_on_the_build_platform():
    scenario = resolve_scenario("pkgimage")
    emulated = REGISTRY["qemu-user"].dockerfile(scenario, SETTINGS)
    assert "$BUILDPLATFORM" not in emulated
    assert "apt-get install -y --no-install-recommends locales jq" in emulated
    assert "localedef -i en_US" in emulated
    assert "ADD src/payload/busybox-${TARGETARCH}.tar.xz /opt/busybox/" in emulated
    assert emulated.index("ARG TARGETARCH") < emulated.index("ADD src/payload")
    crossed = REGISTRY["cross"].dockerfile(scenario, SETTINGS)
    toolchain, build, final = crossed.split("\n\n")[:3]
    assert toolchain.startswith("FROM --platform=$BUILDPLATFORM debian:bookworm AS toolchain")
    assert "apt-get install -y --no-install-recommends locales" in toolchain
    assert "apt-get install --simulate --no-install-recommends $W" in build
    assert 'dpkg -x "$d" /rootfs' in build and 'cp -a "/rootfs/$d/." "/rootfs/usr/$d/"' in build
    assert 'export ROOT=/rootfs && mkdir -p "$ROOT/usr/lib/locale"' in build
    assert "RUN" not in final and "COPY --from=build /rootfs/ /" in final
    assert REGISTRY["cross"].approximation(scenario).startswith("packages unpacked with dpkg -x")
    assert REGISTRY["qemu-user"].approximation(scenario) == ""


def test_go_cross_build_uses_the_build_platforms_go_with_goarch():
    scenario = resolve_scenario("gobench")
    for target in KNOWN.values():
        assert cross_packages(scenario, target, AMD64) == ["golang-go"]
    crossed = REGISTRY["cross"].dockerfile(scenario, SETTINGS)
    assert 'export CGO_ENABLED="0" GOARCH="$TARGETARCH" GOARM="${TARGETVARIANT#v}"' in crossed
    native = REGISTRY["native"].dockerfile(scenario, SETTINGS)
    assert 'export CGO_ENABLED="0"' in native and "GOARCH" not in native
