"""`run --dockerfile` and its flags: each bad value is one line naming it, exit 2,
before anything runs."""

from pathlib import Path

import pytest

from bench.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "dockerfiles"
GO = str(DATA / "go-service" / "Dockerfile")


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "--context", "."], "--context needs --dockerfile"),
        (["run", "--target", "x"], "--target needs --dockerfile"),
        (["run", "--build-arg", "A=1"], "--build-arg needs --dockerfile"),
        (["run", "--secret", "id=a"], "--secret and --ssh need --dockerfile"),
        (["run", "--dockerfile", "/nonexistent/Dockerfile"], "no Dockerfile at '/nonexistent/"),
        (["run", "--dockerfile", GO, "--target", "tests"], "no stage 'tests'; valid: builder"),
        (["run", "--dockerfile", GO, "--target", "a", "--target", "b"], "one --target"),
        (["run", "--dockerfile", GO, "--build-arg", "NOVALUE"], "bad --build-arg 'NOVALUE'"),
        (["run", "--dockerfile", GO, "--ssh", "a;b"], "bad --ssh 'a;b'"),
        (["run", "--dockerfile", GO, "--context", "/nonexistent"], "bad --context"),
        (["run", "--bake", "/nonexistent.hcl"], "no bake file at '/nonexistent.hcl'"),
        (["run", "--bake", GO, "--dockerfile", GO], "--bake takes its context"),
        (["export", "--format", "gab"], "--format: invalid choice: 'gab'"),
    ],
)
def test_bad_dockerfile_flags_are_one_line_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    errors = capsys.readouterr().err.strip()
    assert needle in errors
    assert len(errors.splitlines()) == 1
