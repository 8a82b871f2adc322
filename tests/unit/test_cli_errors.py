import pytest

from bench.cli import main


@pytest.mark.parametrize(
    "argv,needle",
    [
        (
            ["run", "--strategy", "warp"],
            "unknown strategy 'warp'; valid: native, qemu-system, qemu-user, cross",
        ),
        (["run", "--platform", "linux/mips"], "unknown platform 'linux/mips'; valid: linux/amd64"),
        (["run", "nosuch"], "unknown scenario 'nosuch'; valid: cbench"),
        (["run", "--size", "0"], "bad --size '0'"),
        (["run", "--reps", "0"], "argument --reps: expected a whole number from 1 to 1000"),
        (["run", "--registry", "nope"], "bad registry 'nope'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "--order", "random"], "--order: invalid choice: 'random'"),
        (["run", "--attribute", "some"], "--attribute: invalid choice: 'some'"),
        (["run", "--cache", "hot"], "--cache: invalid choice: 'hot'"),
        (["export", "--format", "xls"], "--format: invalid choice: 'xls'"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    errors = capsys.readouterr().err.strip()
    assert needle in errors
    assert len(errors.splitlines()) == 1


def test_strategy_flag_accepts_comma_lists(capsys):
    assert main(["run", "--strategy", "cross,warp"]) == 2
    assert "'warp'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "old,new,key",
    [
        ('packages = ["gcc", "libc6-dev"]', 'packages = ["gcc"]\ncompiler = "clang"', "toolchain."),
        ('"build/tiny" = "/usr/local/bin/tiny"', "", "artifacts"),
        ('platforms = ["linux/amd64", "linux/arm64"]', 'platforms = ["linux/sparc"]', "platforms"),
    ],
    ids=["unknown-key", "missing-artifact", "bad-platform"],
)
def test_a_scenario_file_mistake_is_one_line_naming_file_and_key(capsys, tmp_path, old, new, key):
    import shutil

    from tests.conftest import DATA

    folder = tmp_path / "tiny"
    shutil.copytree(DATA / "scenarios" / "tiny", folder)
    file = folder / "scenario.toml"
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new))
    assert main(["run", str(file), "--strategy", "cross"]) == 2
    errors = capsys.readouterr().err.strip()
    assert len(errors.splitlines()) == 1
    assert str(file) in errors and key in errors
