import gzip
import stat
from pathlib import Path

import pytest

from bench.errors import GuestError
from bench.host.facts import Host
from bench.platforms import KNOWN
from bench.scenarios.loader import resolve_scenario
from bench.strategies import REGISTRY
from bench.strategies.base import BuildSettings
from bench.strategies.dockerfile import build_env
from bench.strategies.guest.build import guest_memory_mb
from bench.strategies.guest.cpu import CPU_MODELS, DEFAULT_CPU, cpu_string
from bench.strategies.guest.image import GUEST_MODULES, cache_key
from bench.strategies.guest.initramfs import build_initramfs, load_order, module_name
from bench.strategies.guest.scripts import build_script, init_script, parse_marker
from bench.strategies.qemu_system import pack_dockerfile
from bench.tools.qemu_system import Disk, VmSpec, argv

AMD64, ARM64 = KNOWN["linux/amd64"], KNOWN["linux/arm64"]

# A cut of a real modules.dep (Debian 6.1 amd64) with its ordering traps: virtio_pci
# lists its dependencies after itself, ext4 needs jbd2, which needs nothing listed twice.
MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko \
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/net/dummy-net.ko:
"""


def test_cpu_models_offer_the_named_variants():
    assert CPU_MODELS["max"] == {"aarch64": "max", "x86_64": "max"}
    assert CPU_MODELS["max-pauth-impdef"]["aarch64"] == "max,pauth-impdef=on"
    assert CPU_MODELS["cortex-a72"] == {"aarch64": "cortex-a72"}
    assert DEFAULT_CPU == {"aarch64": "max-pauth-impdef", "x86_64": "max"}


def test_cpu_string_defaults_per_arch_and_refuses_foreign_models():
    assert cpu_string("aarch64") == "max,pauth-impdef=on"
    assert cpu_string("x86_64") == "max"
    assert cpu_string("aarch64", "max") == "max"
    with pytest.raises(GuestError, match="cortex-a72.*valid: max$"):
        cpu_string("x86_64", "cortex-a72")
    with pytest.raises(GuestError, match="no guest CPU model 'warp'"):
        cpu_string("aarch64", "warp")


def test_aarch64_argv_boots_virt_headless_with_a_read_only_root():
    spec = VmSpec(
        qemu_name="aarch64",
        kernel=Path("/c/vmlinuz"),
        initrd=Path("/c/initrd.img"),
        append="quiet",
        cpu="max,pauth-impdef=on",
        vcpus=2,
        memory_mb=2048,
        accel="tcg",
        disks=(Disk(Path("/c/root.img"), snapshot=True), Disk(Path("/t/work.img"))),
    )
    args = argv(spec)
    assert args[0] == "qemu-system-aarch64"
    pairs = dict(zip(args[1::2], args[2::2], strict=False))
    assert args[args.index("-M") + 1] == "virt"
    assert args[args.index("-cpu") + 1] == "max,pauth-impdef=on"
    assert args[args.index("-accel") + 1] == "tcg"
    assert args[args.index("-smp") + 1] == "2"
    assert args[args.index("-m") + 1] == "2048"
    assert args[args.index("-append") + 1] == "console=ttyAMA0 panic=-1 quiet"
    assert args[args.index("-kernel") + 1] == "/c/vmlinuz"
    assert args[args.index("-initrd") + 1] == "/c/initrd.img"
    assert args[args.index("-serial") + 1] == "stdio"
    assert "-no-reboot" in args and "-nodefaults" in args
    assert pairs.get("-display") == "none" or "-display" in args
    drives = [args[i + 1] for i, a in enumerate(args) if a == "-drive"]
    assert drives[0].startswith("file=/c/root.img,") and "snapshot=on" in drives[0]
    assert drives[1].startswith("file=/t/work.img,") and "snapshot" not in drives[1]
    devices = [args[i + 1] for i, a in enumerate(args) if a == "-device"]
    assert devices == ["virtio-blk-pci,drive=disk0", "virtio-blk-pci,drive=disk1"]


def test_x86_64_argv_uses_q35_and_the_pc_serial_port():
    spec = VmSpec("x86_64", Path("k"), Path("i"), "", "max", 1, 512, "kvm")
    args = argv(spec)
    assert args[0] == "qemu-system-x86_64"
    assert args[args.index("-M") + 1] == "q35"
    assert args[args.index("-accel") + 1] == "kvm"
    assert args[args.index("-append") + 1] == "console=ttyS0 panic=-1"
    assert "-drive" not in args


def test_markers_are_parsed_and_other_lines_ignored():
    assert parse_marker("archbench-guest: booted") == ("booted", None, "")
    assert parse_marker("\rarchbench-guest: build-start\r") == ("build-start", None, "")
    assert parse_marker("archbench-guest: build-end rc=0") == ("build-end", 0, "")
    assert parse_marker("archbench-guest: build-end rc=127") == ("build-end", 127, "")
    assert parse_marker("archbench-guest: fatal no /dev/vdb") == ("fatal", None, "no /dev/vdb")
    assert parse_marker("[    0.0] Kernel command line: console=ttyS0 panic=-1") is None
    assert parse_marker("archbench-cc: gcc (Debian 12.2.0-14) 12.2.0") is None
    assert parse_marker("booted") is None


def test_init_prints_every_marker_the_harness_waits_for():
    text = init_script(["virtio_blk", "ext4"])
    assert text.startswith("#!/bin/sh\n")
    assert "for m in virtio_blk ext4; do" in text
    for event in ("booted", "build-start", 'build-end rc=$rc"'):
        assert f"mark {event}" in text or f'mark "{event}' in text
    assert "chroot /newroot /bin/sh /work/build.sh" in text
    assert "poweroff -f" in text and "/proc/sysrq-trigger" in text


def test_build_script_sets_the_contract_environment_and_copies_artifacts():
    scenario = resolve_scenario("cbench")
    env = build_env(scenario, cross=False, platform=KNOWN["linux/arm64"])
    text = build_script('make -j"$JOBS" && true', 3, [("build/cbench", "cbench")], env)
    assert "export SIZE=3 " in text
    assert "export TARGETARCH=arm64 TARGETVARIANT= HOST_TRIPLET=aarch64-linux-gnu" in text
    assert "CROSS_TRIPLET=\n" in text and 'export CC="${P}gcc"' in text
    assert 'JOBS="$(nproc)"' in text
    assert '( make -j"$JOBS" && true\n) || exit $?' in text
    assert text.rstrip().endswith("cp build/cbench /work/out/cbench")


def test_modules_load_after_their_dependencies():
    order = load_order(MODULES_DEP, GUEST_MODULES)
    names = [module_name(p) for p in order]
    assert sorted(names) == sorted(
        [
            "virtio",
            "virtio_ring",
            "virtio_pci_legacy_dev",
            "virtio_pci_modern_dev",
            "virtio_pci",
            "virtio_blk",
            "crc16",
            "mbcache",
            "jbd2",
            "ext4",
            "crc32c_generic",
        ]
    )
    for module, needs in [
        ("virtio_pci", ["virtio", "virtio_ring", "virtio_pci_modern_dev"]),
        ("virtio_blk", ["virtio", "virtio_ring"]),
        ("ext4", ["jbd2", "mbcache", "crc16"]),
    ]:
        for dep in needs:
            assert names.index(dep) < names.index(module), (dep, module)
    assert "kernel/fs/ext4/ext4.ko.xz" in order
    assert "dummy_net" not in names


def test_builtin_modules_are_skipped_and_missing_ones_named():
    builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n"
    names = [module_name(p) for p in load_order(MODULES_DEP, ["virtio_blk"], builtin)]
    assert names == ["virtio_blk"]
    with pytest.raises(GuestError, match="kernel module nvme is neither built in"):
        load_order(MODULES_DEP, ["nvme"])


def test_module_names_fold_dashes_and_compression_suffixes():
    assert module_name("kernel/drivers/net/dummy-net.ko") == "dummy_net"
    assert module_name("kernel/fs/ext4/ext4.ko.zst") == "ext4"


def test_cache_key_depends_on_every_input_but_not_package_order():
    base = cache_key("arm64", "bookworm", ["gcc", "libc6-dev"], "http://deb.debian.org/debian")
    assert base == cache_key(
        "arm64", "bookworm", ["libc6-dev", "gcc"], "http://deb.debian.org/debian/"
    )
    assert len(base) == 64
    others = {
        cache_key("amd64", "bookworm", ["gcc", "libc6-dev"], "http://deb.debian.org/debian"),
        cache_key("arm64", "trixie", ["gcc", "libc6-dev"], "http://deb.debian.org/debian"),
        cache_key(
            "arm64", "bookworm", ["gcc", "libc6-dev", "make"], "http://deb.debian.org/debian"
        ),
        cache_key("arm64", "bookworm", ["gcc", "libc6-dev"], "http://mirror.example/debian"),
    }
    assert base not in others and len(others) == 4


def test_guest_memory_is_half_of_available_capped_and_floored():
    gib = 1024 * 1024 * 1024
    assert guest_memory_mb(20 * gib) == 4096
    assert guest_memory_mb(3 * gib) == 1536
    assert guest_memory_mb(gib // 4) == 512


def test_initramfs_is_a_newc_archive_with_console_init_and_modules(tmp_path: Path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF-busybox")
    mods = tmp_path / "mods"
    (mods / "kernel").mkdir(parents=True)
    (mods / "kernel" / "virtio_blk.ko").write_bytes(b"module-bytes")
    data = gzip.decompress(build_initramfs(busybox, mods, ["kernel/virtio_blk.ko"]))
    entries = _read_newc(data)
    assert entries["dev/console"][0] == stat.S_IFCHR | 0o600
    assert entries["dev/console"][2] == (5, 1)
    assert entries["bin/busybox"][1] == b"\x7fELF-busybox"
    assert entries["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox", (0, 0))
    assert entries["modules/virtio_blk.ko"][1] == b"module-bytes"
    assert b"for m in virtio_blk; do" in entries["init"][1]
    assert entries["init"][0] == stat.S_IFREG | 0o755
    assert list(entries)[-1] == "TRAILER!!!"


def _read_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    out: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name_at = pos + 110
        name = data[name_at : name_at + namesize - 1].decode()
        body = name_at + namesize + (-(110 + namesize) % 4)
        out[name] = (mode, data[body : body + size], (rmaj, rmin))
        pos = body + size + (-size % 4)
        if name == "TRAILER!!!":
            break
    return out


def test_qemu_system_strategy_serves_amd64_and_arm64_only():
    strategy = REGISTRY["qemu-system"]
    host = Host(AMD64, qemu_system=frozenset({"aarch64", "x86_64", "riscv64"}))
    riscv = strategy.probe_platform(KNOWN["linux/riscv64"], host)
    assert not riscv.available and "no guest recipe for linux/riscv64" in riscv.reason


def test_packing_dockerfile_only_copies():
    settings = BuildSettings("127.0.0.1:5000", 1, "debian:bookworm", 60, host=AMD64)
    text = pack_dockerfile(resolve_scenario("cbench"), settings)
    assert text == (
        "FROM debian:bookworm\n"
        "COPY art/cbench /usr/local/bin/cbench\n"
        'CMD ["/usr/local/bin/cbench"]\n'
    )
