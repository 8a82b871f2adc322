"""An OCI archive pushed from this host: every blob and child manifest before the image's
own tag, nothing rewritten, and a damaged archive refused."""

import hashlib
import io
import json
import tarfile

import pytest

from bench.tools import ociarchive, registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def write_archive(path, blobs, top, corrupt=None):
    with tarfile.open(path, "w") as tar:

        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [top]}).encode())
        for digest, data in blobs:
            add(
                f"blobs/sha256/{digest.split(':')[1]}",
                corrupt if digest == top["digest"] and corrupt else data,
            )


@pytest.fixture
def image(tmp_path):
    config = blob(b'{"architecture": "amd64", "os": "linux"}')
    layer = blob(b"layer bytes")
    manifest = blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config[0],
                    "size": len(config[1]),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer[0],
                        "size": len(layer[1]),
                    }
                ],
            }
        ).encode()
    )
    index = blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": manifest[0],
                        "size": len(manifest[1]),
                        "platform": {"architecture": "amd64", "os": "linux"},
                    }
                ],
            }
        ).encode()
    )
    top = {"mediaType": OCI_INDEX, "digest": index[0], "size": len(index[1])}
    return {"blobs": [config, layer, manifest, index], "top": top, "path": tmp_path / "image.tar"}


@pytest.fixture
def fake_registry(monkeypatch):
    calls = []
    held = {"sha256:" + hashlib.sha256(b"layer bytes").hexdigest()}  # already there
    monkeypatch.setattr(registry, "has_blob", lambda host, repo, d, timeout=30: d in held)

    def put_blob(host, repo, digest, data, timeout=600):
        assert hashlib.sha256(data).hexdigest() == digest.split(":")[1]
        calls.append(("blob", digest))

    monkeypatch.setattr(registry, "put_blob", put_blob)
    monkeypatch.setattr(
        registry,
        "put_manifest",
        lambda ref, raw, media, timeout=30: calls.append(("manifest", ref, media)),
    )
    return calls


def test_the_archive_is_pushed_blobs_first_and_its_own_digest_kept(image, fake_registry):
    write_archive(image["path"], image["blobs"], image["top"])
    tag = "127.0.0.1:5000/archbench/t:native-amd64-on-far"
    digest = ociarchive.push(image["path"], tag)
    assert digest == image["top"]["digest"]
    config, layer, manifest, index = (d for d, _ in image["blobs"])
    assert fake_registry == [
        ("blob", config),  # the layer the registry holds is not sent again
        ("manifest", f"127.0.0.1:5000/archbench/t@{manifest}", OCI_MANIFEST),
        ("manifest", tag, OCI_INDEX),
    ]


def test_a_damaged_archive_is_refused(image, fake_registry):
    write_archive(image["path"], image["blobs"], image["top"], corrupt=b"not the index")
    with pytest.raises(ociarchive.ArchiveInvalid, match="does not match its digest"):
        ociarchive.push(image["path"], "127.0.0.1:5000/archbench/t:x")
    assert fake_registry == []
    write_archive(image["path"], image["blobs"][1:], image["top"])
    with pytest.raises(ociarchive.ArchiveInvalid, match="lacks blob"):
        ociarchive.push(image["path"], "127.0.0.1:5000/archbench/t:x")


@pytest.mark.parametrize(
    "doc", [b"{}", b'{"manifests": []}', b"not json", b'{"manifests": [1, 2]}']
)
def test_an_index_json_must_name_one_image(doc):
    with pytest.raises(ociarchive.ArchiveInvalid):
        ociarchive.top_descriptor(doc)
