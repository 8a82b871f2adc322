"""Nodes: names and endpoints checked where they enter, contexts created and removed
only by archbench, and each node judged by its own architecture."""

import json

import pytest

from bench.cli import main
from bench.errors import EngineUnavailable, UsageError
from bench.host import nodes, teardown
from bench.platforms import parse_platform
from bench.tools import contexts

INFO_AMD64 = json.dumps(
    {
        "ID": "engine-2",
        "Name": "box",
        "Architecture": "x86_64",
        "NCPU": 2,
        "MemTotal": 8 * 2**30 + 12345,
        "KernelVersion": "6.1.0-27-cloud-amd64",
        "ServerVersion": "26.1.5",
    }
)


@pytest.fixture
def docker_contexts(tmp_path, monkeypatch):
    """The client's contexts as a dict, and archbench's node list under tmp_path."""
    book = tmp_path / "nodes.json"
    monkeypatch.setattr(nodes, "NODES_FILE", book)
    known: dict[str, str] = {}
    answers: dict[str, str] = {}

    def create(name, endpoint, description, tls_dir=None):
        assert name not in known
        known[name] = endpoint

    def remove(name):
        del known[name]

    def inspect(name):
        return contexts.Context(name, known[name]) if name in known else None

    def engine(name, timeout=20):
        if name not in answers:
            raise EngineUnavailable(f"node {name}: Cannot connect to the Docker daemon")
        return contexts.engine_of(name, answers[name])

    monkeypatch.setattr(contexts, "create", create)
    monkeypatch.setattr(contexts, "remove", remove)
    monkeypatch.setattr(contexts, "inspect", inspect)
    monkeypatch.setattr(contexts, "engine", engine)
    return {"known": known, "answers": answers, "book": book}


@pytest.mark.parametrize("name", ["Node2", "a/b", "-x", "", "default", "a" * 65, "x\n"])
def test_bad_names_are_refused(name):
    with pytest.raises(UsageError, match="NAME"):
        nodes.check_name(name)


def test_good_name_passes():
    assert nodes.check_name("arm-box.1") == "arm-box.1"


@pytest.fixture
def tls_dir(tmp_path):
    d = tmp_path / "tls"
    d.mkdir()
    for n in ("ca.pem", "cert.pem", "key.pem"):
        (d / n).write_text("x")
    return d


@pytest.mark.parametrize(
    "endpoint",
    [
        "unix:///run/node2/docker.sock",
        "ssh://builder@arm-box.example",
        "ssh://arm-box:2222",
        "ssh://10.0.0.7",
    ],
)
def test_unix_and_ssh_endpoints_pass(endpoint):
    assert nodes.check_endpoint(endpoint) == endpoint


def test_tcp_endpoint_needs_tls(tls_dir):
    with pytest.raises(UsageError, match="needs --tls-dir"):
        nodes.check_endpoint("tcp://arm-box:2376")
    assert nodes.check_endpoint("tcp://arm-box:2376", tls_dir) == "tcp://arm-box:2376"
    (tls_dir / "key.pem").unlink()
    with pytest.raises(UsageError, match="lacks key.pem"):
        nodes.check_endpoint("tcp://arm-box:2376", tls_dir)


@pytest.mark.parametrize(
    "endpoint,needle",
    [
        ("http://arm-box:2375", "expected unix:///PATH"),
        ("npipe:////./pipe/docker", "expected unix:///PATH"),
        ("unix://relative/sock", "unix:///ABSOLUTE/PATH"),
        ("unix:///run/../etc/sock", "unix:///ABSOLUTE/PATH"),
        ("ssh://user:secret@box", "no password"),
        ("ssh://box/path", "expected unix:///PATH"),
        ("ssh://bad_host!", "no valid host"),
        ("tcp://box", "tcp://HOST:PORT"),
        ("tcp://box:99999", "port must be"),
        ("unix:///run/a,ca=/x", "expected unix:///PATH"),
    ],
)
def test_bad_endpoints_are_refused(endpoint, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        nodes.check_endpoint(endpoint)


def test_push_path_defaults_by_endpoint():
    assert nodes.default_push("unix:///run/n/docker.sock") == "registry"
    assert nodes.default_push("ssh://box") == "archive"
    assert nodes.default_push("tcp://box:2376") == "archive"


def test_add_creates_a_context_and_rm_removes_it(docker_contexts):
    node = nodes.add("n2", "unix:///run/n2/docker.sock", [parse_platform("amd64")])
    assert node.created_context and node.push == "registry"
    assert docker_contexts["known"] == {"n2": "unix:///run/n2/docker.sock"}
    assert nodes.load().nodes["n2"].platforms == ("linux/amd64",)
    with pytest.raises(UsageError, match="exists"):
        nodes.add("n2", "unix:///run/n2/docker.sock", [])
    nodes.remove("n2")
    assert docker_contexts["known"] == {}
    assert nodes.load().nodes == {}
    with pytest.raises(UsageError, match="no node 'n2'"):
        nodes.remove("n2")


def test_an_existing_context_is_adopted_only_for_the_same_endpoint(docker_contexts):
    docker_contexts["known"]["mine"] = "ssh://me@box"
    with pytest.raises(UsageError, match="exists for ssh://me@box"):
        nodes.add("mine", "ssh://other@box", [])
    node = nodes.add("mine", "ssh://me@box", [parse_platform("arm64")])
    assert not node.created_context
    nodes.remove("mine")
    assert docker_contexts["known"] == {"mine": "ssh://me@box"}  # not archbench's to remove


def test_teardown_removes_only_the_contexts_and_builders_archbench_created(
    docker_contexts, monkeypatch
):
    docker_contexts["known"]["theirs"] = "ssh://me@box"
    nodes.add("theirs", "ssh://me@box", [parse_platform("arm64")])
    nodes.add("ours", "unix:///run/ours/docker.sock", [parse_platform("amd64")])
    book = nodes.load()
    book.builders.append("archbench-bk")
    nodes.save(book)
    removed_builders: list[str] = []
    monkeypatch.setattr(teardown, "_remove_named_builder", removed_builders.append)
    actions = teardown.node_actions(docker_contexts["book"])
    said = [a.what for a in actions]
    assert any("buildx builder archbench-bk" in w for w in said)
    assert any(w.startswith("docker context ours") for w in said)
    kept = [a for a in actions if a.keep]
    assert [a.what for a in kept] == ["docker context theirs: it existed before archbench"]
    for a in actions:
        if not a.keep:
            a.do()
    assert removed_builders == ["archbench-bk"]
    assert docker_contexts["known"] == {"theirs": "ssh://me@box"}
    assert not docker_contexts["book"].exists()
    assert teardown.node_actions(docker_contexts["book"]) == []


def test_a_node_is_native_only_for_its_own_architecture(docker_contexts):
    docker_contexts["answers"]["n2"] = INFO_AMD64
    node = nodes.add("n2", "unix:///run/n2/docker.sock", [parse_platform("amd64")])
    st = nodes.state(node)
    assert st.platform == parse_platform("linux/amd64")
    assert st.native_for("linux/amd64") and st.verdict("linux/amd64") == "native"
    assert not st.native_for("linux/arm64")
    assert st.verdict("linux/arm64").startswith("emulated (qemu-user on n2, a x86_64 node)")


def test_a_node_that_does_not_answer_is_never_native(docker_contexts):
    node = nodes.add("gone", "ssh://box", [parse_platform("arm64")])
    st = nodes.state(node)
    assert st.engine is None and not st.native_for("linux/arm64")
    assert st.verdict("linux/arm64").startswith("unknown (node does not answer")


def test_engine_info_of_a_stopped_daemon_is_unavailable():
    with pytest.raises(EngineUnavailable, match="Cannot connect"):
        contexts.engine_of("n", json.dumps({"ServerErrors": ["Cannot connect to the daemon"]}))
    with pytest.raises(EngineUnavailable):
        contexts.engine_of("n", "not json")


def test_host_class_is_hardware_not_a_name(docker_contexts):
    cls = nodes.host_class("AMD EPYC 7B13", 2, 8 * 2**30 + 99, "6.1.0-27-cloud-amd64")
    assert cls == "AMD EPYC 7B13, 2 cores, 8 GiB, Linux 6.1"
    docker_contexts["answers"]["n2"] = INFO_AMD64
    local = nodes.state(nodes.add("n2", "unix:///run/n2/docker.sock", []))
    assert nodes.node_class(local, "AMD EPYC 7B13") == cls
    docker_contexts["answers"]["far"] = INFO_AMD64
    far = nodes.state(nodes.add("far", "ssh://box", []))
    assert nodes.node_class(far, "AMD EPYC 7B13").startswith("unknown x86_64 CPU, 2 cores")


def test_resolve_names_unknown_nodes(docker_contexts):
    nodes.add("n2", "unix:///run/n2/docker.sock", [])
    assert [n.name for n in nodes.resolve(["n2"])] == ["n2"]
    with pytest.raises(UsageError, match="unknown node 'n3' in --nodes; nodes: n2"):
        nodes.resolve(["n3"])


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["nodes", "add", "Bad", "unix:///x.sock"], "bad node NAME"),
        (["nodes", "add", "n1", "http://box:2375"], "bad ENDPOINT 'http://box:2375'"),
        (["nodes", "add", "n1", "tcp://box:2376"], "needs --tls-dir"),
        (["nodes", "add", "n1", "unix:///x.sock", "--platform", "mips"], "unknown platform"),
        (["nodes", "rm", "nosuch"], "no node 'nosuch'"),
    ],
)
def test_nodes_cli_bad_input_is_one_line_exit_2(docker_contexts, capsys, argv, needle):
    assert main(argv) == 2
    errors = capsys.readouterr().err.strip()
    assert needle in errors
    assert len(errors.splitlines()) == 1
    assert docker_contexts["known"] == {}


def test_nodes_cli_add_ls_rm(docker_contexts, capsys):
    docker_contexts["answers"]["n2"] = INFO_AMD64
    assert (
        main(["nodes", "add", "n2", "unix:///run/n2/docker.sock", "--platform", "amd64,arm64"]) == 0
    )
    err = capsys.readouterr().err
    assert "linux/amd64: native" in err and "linux/arm64: emulated" in err
    assert main(["nodes", "ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["architecture"] == "x86_64" and listed[0]["platform"] == "linux/amd64"
    assert listed[0]["declared"]["linux/arm64"].startswith("emulated")
    assert main(["nodes", "rm", "n2"]) == 0
    assert docker_contexts["known"] == {}


def test_nodes_cli_add_without_platform_takes_the_nodes_own(docker_contexts, capsys):
    docker_contexts["answers"]["n2"] = INFO_AMD64
    assert main(["nodes", "add", "n2", "unix:///run/n2/docker.sock"]) == 0
    assert nodes.load().nodes["n2"].platforms == ("linux/amd64",)
    # A node that does not answer cannot say what it is: nothing is kept.
    assert main(["nodes", "add", "gone", "ssh://box"]) == 2
    assert "gone" not in nodes.load().nodes and "gone" not in docker_contexts["known"]
