import base64
import json
from pathlib import Path

from bench.tools.buildtrace import categorize, parse

DATA = Path(__file__).resolve().parents[2] / "data"


def test_real_rawjson_stream_gives_timed_steps():
    trace = parse((DATA / "rawjson-copy-push.json").read_text())
    names = [s.name for s in trace.steps]
    assert "[2/2] COPY a /a" in names
    assert any(n.startswith("pushing") for n in names)
    by = trace.seconds_by_category()
    assert by["copy"] > 0 and by["export"] > 0
    assert all(s.seconds >= 0 for s in trace.steps)


def test_logs_errors_and_trailing_text_are_rendered():
    log = base64.b64encode(b"archbench-cc: gcc 12\n").decode()
    stream = json.dumps(
        {
            "vertexes": [
                {
                    "digest": "d1",
                    "name": "[build 3/3] RUN make",
                    "started": "2026-01-01T00:00:00.5Z",
                    "completed": "2026-01-01T00:00:02.75Z",
                    "error": "process did not complete",
                }
            ],
            "logs": [{"vertex": "d1", "stream": 1, "data": log}],
        }
    )
    trace = parse(stream + "\nERROR: failed to solve: exit code 2\n")
    assert trace.steps[0].seconds == 2.25 and trace.steps[0].category == "compile"
    assert "[[build 3/3] RUN make] archbench-cc: gcc 12" in trace.text
    assert "ERROR: failed to solve" in trace.text
    assert trace.errors == ("[build 3/3] RUN make: process did not complete",)


def test_categories():
    assert categorize("[toolchain 2/2] RUN apt-get install gcc") == ("toolchain", "toolchain")
    assert categorize("[build 4/4] RUN make") == ("build", "compile")
    assert categorize("[stage-2 2/2] COPY --from=build /out/x /x")[1] == "copy"
    assert (
        categorize("[internal] load metadata for docker.io/library/debian:bookworm")[1]
        == "base-image"
    )
    assert categorize("exporting to image")[1] == "export"
