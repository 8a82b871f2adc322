"""Naming an emulator: --emulator values, the archive's offer (madison), the package that
holds the binaries, and what `qemu-<arch> --version` says."""

import pytest

from bench.errors import UsageError
from bench.tools import apt, emulators
from tests.conftest import DATA

EMU = DATA / "emulators"
TRIXIE = "1:10.0.13+ds-0+deb13u1"
BOOKWORM = "1:7.2+dfsg-7+deb12u18+b3"
SECURITY = "1:7.2+dfsg-7+deb12u15"


def offered() -> list[apt.ArchiveVersion]:
    rows = apt.parse_madison((EMU / "madison.txt").read_text())
    return [r for r in rows if r.package == "qemu-user-static"]


def test_madison_is_parsed_per_package_and_suite():
    rows = apt.parse_madison((EMU / "madison.txt").read_text())
    assert len(rows) == 6
    assert [(r.version, r.suite) for r in offered()] == [
        (TRIXIE, "trixie"),
        (BOOKWORM, "bookworm"),
        (SECURITY, "bookworm-security"),
    ]
    assert offered()[2].uri == "http://deb.debian.org/debian-security"


def test_madison_skips_source_lines_and_noise():
    text = (
        "   qemu | 1:7.2+dfsg-7 | http://deb.debian.org/debian bookworm/main Sources\n"
        "N: something\n"
        "qemu-user | 1:9.2 | http://example.org/debian sid/main amd64 Packages\n"
    )
    assert apt.parse_madison(text) == [
        apt.ArchiveVersion("qemu-user", "1:9.2", "sid", "http://example.org/debian")
    ]


def test_a_suite_names_its_version():
    assert emulators.choose("trixie", offered()).version == TRIXIE
    assert emulators.choose("bookworm", offered()).version == BOOKWORM
    assert emulators.choose("bookworm-security", offered()).version == SECURITY


@pytest.mark.parametrize("spec", ["10.0", "10", "10.0.13", TRIXIE, "10.0.13+ds-0+deb13u1"])
def test_a_version_matching_one_package_is_accepted(spec):
    choice = emulators.choose(spec, offered())
    assert (choice.version, choice.suite) == (TRIXIE, "trixie")


def test_a_version_matching_two_packages_lists_both():
    with pytest.raises(UsageError) as caught:
        emulators.choose("7.2", offered())
    message = str(caught.value)
    assert "matches 2 versions" in message
    assert f"{BOOKWORM} (bookworm)" in message and f"{SECURITY} (bookworm-security)" in message
    assert TRIXIE not in message
    assert emulators.choose("7.2+dfsg-7+deb12u15", offered()).suite == "bookworm-security"


def test_a_version_matching_nothing_lists_the_offer():
    with pytest.raises(UsageError, match=r"no reachable QEMU version matches.*10\.0\.13"):
        emulators.choose("8.1", offered())
    # 1 is not a prefix of 10.0.13 on a dot boundary
    with pytest.raises(UsageError, match="no reachable"):
        emulators.choose("1", offered())


def test_an_unreachable_suite_names_the_reachable_ones():
    with pytest.raises(UsageError, match="reachable: trixie, bookworm, bookworm-security"):
        emulators.choose("sid", offered())


def test_specs_are_split_deduplicated_and_checked():
    assert emulators.parse_specs([]) == ("host",)
    assert emulators.parse_specs(["host,trixie", "7.2", "trixie"]) == ("host", "trixie", "7.2")
    for bad in ("../x", "a b", "-rf", "x/y"):
        with pytest.raises(UsageError):
            emulators.parse_specs([bad])


def test_upstream_and_tag():
    assert emulators.upstream_of(BOOKWORM) == "7.2"
    assert emulators.upstream_of(TRIXIE) == "10.0.13"
    assert emulators.upstream_of("9.2~rc1-1") == "9.2"
    emu = emulators.Emulator("trixie", "qemu-user", TRIXIE, "trixie", "ab", None, ())
    assert emu.tag == "qemu10.0"
    assert emulators.Emulator("host", "qemu-user-static", BOOKWORM, "host", "", None, ()).tag == (
        "host"
    )


def test_the_package_holding_the_binaries_follows_the_dependency():
    trixie = apt.parse_stanza((EMU / "show-trixie-qemu-user-static.txt").read_text())
    bookworm = apt.parse_stanza((EMU / "show-bookworm-qemu-user-static.txt").read_text())
    assert trixie["SHA256"] == "ec7657e2ce2e62ebdd6dc0348523fa7abdfc983266ec52bfc5bd211e3e543d25"
    assert emulators.holding_package(trixie) == "qemu-user"
    assert emulators.holding_package(bookworm) == "qemu-user-static"
    assert emulators.holding_package({"Depends": "qemu-user-binfmt (>= 1)"}) == "qemu-user-static"


def test_stanza_parsing_keeps_the_first_record_and_joins_continuations():
    text = "Package: a\nDescription: one\n two\n\nPackage: b\n"
    assert apt.parse_stanza(text) == {"Package": "a", "Description": "one\ntwo"}


def test_version_output_is_parsed_exactly():
    v = emulators.parse_version_output((EMU / "version-7.2.txt").read_text())
    assert v == emulators.QemuVersion("qemu-aarch64", "7.2.22", "Debian 1:7.2+dfsg-7+deb12u18+b3")
    assert str(v) == "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
    plain = emulators.parse_version_output("qemu-riscv64 version 9.2.0\nCopyright\n")
    assert (plain.upstream, plain.build) == ("9.2.0", "")
    with pytest.raises(ValueError):
        emulators.parse_version_output("Usage: qemu-aarch64 [options]")
    with pytest.raises(ValueError):
        emulators.parse_version_output("")


def test_an_emulator_without_the_target_says_so():
    emu = emulators.Emulator("trixie", "qemu-user", TRIXIE, "trixie", "", None, (("arm", "/x"),))
    assert str(emu.binary("arm")) == "/x"
    with pytest.raises(emulators.EmulatorUnavailable, match="no qemu-s390x"):
        emu.binary("s390x")


def test_a_deb_that_differs_from_the_index_is_refused_and_not_cached(tmp_path, monkeypatch):
    # apt stands in here: what is checked is archbench's own comparison with the index.
    record = apt.parse_stanza((EMU / "show-bookworm-qemu-user-static.txt").read_text())

    def download(package: str, version: str, dest, log_path=None):
        dest.mkdir(parents=True)
        deb = dest / f"{package}_7.2_amd64.deb"
        deb.write_bytes(b"not the archive's file")
        return deb

    monkeypatch.setattr(apt, "package_record", lambda package, version: record)
    monkeypatch.setattr(apt, "download", download)
    choice = apt.ArchiveVersion("qemu-user-static", BOOKWORM, "bookworm", "http://x/debian")
    with pytest.raises(emulators.EmulatorUnavailable, match="but the archive index lists c3e3ba"):
        emulators.fetch("bookworm", choice, tmp_path, say=lambda m: None)
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]


def test_versions_offered_by_either_package_count_once():
    rows = apt.parse_madison((EMU / "madison.txt").read_text())
    assert emulators.choose("10.0", rows).version == TRIXIE
    only_user = [r for r in rows if r.package == "qemu-user"]
    assert emulators.choose("trixie", only_user).version == TRIXIE
    with pytest.raises(UsageError, match="matches 2 versions"):
        emulators.choose("7.2", rows)
