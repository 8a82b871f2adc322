from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.scenarios.loader import available_scenarios, load_scenario_file, resolve_scenario

DATA = Path(__file__).resolve().parents[2] / "data" / "scenarios"

GOOD = """
name = "t"
platforms = ["linux/amd64"]
[source]
path = "src"
[toolchain]
packages = ["gcc"]
[build]
command = "make"
[artifacts]
"build/t" = "/usr/local/bin/t"
[smoke]
command = ["/usr/local/bin/t"]
expect = "arch={arch}"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "t.c").write_text("int main(void){return 0;}\n")
    f = tmp_path / "scenario.toml"
    f.write_text(text)
    return f


def test_default_scenario_loads():
    s = resolve_scenario("cbench")
    assert [p.name for p in s.platforms] == ["linux/amd64", "linux/arm64"]
    assert s.artifacts[0].path == "/usr/local/bin/cbench"
    assert "cbench" in available_scenarios()


def test_expected_output_fills_the_platforms_uname(tmp_path):
    s = load_scenario_file(write(tmp_path, GOOD))
    assert s.expected_output(s.platforms[0]) == "arch=x86_64"


def test_a_build_may_declare_it_needs_target_code(tmp_path):
    assert not load_scenario_file(write(tmp_path, GOOD)).needs_target_code
    declared = GOOD.replace('command = "make"', 'command = "make"\nneeds_target_code = true')
    assert load_scenario_file(write(tmp_path, declared)).needs_target_code


def test_digest_changes_with_the_source(tmp_path):
    f = write(tmp_path, GOOD)
    before = load_scenario_file(f).digest()
    (tmp_path / "src" / "t.c").write_text("int main(void){return 1;}\n")
    assert load_scenario_file(f).digest() != before


@pytest.mark.parametrize(
    "old,new,needle",
    [
        ('name = "t"', 'name = "t"\ncolour = "red"', "unknown key 'colour'"),
        ('"build/t" = "/usr/local/bin/t"', "", "artifacts must name at least one file"),
        ('"build/t" = "/usr/local/bin/t"', '"build/t" = "usr/local/bin/t"', "artifacts.build/t"),
        ('platforms = ["linux/amd64"]', 'platforms = ["linux/mips"]', "key platforms"),
        ('command = "make"', "", "missing key build.command"),
        ('path = "src"', 'path = "nowhere"', "source.path"),
        ('command = "make"', 'command = "make"\ntouch = "nope.c"', "build.touch names 'nope.c'"),
        ('command = "make"', 'command = "make"\njobs = 4', "unknown key build.'jobs'"),
        ('path = "src"', 'path = "src"\nsha256 = "ab"', "key source.url is missing"),
        ('path = "src"', 'url = "ftp://x/y.tar.gz"\nsha256 = "' + "0" * 64 + '"', "source.url"),
        ('path = "src"', 'url = "http://x/y.tar.gz"\nsha256 = "abc"', "source.sha256"),
        ('expect = "arch={arch}"', 'expect = "a"\n[test]\ncommand = "t"', "key test.command"),
        ('name = "t"', 'name = "t"\nkind = "docker"', "kind is 'docker'; valid: compile, image"),
        ('command = "make"', 'command = "make"\nenv = { 1X = "y" }', "key build.env.1X"),
        (
            'command = "make"',
            'command = "make"\nneeds_target_code = "yes"',
            "key build.needs_target_code must be a bool, not str",
        ),
    ],
)
def test_mistakes_name_the_file_and_the_key(tmp_path, old, new, needle):
    f = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(UsageError) as exc:
        load_scenario_file(f)
    assert str(f) in str(exc.value)
    assert needle in str(exc.value)


def test_unknown_scenario_names_the_valid_ones():
    with pytest.raises(UsageError) as exc:
        resolve_scenario("nosuch")
    assert "'nosuch'" in str(exc.value) and "cbench" in str(exc.value)


def test_scenario_by_path():
    assert resolve_scenario(str(DATA / "tiny")).name == "tiny"
    assert resolve_scenario(str(DATA / "tiny" / "scenario.toml")).name == "tiny"


IMAGE = """
name = "img"
kind = "image"
platforms = ["linux/amd64", "linux/arm64"]
artifacts = ["/usr/bin/jq"]
[source]
path = "src"
[image]
packages = ["jq"]
run = "true"
add = { "t.c" = "/opt/t.c" }
env = { LANG = "C.UTF-8" }
[cross]
packages = ["locales"]
run = "true"
[smoke]
command = ["jq", "--version"]
expect = "jq-"
"""


def test_image_scenario_parses_its_recipe(tmp_path):
    s = load_scenario_file(write(tmp_path, IMAGE))
    assert s.kind == "image"
    assert s.image.packages == ("jq",) and s.image.add == (("t.c", "/opt/t.c"),)
    assert s.artifacts[0].path == "/usr/bin/jq" and s.artifacts[0].built == ""
    assert s.cross_packages == ("locales",)


@pytest.mark.parametrize(
    "old,new,needle",
    [
        ("[image]", "[toolchain]\npackages = []\n[image]", "key toolchain belongs to kind"),
        ('artifacts = ["/usr/bin/jq"]', 'artifacts = ["usr/bin/jq"]', "key artifacts"),
        ('"/opt/t.c"', '"opt"', "key image.add.t.c"),
        ('run = "true"\nadd', "steps = 3\nadd", "unknown key image.'steps'"),
    ],
)
def test_image_scenario_mistakes_name_the_key(tmp_path, old, new, needle):
    f = write(tmp_path, IMAGE.replace(old, new, 1))
    with pytest.raises(UsageError) as exc:
        load_scenario_file(f)
    assert str(f) in str(exc.value) and needle in str(exc.value)


def test_fetched_scenarios_declare_checksums_and_tests():
    zlib = resolve_scenario("zlib")
    assert zlib.source_main is not None and len(zlib.source_main.sha256) == 64
    assert zlib.test_command and zlib.test_expect
    pkg = resolve_scenario("pkgimage")
    assert {f.dest for f in pkg.source_fetch} == {
        "payload/busybox-amd64.tar.xz",
        "payload/busybox-arm64.tar.xz",
    }
    go = resolve_scenario("gobench")
    assert go.cross_packages == ("golang-go",) and dict(go.cross_env)["GOARCH"] == "$TARGETARCH"


def test_digest_of_a_fetched_scenario_needs_no_download(tmp_path, monkeypatch):
    import bench.scenarios.sources

    def boom(*_a, **_k):
        raise AssertionError("digest must not download")

    monkeypatch.setattr(bench.scenarios.sources, "fetch", boom)
    assert len(resolve_scenario("zlib").digest()) == 64


def test_fill_knows_the_oci_architecture():
    from bench.platforms import KNOWN
    from bench.scenarios.loader import fill

    arm = KNOWN["linux/arm/v7"]
    assert fill("{arch} {architecture} {platform}", arm) == "armv7l arm linux/arm/v7"


def test_every_shipped_scenario_loads():
    names = available_scenarios()
    assert {"cbench", "zlib", "gobench", "pkgimage"} <= set(names)
    for name in names:
        resolve_scenario(name)


def test_a_scenarios_folder_in_the_working_folder_comes_before_the_shipped_ones(
    tmp_path, monkeypatch
):
    import shutil

    from bench.scenarios.loader import scenario_roots, shipped_scenarios

    shutil.copytree(DATA / "tiny", tmp_path / "scenarios" / "cbench")
    shutil.copytree(DATA / "tiny", tmp_path / "scenarios" / "mine")
    monkeypatch.chdir(tmp_path)
    assert scenario_roots() == [tmp_path / "scenarios", shipped_scenarios().resolve()]
    assert resolve_scenario("cbench").file == tmp_path / "scenarios" / "cbench" / "scenario.toml"
    assert resolve_scenario("zlib").file.is_relative_to(shipped_scenarios())
    assert {"cbench", "mine", "zlib"} <= set(available_scenarios())


def test_the_shipped_scenarios_are_found_from_any_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_scenario("cbench").name == "cbench"
    assert "cbench" in available_scenarios()
