import pytest

from bench.errors import UsageError
from bench.platforms import KNOWN, parse_platform


@pytest.mark.parametrize(
    "text,name",
    [
        ("linux/arm64", "linux/arm64"),
        ("arm64", "linux/arm64"),
        ("aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("arm/v7", "linux/arm/v7"),
        ("amd64", "linux/amd64"),
        ("LINUX/AMD64", "linux/amd64"),
        ("riscv64", "linux/riscv64"),
        ("ppc64le", "linux/ppc64le"),
    ],
)
def test_parse_accepts_oci_and_buildx_short_forms(text, name):
    assert parse_platform(text).name == name


def test_unknown_platform_names_the_bad_value_and_the_valid_ones():
    with pytest.raises(UsageError) as exc:
        parse_platform("linux/mips")
    message = str(exc.value)
    assert "'linux/mips'" in message
    for name in KNOWN:
        assert name in message
    assert "\n" not in message


def test_slugs_are_unique_and_tag_safe():
    slugs = [p.slug for p in KNOWN.values()]
    assert len(set(slugs)) == len(slugs)
    assert all("/" not in s for s in slugs)
