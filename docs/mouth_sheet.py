"""Close-up sheet of the `warp` mouth: the same moments of speech on a portrait whose lips are
parted in the photo (the astronaut) and on a closed-mouth one, so a reader can judge closure,
teeth, rounding and spreading.

Renders the committed German espeak-ng sentence (`tests/backends/warp/fixtures/de.*`, with the
phone timings espeak-ng reported) at 512x512 and crops the mouth, at: silence, a bilabial
(m, b, p), an open vowel, a rounded vowel (o, u), a spread vowel (i, e), and the widest
opening of the sentence at `expression: 2.5`.

    python docs/mouth_sheet.py [--output docs/warp_mouth_closeup.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "backends" / "warp"), str(REPO / "tests")]

COLUMNS = [  # (label, espeak-ng phonemes or None)
    ("silence", None),
    ("m b p", {"m", "b", "p"}),
    ("open: a", {"a", "a:", "A", "A:", "aU"}),
    ("rounded: o u", {"o:", "u:", "U", "O"}),
    ("spread: i e", {"i:", "I", "e:", "E"}),
    ("expression 2.5", None),
]


def moment(phones, names: set[str], fps: int) -> int:
    """The frame at the middle of the longest phone named in `names`."""
    name, start, end = max((p for p in phones if p[0] in names), key=lambda p: p[2] - p[1])
    return int((start + end) / 2 * fps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "warp_mouth_closeup.png")
    parser.add_argument("--tile", type=int, default=240)
    args = parser.parse_args()

    import cv2
    from PIL import Image
    from warp_measure import FIXTURES, FPS, RATE, fixture_speech, job_input

    from emo_cli.backends.warp import WarpBackend
    from emo_cli.fsutil import atomic_path

    backend = WarpBackend()
    audio, phones = fixture_speech("de")
    audio = np.concatenate([audio, np.zeros(RATE, np.float32)])
    portraits = {"lips parted in the photo": REPO / "manifests" / "assets" / "astronaut.jpg",
                 "lips closed in the photo": FIXTURES / "astronaut_closed.jpg"}  # fmt: skip
    tile, bar = args.tile, 22
    sheet = np.full((len(portraits) * (tile + bar) + bar, len(COLUMNS) * tile, 3), 255, dtype=np.uint8)
    for c, (label, _) in enumerate(COLUMNS):
        cv2.putText(sheet, label, (c * tile + 8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    for r, (name, portrait) in enumerate(portraits.items()):
        plain = backend.start_job(job_input(portrait, audio, head_motion=0, blink_rate=0))
        wide = backend.start_job(job_input(portrait, audio, head_motion=0, blink_rate=0, expression=2.5))
        lm, face_h = plain.rig.landmarks, plain.rig.face_height
        cx, cy, half = lm[13, 0], lm[13, 1] + 0.03 * face_h, 0.3 * face_h
        for c, (label, names) in enumerate(COLUMNS):
            if label == "silence":
                renderer, index = plain, plain.num_frames - 5
            elif names is None:
                renderer, index = wide, int(np.argmax(wide.params[:, 0]))
            else:
                renderer, index = plain, moment(phones, names, FPS)
            frame = renderer.render_frame(index)
            crop = frame[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)]
            y = bar + r * (tile + bar)
            sheet[y : y + tile, c * tile : (c + 1) * tile] = cv2.resize(crop, (tile, tile),
                                                                         interpolation=cv2.INTER_CUBIC)  # fmt: skip
            cv2.putText(sheet, f"{index / FPS:.2f} s", (c * tile + 6, y + tile - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 255), 2, cv2.LINE_AA)  # fmt: skip
            cv2.putText(sheet, f"{index / FPS:.2f} s", (c * tile + 6, y + tile - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (20, 20, 20), 1, cv2.LINE_AA)  # fmt: skip
        cv2.putText(sheet, name, (8, y + tile + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    with atomic_path(args.output) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
