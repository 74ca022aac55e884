"""At which resolutions the invisible watermark survives which copies: the table the README's
watermark limits come from.

For each output resolution, the demo portrait with a small moving patch (photographic content,
as in provenance_cost.py) is marked and encoded exactly as `emo render` does (the U plane
marked as it is converted for the segment encoder, CRF 18), then copied with ffmpeg's libx264
(preset medium, yuv420p, metadata dropped) and read back as `emo verify` reads it. A cell is
"ok" when the payload is read exactly with a valid check, else the number of the 48 bits read
right. `emo verify` votes over at most 120 frames; on a still portrait more frames change
little, because the damage a re-encode does to a block repeats in every frame.

    python benchmarks/watermark_limits.py [--seconds 2] [--sizes 64,128,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from provenance_cost import JOB_ID, encode, portrait_frames  # noqa: E402

COPIES = (
    ("as rendered", None),
    ("CRF 23", ["-crf", "23"]),
    ("CRF 28", ["-crf", "28"]),
    ("0.5x CRF 23", ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-crf", "23"]),
    ("0.5x CRF 28", ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-crf", "28"]),
)
SIZES = (64, 128, 192, 256, 320, 384, 448, 512, 640, 768, 1024)


def read(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each test video (25 fps)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="resolutions, comma-separated")
    args = parser.parse_args()
    from emo_cli.media.ffmpeg import run_ffmpeg
    from emo_cli.provenance import watermark as wm

    want = wm.payload_bits(JOB_ID)
    count = max(1, round(args.seconds * 25))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {count} frames per video")
    print(f"{'resolution':>10}  " + "  ".join(f"{name:>12}" for name, _ in COPIES))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in (int(s) for s in args.sizes.split(",")):
            final = folder / f"final-{size}.mp4"
            encode(portrait_frames(size, count), final, mark_u=wm.FrameMarker(want).mark_u_cells)
            cells = []
            for _, copy_args in COPIES:
                path = final
                if copy_args is not None:
                    path = folder / "copy.mp4"
                    run_ffmpeg(["-i", str(final), "-c:v", "libx264", "-pix_fmt", "yuv420p", *copy_args,
                                "-map_metadata", "-1", str(path)], what="re-encode", file=final)  # fmt: skip
                found = wm.detect(read(path))
                right = int(np.sum(np.array(found.bits) == want))
                exact = found.marked and found.job_id_prefix == JOB_ID[: wm.ID_BITS // 4]
                cells.append("ok" if exact else f"{right}/48 bits")
            print(f"{size:>10}  " + "  ".join(f"{cell:>12}" for cell in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
