"""The Dockerfile parser on files written the way teams write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.platforms import parse_platform
from bench.scenarios.dockerfile import expand, instruction_for, parse, parse_file, vertex_ref

DATA = Path(__file__).resolve().parents[2] / "data" / "dockerfiles"
AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")


def test_c_make_every_run_on_the_target() -> None:
    df = parse_file(DATA / "c-make" / "Dockerfile")
    assert [s.label for s in df.stages] == ["build", "stage-1"]
    build = df.stage("build")
    assert [(i.line, i.keyword) for i in build.instructions] == [
        (4, "RUN"),
        (8, "WORKDIR"),
        (9, "COPY"),
        (10, "COPY"),
        (11, "RUN"),
    ]
    # Continuation lines are joined into one instruction that starts on its first line.
    assert build.instructions[0].args.startswith("apt-get update && apt-get install -y")
    assert "rm -rf /var/lib/apt/lists/*" in build.instructions[0].args
    final = df.final()
    assert final.needs == (0,)
    assert [s.label for s in df.chain()] == ["build", "stage-1"]
    assert not any(df.on_build_platform(s) for s in df.stages)
    assert df.base_images(None, ARM64, AMD64) == ["debian:bookworm"]


def test_go_service_build_stage_on_buildplatform() -> None:
    df = parse_file(DATA / "go-service" / "Dockerfile")
    assert df.global_args == (("GO_PACKAGE", "golang-go"),)
    builder, runtime = df.stages
    assert builder.platform == "$BUILDPLATFORM"
    assert df.on_build_platform(builder)
    assert not df.on_build_platform(runtime)
    assert runtime.needs == (builder.index,)
    assert [s.label for s in df.chain("runtime")] == ["builder", "runtime"]
    assert [s.label for s in df.chain("builder")] == ["builder"]
    go_build = builder.runs[-1]
    assert "GOARCH=$TARGETARCH" in go_build.args
    assert go_build.line == 14


def test_tarball_image_derived_stages_and_targetarch() -> None:
    df = parse_file(DATA / "tarball-image" / "Dockerfile")
    base, tools, final = df.stages
    assert tools.parent == base.index and final.parent == tools.index
    assert [s.label for s in df.chain()] == ["base", "tools", "stage-2"]
    add = next(i for i in tools.instructions if i.keyword == "ADD")
    values = {"TARGETARCH": "arm64"}
    assert expand(add.args, values) == "dist/tool-arm64.tar.gz /opt/tool/"


def test_a_stage_built_on_a_buildplatform_stage_runs_there() -> None:
    df = parse(
        "ARG BUILDER=$BUILDPLATFORM\n"
        "FROM --platform=${BUILDER} debian:bookworm AS xx\n"
        "RUN true\n"
        "FROM xx AS compile\n"
        "RUN make\n"
        "FROM debian:bookworm\n"
        "COPY --from=compile /out /out\n"
    )
    assert df.on_build_platform(df.stage("compile"))  # derived, through a global ARG
    assert not df.on_build_platform(df.final())
    assert [s.label for s in df.chain()] == ["xx", "compile", "stage-2"]


def test_unreached_stages_are_left_out_of_the_chain() -> None:
    df = parse(
        "FROM debian:bookworm AS test\nRUN make check\n"
        "FROM debian:bookworm AS build\nRUN make\n"
        "FROM debian:trixie\nRUN --mount=type=bind,from=build,target=/b cp /b/x /x\n"
    )
    assert [s.label for s in df.chain()] == ["build", "stage-2"]
    assert df.base_images(None, ARM64, AMD64) == ["debian:bookworm", "debian:trixie"]


def test_heredoc_comments_escape_directive_and_syntax() -> None:
    df = parse(
        "# syntax=docker/dockerfile:1\n"
        "FROM debian:bookworm\n"
        "RUN <<EOF\n"
        "set -e\n"
        "echo hi \\\n"
        "EOF\n"
        "# a comment\n"
        "COPY a \\\n"
        "  # inside\n"
        "  /a\n"
    )
    assert df.syntax == "docker/dockerfile:1"
    run, copy = df.stages[0].instructions
    assert run.line == 3 and "echo hi" in run.args
    assert copy.line == 8 and copy.args == "a /a"
    df2 = parse("# escape=`\nFROM debian:bookworm\nRUN echo a `\n  b\n")
    assert df2.stages[0].instructions[0].args == "echo a b"


def test_build_args_override_global_defaults() -> None:
    df = parse("ARG SUITE=bookworm\nFROM debian:${SUITE}\n", build_args={"SUITE": "trixie"})
    assert df.base_images(None, ARM64, AMD64) == ["debian:trixie"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("RUN true\nFROM debian:bookworm\n", "RUN before the first FROM"),
        ("# nothing here\n", "no FROM instruction"),
        ("FROM --platform=linux/arm64\n", "FROM names no image"),
    ],
)
def test_bad_files_are_named_with_the_line(text: str, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        parse(text, Path("x/Dockerfile"))


def test_unknown_target_names_the_valid_stages() -> None:
    df = parse_file(DATA / "go-service" / "Dockerfile")
    with pytest.raises(UsageError, match="no stage 'tests'; valid: builder, runtime"):
        df.chain("tests")


def test_vertex_names_map_to_instructions() -> None:
    df = parse_file(DATA / "c-make" / "Dockerfile")
    ref = vertex_ref("[build 2/6] RUN apt-get update  && apt-get install -y gcc")
    assert ref is not None and ref.stage == "build" and ref.step == 2
    found = instruction_for(df, ref)
    assert found is not None and found[1].line == 4 and found[1].keyword == "RUN"
    # Multi-platform builds prefix the platform; WORKDIR counts as a step.
    ref = vertex_ref('[linux/arm64 build 6/6] RUN make -j"$(nproc)"')
    assert ref is not None and ref.platform == "linux/arm64"
    found = instruction_for(df, ref)
    assert found is not None and found[1].line == 11
    ref = vertex_ref("[stage-1 2/2] COPY --from=build /usr/local/bin/cksum32 /x")
    assert ref is not None
    found = instruction_for(df, ref)
    assert found is not None and found[0].label == "stage-1" and found[1].keyword == "COPY"
    # A stage built on another stage has no FROM step of its own.
    tar = parse_file(DATA / "tarball-image" / "Dockerfile")
    ref = vertex_ref("[tools 2/2] RUN ln -s /opt/tool/bin/tool /usr/local/bin/tool")
    assert ref is not None
    found = instruction_for(tar, ref)
    assert found is not None and found[1].line == 11 and found[1].keyword == "RUN"
    assert vertex_ref("[internal] load build context") is None
    assert vertex_ref("exporting to image") is None


def test_expand_forms() -> None:
    values = {"TARGETARCH": "arm64", "EMPTY": ""}
    assert expand("a-$TARGETARCH-${TARGETARCH}", values) == "a-arm64-arm64"
    assert expand("${EMPTY:-x}${TARGETARCH:+y}${NOPE}", values) == "xy"
    assert expand("$NOPE", values, keep_unknown=True) == "$NOPE"
