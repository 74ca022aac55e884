"""The `warp` mouth as a viewer sees it, measured with the face mesh on the output frames.

Renders (backend straight, 512x512, 25 fps) the committed espeak-ng sentences in English,
Spanish and German, one after another with pauses (`tests/backends/warp/fixtures`, whose phone
timings espeak-ng reported), on the astronaut (lips parted in the photo) and on its
closed-mouth version, and the committed `hello_*` clips with the default head motion. Prints,
per portrait and language:

- the median inner-lip aperture (face heights) at bilabial phones (m, b, p), at open vowels,
  and in silence, and the bilabial / open-vowel ratio (target <= 0.5; silence <= bilabial);
- the mean mouth width / lip height at rounded (o, u) and spread (i, e) vowels;
- lip sync: the correlation of aperture with loudness at the best lag within one frame
  (target >= 0.75) and SSIM outside the mouth and jaw against the portrait (target >= 0.92).

    python benchmarks/warp_mouth.py [--repeat 3]   # --repeat: the sentences looped N times

The measurement code is the tests' own (`tests/backends/warp/warp_measure.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "backends" / "warp"), str(REPO / "tests")]

from warp_measure import (  # noqa: E402
    BILABIALS,
    FIXTURES,
    FPS,
    LANGUAGES,
    OPEN_VOWELS,
    RATE,
    ROUNDED_VOWELS,
    SPREAD_VOWELS,
    FaceTrack,
    fixture_speech,
    frame_loudness,
    job_input,
    lagged_correlations,
    lower_face_mask,
    phone_frames,
    speech,
    ssim_outside,
)

PORTRAITS = {
    "open mouth": REPO / "manifests" / "assets" / "astronaut.jpg",
    "closed mouth": FIXTURES / "astronaut_closed.jpg",
}
PAUSE_S = 0.6


def render(backend, portrait: Path, audio: np.ndarray, **options) -> tuple[object, np.ndarray]:
    renderer = backend.start_job(job_input(portrait, audio, **options))
    frames = renderer.render_chunk(0, renderer.num_frames, renderer.initial_state()).frames
    renderer.close()
    return renderer, frames


def figures(track, phones) -> tuple[float, float, float, float]:
    """Median aperture at bilabials and at open vowels, mean width/height at rounded and spread vowels."""
    n = len(track.mouth)
    at = lambda names: phone_frames(phones, names, n)  # noqa: E731
    return (float(np.median(track.mouth[at(BILABIALS)])), float(np.median(track.mouth[at(OPEN_VOWELS)])),
            float(np.mean(track.shape[at(ROUNDED_VOWELS)])), float(np.mean(track.shape[at(SPREAD_VOWELS)])))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="loop the three sentences this many times")
    args = parser.parse_args()

    from emo_cli.backends.face import face_mesh_landmarks
    from emo_cli.backends.warp import WarpBackend

    backend = WarpBackend()
    pieces, phones, langs, t = [], [], [], 0.0
    for _ in range(args.repeat):
        for lang in LANGUAGES:
            audio, timing = fixture_speech(lang)
            pieces += [audio, np.zeros(int(PAUSE_S * RATE), np.float32)]
            phones += [(name, start + t, end + t) for name, start, end in timing]
            langs.append((lang, t, t + len(audio) / RATE))
            t += len(audio) / RATE + PAUSE_S
    audio = np.concatenate(pieces)
    print(f"{len(audio) / RATE:.1f} s of espeak-ng speech ({', '.join(LANGUAGES)}) x{args.repeat}, 512x512, 25 fps")
    print(f"{'portrait':13} {'lang':4} {'bilabial':>8} {'open':>6} {'ratio':>5} {'silence':>7}   {'rounded':>7} {'spread':>6}")
    for label, portrait in PORTRAITS.items():
        _, frames = render(backend, portrait, audio, head_motion=0)
        track = FaceTrack(frames)
        n = len(frames)
        centres = (np.arange(n) + 0.5) / FPS
        pauses = np.ones(n, dtype=bool)
        for _, start, end in langs:
            pauses &= ~((centres >= start - 0.1) & (centres < end + 0.16))  # 4 frames after the last word
        for lang, start, end in [*langs[: len(LANGUAGES)], ("all", 0.0, t)]:
            mine = [phone for phone in phones if lang == "all" or start <= phone[1] < end]
            bilabial, vowel, rounded, spread = figures(track, mine)
            silence = float(np.median(track.mouth[pauses]))
            silence_text = f"{silence:7.3f}" if lang == "all" else " " * 7
            print(f"{label:13} {lang:4} {bilabial:8.3f} {vowel:6.3f} {bilabial / vowel:5.2f} {silence_text}"
                  f"   {rounded:7.2f} {spread:6.2f}")  # fmt: skip
    print("lip sync and identity, default head motion (the open-mouth portrait):")
    for name in ("hello_en", "hello_fr", "hello_es"):
        clip = speech(REPO / "manifests" / "assets" / f"{name}.wav")
        renderer, frames = render(backend, PORTRAITS["open mouth"], clip)
        r = lagged_correlations(FaceTrack(frames).mouth, frame_loudness(clip, len(frames)), max_lag=1)
        best = max(r, key=r.get)
        rest = renderer.frame
        mask = lower_face_mask(face_mesh_landmarks(rest), rest.shape[:2])
        scores = np.array([ssim_outside(rest, frame, mask) for frame in frames])
        print(f"  {name}: aperture ~ loudness r = {r[best]:.3f} at lag {best:+d}; "
              f"SSIM outside the mouth and jaw min {scores.min():.3f}, mean {scores.mean():.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
