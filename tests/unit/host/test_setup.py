from bench.host.setup import buildkitd_toml, daemon_config
from bench.tools.registry import config_text, split_ref


def test_daemon_config_merges_and_is_idempotent():
    current = {"log-level": "warn", "registry-mirrors": ["http://other:1"]}
    once = daemon_config(current, "127.0.0.1:5000")
    assert once["log-level"] == "warn"
    assert once["features"] == {"containerd-snapshotter": True}
    assert once["registry-mirrors"] == ["http://other:1", "http://127.0.0.1:5000"]
    assert once["insecure-registries"] == ["127.0.0.1:5000"]
    assert daemon_config(once, "127.0.0.1:5000") == once


def test_registry_config_binds_the_given_loopback_address():
    text = config_text("127.0.0.1:5001")
    assert "addr: 127.0.0.1:5001" in text and "htpasswd" not in text


def test_buildkitd_toml_is_the_reference_workflows():
    text = buildkitd_toml("127.0.0.1:5000")
    assert '[registry."127.0.0.1:5000"]' in text and "http = true" in text
    assert 'mirrors = ["127.0.0.1:5000"]' in text


def test_split_ref():
    assert split_ref("127.0.0.1:5000/archbench/cbench:cross") == (
        "127.0.0.1:5000",
        "archbench/cbench",
        "cross",
    )
    assert split_ref("127.0.0.1:5000/a/b@sha256:00") == ("127.0.0.1:5000", "a/b", "sha256:00")
