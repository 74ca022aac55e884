"""Contact sheet of a rendered video: a grid of evenly spaced frames, each with its time and
the audio's loudness at that moment, so a reader can see the mouth follow the speech.

    python docs/contact_sheet.py                      # renders manifests/demo.yaml if needed
    python docs/contact_sheet.py VIDEO.mp4 --output sheet.png --columns 4 --rows 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "manifests" / "demo.yaml"
DEMO_OUTPUT = REPO / "manifests" / "out" / "astronaut" / "en.mp4"


def decode(video: Path) -> tuple[list[np.ndarray], float, np.ndarray, int]:
    """Every frame (RGB), the frame rate, and the mono audio with its sample rate."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(video)) as container:
        chunks = [frame.to_ndarray() for frame in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    audio = np.concatenate([c.reshape(c.shape[0], -1).mean(axis=0) if c.ndim > 1 else c for c in chunks])
    return frames, fps, audio.astype(np.float64), rate


def sheet(video: Path, columns: int, rows: int, tile: int) -> np.ndarray:
    import cv2

    frames, fps, audio, rate = decode(video)
    per = rate / fps
    level = np.array([
        10 * np.log10(np.mean(audio[int(i * per) : int((i + 1) * per)] ** 2) + 1e-12) for i in range(len(frames))
    ])  # fmt: skip
    loud = np.clip((level - (np.percentile(level, 95) - 40)) / 40, 0, 1)
    picks = np.linspace(0, len(frames) - 1, columns * rows + 2)[1:-1].round().astype(int)
    bar = 14
    grid = np.full((rows * (tile + bar), columns * tile, 3), 255, dtype=np.uint8)
    for n, index in enumerate(picks):
        r, c = divmod(n, columns)
        y, x = r * (tile + bar), c * tile
        grid[y : y + tile, x : x + tile] = cv2.resize(
            frames[index], (tile, tile), interpolation=cv2.INTER_AREA
        )
        cv2.putText(grid, f"{index / fps:.2f} s", (x + 6, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255),
                    2, cv2.LINE_AA)  # fmt: skip
        cv2.putText(grid, f"{index / fps:.2f} s", (x + 6, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20),
                    1, cv2.LINE_AA)  # fmt: skip
        # Loudness of the audio under this frame.
        grid[y + tile + 3 : y + tile + bar - 3, x + 4 : x + 4 + int((tile - 8) * loud[index])] = (200, 60, 40)
    return grid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEMO_OUTPUT)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "warp_demo_contact_sheet.png")
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tile", type=int, default=224)
    args = parser.parse_args()
    if args.video == DEMO_OUTPUT:
        from emo_cli.execution import render_manifest

        summary = render_manifest(DEMO)  # resumes: nothing to do when the demo is rendered
        if summary.exit_code:
            raise SystemExit(f"the demo did not render: {summary.failed[0].error}")
    from PIL import Image

    from emo_cli.fsutil import atomic_path

    image = Image.fromarray(sheet(args.video, args.columns, args.rows, args.tile))
    with atomic_path(args.output) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
