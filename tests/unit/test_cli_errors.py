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
        (["run", "--reps", "0"], "bad --reps 0"),
        (["run", "--registry", "nope"], "bad registry 'nope'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
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
