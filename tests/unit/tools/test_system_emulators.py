"""A pinned QEMU's system emulator: its closure fetched with mmdebstrap (faked here),
verified against the archive's index, cached per package and version, and started
through its own loader."""

import hashlib
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bench.tools import apt, mmdebstrap, qemu_system
from bench.tools import system_emulators as se
from bench.tools.emulators import Emulator, EmulatorUnavailable

TRIXIE = "1:10.0.13+ds-0+deb13u1"
URI = "http://deb.debian.org/debian"
EMU = Emulator("trixie", "qemu-user", TRIXIE, "trixie", "ab" * 32, Path("/x"), (), "10.0.13")
OFFERED = [
    apt.ArchiveVersion("qemu-system-arm", TRIXIE, "trixie", URI),
    apt.ArchiveVersion("qemu-system-arm", "1:7.2+dfsg-7+deb12u15", "bookworm-security", URI),
]
LOADER = Path("/lib64/ld-linux-x86-64.so.2")
needs_x86_64_loader = pytest.mark.skipif(
    not LOADER.exists() or not Path("/bin/true").exists(), reason="an x86-64 glibc host"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DEBS = {
    ("qemu-system-arm", TRIXIE): b"the qemu-system-arm package",
    ("libc6", "2.41-12"): b"the libc6 package",
}


class FakeArchive:
    """Stands for mmdebstrap: unpacks a closure of two packages into the target, keeping
    their .debs and the archive's package list as `--skip=cleanup/apt` does."""

    def __init__(self, corrupt: str = "") -> None:
        self.calls: list[tuple] = []
        self.corrupt = corrupt

    def __call__(self, arch, suite, target, include, sources, *, log_path=None):
        self.calls.append((arch, suite, target, list(include), list(sources)))
        archives = target / "var/cache/apt/archives"
        lists = target / "var/lib/apt/lists"
        archives.mkdir(parents=True)
        lists.mkdir(parents=True)
        stanzas = []
        for (name, version), data in DEBS.items():
            file = f"{name}_{version.replace(':', '%3a')}_amd64.deb"
            body = b"tampered" if name == self.corrupt else data
            (archives / file).write_bytes(body)
            plain = version.split(":", 1)[-1]
            stanzas.append(
                f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
                f"Filename: pool/main/x/{name}_{plain}_amd64.deb\nSHA256: {sha(data)}\n"
            )
        (lists / "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages").write_text(
            "\n".join(stanzas)
        )
        lib = target / "usr/lib/x86_64-linux-gnu"
        (lib / "qemu").mkdir(parents=True)
        (lib / "ld-linux-x86-64.so.2").write_bytes(b"loader")
        (target / "usr/lib64").mkdir(parents=True)
        (target / "usr/lib64/ld-linux-x86-64.so.2").symlink_to(
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        )
        (target / "usr/bin").mkdir(parents=True)
        # A real dynamic ELF file, so that its PT_INTERP names the loader.
        shutil.copy("/bin/true", target / "usr/bin/qemu-system-aarch64")
        (target / "usr/bin/qemu-system-arm64").symlink_to("qemu-system-aarch64")
        (target / "usr/share/qemu").mkdir(parents=True)
        (target / "usr/share/qemu/bios-256k.bin").symlink_to("/usr/share/seabios/bios-256k.bin")


def provide(tmp_path, archive, *, want=None, checked=None):
    def record(package, version):
        assert (package, version) == ("qemu-system-arm", TRIXIE)
        return {"SHA256": want or sha(DEBS[("qemu-system-arm", TRIXIE)])}

    def check(system):
        if checked is not None:
            checked.append(system)
        return replace(system, reported="10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)")

    return se.provide(
        EMU,
        "aarch64",
        say=lambda m: None,
        cache_dir=tmp_path / "cache",
        record=record,
        offered=lambda packages: OFFERED,
        bootstrap=archive,
        mirror=lambda: URI,
        check=check,
    )


@needs_x86_64_loader
def test_the_closure_is_fetched_verified_cached_and_started_through_its_own_loader(tmp_path):
    archive = FakeArchive()
    system = provide(tmp_path, archive)
    entry = tmp_path / "cache" / "qemu-system-arm_1%3a10.0.13+ds-0+deb13u1"
    root = entry / "root"
    [(arch, suite, target, include, sources)] = archive.calls
    assert (suite, include, sources) == (
        "trixie",
        [f"qemu-system-arm={TRIXIE}"],
        [f"deb {URI} trixie main"],
    )
    assert arch == "amd64" and target.parent.name.startswith(".qemu-system-arm_")
    assert (system.package, system.version, system.suite) == ("qemu-system-arm", TRIXIE, "trixie")
    assert system.sha256 == sha(DEBS[("qemu-system-arm", TRIXIE)])
    assert (system.tag, system.axis, system.qemu_name) == ("qemu10.0", "qemu10.0", "aarch64")
    assert system.packages == (
        ("libc6", "2.41-12", sha(DEBS[("libc6", "2.41-12")])),
        ("qemu-system-arm", TRIXIE, sha(DEBS[("qemu-system-arm", TRIXIE)])),
    )
    lib = root / "usr/lib/x86_64-linux-gnu"
    assert system.launcher.command() == [
        str(lib / "ld-linux-x86-64.so.2"),
        "--inhibit-cache",
        "--library-path",
        f"{lib}:{root / 'usr/lib'}",
        str(root / "usr/bin/qemu-system-aarch64"),
    ]
    assert system.launcher.env() == {"QEMU_MODULE_DIR": str(lib / "qemu")}
    assert system.launcher.data_dirs == (root / "usr/share/qemu",)
    # Links into the host's tree now point inside the closure; the .debs are gone.
    bios = root / "usr/share/qemu/bios-256k.bin"
    assert os.readlink(bios) == "../seabios/bios-256k.bin"
    assert not (root / "var/cache/apt/archives").exists()
    assert not (root / "var/lib/apt/lists").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name != ".lock"] == [entry.name]
    # The second time it comes from the cache: no download.
    again = provide(tmp_path, archive)
    assert len(archive.calls) == 1 and again.launcher == system.launcher
    assert se.cached_system(EMU, "aarch64", tmp_path / "cache").launcher == system.launcher
    assert se.cached_system(EMU, "x86_64", tmp_path / "cache") is None


@needs_x86_64_loader
def test_a_deb_that_does_not_match_the_index_leaves_nothing_in_the_cache(tmp_path):
    with pytest.raises(EmulatorUnavailable, match=r"libc6_2.41-12_amd64.deb has sha256 .*"):
        provide(tmp_path, FakeArchive(corrupt="libc6"))
    with pytest.raises(EmulatorUnavailable, match="the host's apt index lists 00"):
        provide(tmp_path, FakeArchive(), want="00" * 32)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".lock"]


def test_a_target_or_version_without_a_package_is_unavailable_with_the_reason(tmp_path):
    with pytest.raises(EmulatorUnavailable, match="no Debian package of qemu-system-mips"):
        se.provide(EMU, "mips", say=print, cache_dir=tmp_path)
    gone = replace(EMU, version="1:9.9+ds-1")
    with pytest.raises(EmulatorUnavailable, match=r"offered by no suite .* \(offered: 1:10"):
        se.provide(
            gone,
            "aarch64",
            say=print,
            cache_dir=tmp_path,
            record=lambda p, v: {"SHA256": "ab"},
            offered=lambda packages: OFFERED,
            bootstrap=FakeArchive(),
            mirror=lambda: URI,
        )


def test_an_update_suite_brings_the_release_it_builds_on():
    suite, lines = se.sources_for(
        "qemu-system-arm", "1:7.2+dfsg-7+deb12u15", "", OFFERED, "http://mirror/debian"
    )
    assert suite == "bookworm-security"
    assert lines == [f"deb {URI} bookworm-security main", "deb http://mirror/debian bookworm main"]


def test_the_mmdebstrap_command_extracts_the_closure_and_keeps_debs_and_lists():
    argv = mmdebstrap.closure_argv(
        "amd64",
        "trixie",
        Path("/c/root"),
        [f"qemu-system-arm={TRIXIE}"],
        [f"deb {URI} trixie main"],
    )
    assert argv == [
        "mmdebstrap",
        "--variant=extract",
        "--arch=amd64",
        f"--include=qemu-system-arm={TRIXIE}",
        "--skip=cleanup/apt",
        "trixie",
        "/c/root",
        f"deb {URI} trixie main",
    ]


def test_a_pinned_launcher_starts_the_guest_with_its_own_data_and_modules():
    launcher = qemu_system.Launcher(
        Path("/r/ld.so"),
        (Path("/r/lib"), Path("/r/usr/lib")),
        Path("/r/qemu-system-aarch64"),
        (Path("/r/share/qemu"),),
        Path("/r/lib/qemu"),
    )
    spec = qemu_system.VmSpec(
        "aarch64", Path("/k"), Path("/i"), "", "max", 2, 1024, launcher=launcher
    )
    argv = qemu_system.argv(spec)
    assert argv[:8] == [
        "/r/ld.so",
        "--inhibit-cache",
        "--library-path",
        "/r/lib:/r/usr/lib",
        "/r/qemu-system-aarch64",
        "-L",
        "/r/share/qemu",
        "-nodefaults",
    ]
    host = qemu_system.argv(replace(spec, launcher=None))
    assert host[0] == "qemu-system-aarch64" and "-L" not in host
    assert argv[7:] == host[1:]


def test_version_lines_and_loader_listings_are_read():
    v = se.parse_system_version(
        "QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)\nCopyright (c) 2003"
    )
    assert (v.upstream, v.build) == ("10.0.13", "Debian 1:10.0.13+ds-0+deb13u1")
    with pytest.raises(ValueError):
        se.parse_system_version("qemu-aarch64 version 10.0.13")
    listed = se.parse_ld_list(
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibz.so.1 => /c/root/usr/lib/x86_64-linux-gnu/libz.so.1 (0x7f)\n"
        "\tlibfdt.so.1 => /lib/x86_64-linux-gnu/libfdt.so.1 (0x7f)\n"
        "\tlibpmem.so.1 => not found\n"
        "\t/c/root/usr/lib64/ld-linux-x86-64.so.2 (0x7f)\n"
    )
    assert [name for name, _ in listed] == [
        "libz.so.1",
        "libfdt.so.1",
        "libpmem.so.1",
        "ld-linux-x86-64.so.2",
    ]
    assert se.foreign_libraries(listed, Path("/c/root")) == [
        "libfdt.so.1 -> /lib/x86_64-linux-gnu/libfdt.so.1",
        "libpmem.so.1 (not found)",
    ]


@needs_x86_64_loader
def test_a_closure_that_would_load_the_hosts_libraries_is_refused_by_name(tmp_path):
    root = tmp_path / "root"
    lib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    shutil.copy(os.path.realpath(LOADER), lib / "ld-linux-x86-64.so.2")
    (root / "usr/lib64").mkdir()
    (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    )
    (root / "usr/bin").mkdir(parents=True)
    binary = root / "usr/bin/qemu-system-aarch64"
    shutil.copy("/bin/true", binary)
    system = se.SystemEmulator(
        "trixie",
        "qemu10.0",
        "aarch64",
        "qemu-system-arm",
        TRIXIE,
        "trixie",
        "ab",
        root,
        se.launcher_in(root, binary),
        0,
        (),
    )
    # The real loader, told to skip the host's ld.so.cache, still finds the host's libc
    # in its default folders: that is named, not run.
    with pytest.raises(EmulatorUnavailable, match=r"closure lacks: libc\.so\.6 -> /"):
        se.check_runs(system)
    libc = next(
        p
        for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6")
        if Path(p).exists()
    )
    shutil.copy(os.path.realpath(libc), lib / "libc.so.6")
    # Now everything loads from the closure, and what answers --version is no QEMU.
    with pytest.raises(EmulatorUnavailable, match="not a qemu-system --version line"):
        se.check_runs(system)


@needs_x86_64_loader
def test_a_closure_before_merged_usr_searches_both_library_folders(tmp_path):
    root = tmp_path / "root"
    for d in ("lib/x86_64-linux-gnu", "lib64", "usr/lib/x86_64-linux-gnu/qemu", "usr/bin"):
        (root / d).mkdir(parents=True)
    for d in ("usr/share/qemu", "usr/share/seabios"):
        (root / d).mkdir(parents=True)
    (root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(b"loader")
    # bookworm's libc6 links /lib64's loader absolutely: it must lead into the closure.
    (root / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    binary = root / "usr/bin/qemu-system-aarch64"
    shutil.copy("/bin/true", binary)
    with pytest.raises(EmulatorUnavailable, match="leads out of the closure"):
        se.launcher_in(root, binary)
    assert se.relink_absolute(root) == 1
    launcher = se.launcher_in(root, binary)
    assert launcher.loader == root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert launcher.library_path == (
        root / "lib/x86_64-linux-gnu",
        root / "usr/lib/x86_64-linux-gnu",
        root / "usr/lib",
        root / "lib",
    )
    assert launcher.module_dir == root / "usr/lib/x86_64-linux-gnu/qemu"
    assert launcher.data_dirs == (root / "usr/share/qemu", root / "usr/share/seabios")


def test_a_failed_fetch_names_apts_own_error(tmp_path):
    from bench.errors import CommandFailed

    def failing(arch, suite, target, include, sources, *, log_path=None):
        raise CommandFailed(
            ["mmdebstrap", "--variant=extract"],
            25,
            "I: downloading packages with apt...\n"
            f"E: Version '{TRIXIE}' for 'qemu-system-arm' was not found\n"
            "E: apt download failed: E: apt-get --yes install qemu-system-arm failed\n"
            "E: mmdebstrap failed to run",
        )

    with pytest.raises(EmulatorUnavailable) as caught:
        provide(tmp_path, failing)
    assert str(caught.value) == (
        f"fetching qemu-system-arm {TRIXIE} with its libraries from trixie: "
        f"E: Version '{TRIXIE}' for 'qemu-system-arm' was not found"
    )
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".lock"]
