import json
from pathlib import Path

from bench.validate.image import image_platforms, is_attestation

DATA = Path(__file__).resolve().parents[2] / "data"


def test_attestations_are_recognised_and_not_counted_as_platforms():
    body = json.loads((DATA / "index-qemu-user.json").read_text())
    assert sum(is_attestation(e) for e in body["manifests"]) == 2
    found = image_platforms(body)
    assert set(found) == {"linux/amd64", "linux/arm64"}
    assert all(d.startswith("sha256:") for d in found.values())


def test_variant_is_part_of_the_platform_name():
    body = {
        "manifests": [
            {
                "digest": "sha256:1",
                "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
            }
        ]
    }
    assert image_platforms(body) == {"linux/arm/v7": "sha256:1"}
