"""report.html renders in headless Chromium: every chart is there and decodes, and the page
is not blank."""

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.report.writer import write_report
from tests.conftest import DATA, need

RUNS = DATA / "runs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Recorded into the DOM before --dump-dom serialises it: one marker per image that decoded.
PROBE = """<script>
window.addEventListener('load', () => {
  for (const img of document.images) {
    img.setAttribute('data-decoded', img.complete && img.naturalWidth > 0 ? 'yes' : 'no');
  }
  document.body.setAttribute('data-probed', String(document.images.length));
});
</script>"""


def chromium_flags(profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    need(path is not None, "chromium (apt-get install -y chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(sorted(p for p in RUNS.iterdir() if p.is_dir()), out)
    return out / "report.html"


def test_page_embeds_only_decodable_png_data(page):
    html = page.read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(sources) >= 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_every_image_decodes_in_chromium(chromium, page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [
            chromium,
            *chromium_flags(tmp_path / "profile"),
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    images = re.findall(r"<img [^>]*>", dom)
    expected = len(re.findall(r"<img ", page.read_text()))
    assert len(images) == expected
    assert f'data-probed="{expected}"' in dom
    assert all('data-decoded="yes"' in img for img in images), images


def test_screenshot_is_not_blank(chromium, page, tmp_path):
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            *chromium_flags(tmp_path / "profile"),
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            "--virtual-time-budget=5000",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes().startswith(PNG_MAGIC)
    try:
        from PIL import Image

        colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 24)
        distinct = len(colours or [])
    except ImportError:
        import matplotlib.image
        import numpy as np

        pixels = matplotlib.image.imread(shot)
        distinct = len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))
    assert distinct > 1
