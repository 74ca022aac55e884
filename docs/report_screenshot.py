"""Render a small two-job manifest, write its quality report, and check that the page renders in
a real browser: headless Chromium saves a screenshot, and the script checks it is not blank.

    python docs/report_screenshot.py                         # -> docs/qc_report.jpg
    python docs/report_screenshot.py --output shot.png --keep work/

The manifest (made in a temporary folder from manifests/assets) has the astronaut saying the
English sentence (passes every gate) and the Spanish one with `expression: 0` (a frozen mouth:
fails lip-sync), so the page shows both a passing and a failing job. Chromium comes from
Debian's packages (`apt-get install chromium`); set CHROMIUM to use another binary.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "manifests" / "assets"
MANIFEST = """\
version: 1
output_dir: out
output: "{portrait}/{audio}.mp4"
defaults: {backend: warp, fps: 25, resolution: 384, seed: 0, chunk_frames: 50}
portraits: {astronaut: assets/astronaut.jpg}
audio: {en: assets/hello_en.wav, es: assets/hello_es.wav}
jobs:
  - {portrait: astronaut, audio: en}
  - {portrait: astronaut, audio: es, settings: {warp: {expression: 0}}}
"""


def chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate) or candidate
    sys.exit("no Chromium found: apt-get install chromium, or set CHROMIUM")


def screenshot(page: Path, output: Path, width: int = 1400, height: int = 2300) -> None:
    """Headless Chromium loads `page` from disk (no network) and saves a PNG of it."""
    with tempfile.TemporaryDirectory() as profile:
        argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={output}",
                page.resolve().as_uri()]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not output.is_file():
        sys.exit(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")


def check_not_blank(png: Path) -> int:
    """Distinct colours in the screenshot: a page that failed to render is one or two."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours = len(np.unique(pixels[:: max(1, len(pixels) // 200_000)], axis=0))
    if colours < 50:
        sys.exit(f"{png} looks blank ({colours} colours): the page did not render")
    return colours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "qc_report.jpg",
                        help="the screenshot (.png as Chromium saved it; .jpg smaller, for the docs)")
    parser.add_argument("--keep", type=Path, help="make the manifest and outputs here (kept) instead of a temp dir")
    args = parser.parse_args()

    from emo_cli.api import report_manifest
    from emo_cli.execution import render_manifest

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ASSETS, work / "assets", dirs_exist_ok=True)
        manifest = work / "qc_demo.yaml"
        manifest.write_text(MANIFEST)
        render_manifest(manifest)
        report = report_manifest(manifest)
        shot = Path(tmp) / "screenshot.png"
        screenshot(report.html, shot)
        colours = check_not_blank(shot)
        if args.output.suffix.lower() in (".jpg", ".jpeg"):
            from PIL import Image

            Image.open(shot).convert("RGB").save(args.output, quality=80)
        else:
            shutil.copyfile(shot, args.output)
    size = report.html.stat().st_size if args.keep else None
    print(f"report: {sum(j.passed for j in report.jobs)} of {len(report.jobs)} jobs pass")
    print(f"screenshot: {args.output} ({colours} colours)" + (f"; page {size} bytes" if size else ""))


if __name__ == "__main__":
    main()
