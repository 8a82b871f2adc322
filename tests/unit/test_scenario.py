from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.scenario import available_scenarios, load_scenario_file, resolve_scenario

DATA = Path(__file__).resolve().parent.parent / "data" / "scenarios"

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
    ('command = "make"', 'command = "make"\ntouch = "nope.c"', "key build.touch names 'nope.c'"),
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
