"""How fast `emo dataset prepare` runs, and how close its head speeds are to the truth.

Makes HD source footage with a known head motion (the demo portrait, public domain, rolling
back and forth on a sine, 1280x720 at 25 fps, H.264 CRF 18, with the demo speech looped),
prepares it, and prints:
- wall time (with its real-time factor) and CPU time per frame of each pass (1: decode + face
  detection + cut detection; 2: decode + crop + face mesh + encode) and overall: on a shared
  machine the CPU figures are the steadier ones;
- the measured head speed against the true roll speed, frame by frame: median absolute error
  and correlation (degrees per frame), for the +-2-frame difference the dataset stores and,
  recomputed from the stored mesh points, for +-1 and +-3 frames.

    python benchmarks/dataset_prepare.py [--seconds 20] [--resolution 512] [--amplitude 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PORTRAIT = REPO / "manifests" / "assets" / "astronaut.jpg"
SPEECH = REPO / "manifests" / "assets" / "hello_en.wav"
FPS = 25
WIDTH, HEIGHT = 1280, 720
PERIOD_S = 3.0  # one roll cycle every 3 s


def roll_angle(frame: int, amplitude: float) -> float:
    return amplitude * np.sin(2 * np.pi * frame / (PERIOD_S * FPS))


def make_footage(path: Path, seconds: float, amplitude: float) -> None:
    import av
    import cv2

    from emo_cli.media.audio import decode_audio
    from emo_cli.media.image import load_portrait

    face = cv2.resize(load_portrait(PORTRAIT), (600, 600), interpolation=cv2.INTER_AREA)
    canvas = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    top, left = (HEIGHT - 600) // 2, (WIDTH - 600) // 2
    speech = decode_audio(SPEECH, 16000)
    frames = round(seconds * FPS)
    audio = np.resize(speech, frames * 640).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for i in range(frames):
            matrix = cv2.getRotationMatrix2D((300, 300), roll_angle(i, amplitude), 1.0)
            image = canvas.copy()
            image[top : top + 600, left : left + 600] = cv2.warpAffine(face, matrix, (600, 600),
                                                                       borderMode=cv2.BORDER_REFLECT)  # fmt: skip
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        for start in range(0, audio.size, 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, start : start + 1024].copy(), format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the footage")
    parser.add_argument("--resolution", type=int, default=512, help="training crop side")
    parser.add_argument("--amplitude", type=float, default=12.0, help="roll amplitude in degrees")
    args = parser.parse_args()

    from emo_cli.training import PrepareSettings, load_index, prepare_dataset
    from emo_cli.training.headpose import SPEED_SPAN, head_speeds

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "presenter.mp4"
        make_footage(source, args.seconds, args.amplitude)
        marks: dict[str, float] = {}

        def events(event: dict) -> None:
            if event["event"] == "video_started":
                marks["start"], marks["start_cpu"] = time.perf_counter(), time.process_time()
            elif event["event"] == "video_progress" and "pass1" not in marks and event["done"] * 2 >= event["total"]:
                marks["pass1"], marks["pass1_cpu"] = time.perf_counter(), time.process_time()
            elif event["event"] == "video_done":
                marks["end"], marks["end_cpu"] = time.perf_counter(), time.process_time()

        summary = prepare_dataset([source], Path(tmp) / "data", PrepareSettings(resolution=args.resolution),
                                  events=events)  # fmt: skip
        if summary.failed:
            raise SystemExit(f"prepare failed: {summary.failed[0].error}")
        index = load_index(Path(tmp) / "data")
        footage = args.seconds
        print(f"footage: {footage:g} s at {WIDTH}x{HEIGHT}, {FPS} fps; crops {args.resolution}px")
        for label, a, b in (("pass 1 (decode, detect, cuts)", "start", "pass1"),
                            ("pass 2 (decode, crop, mesh, encode)", "pass1", "end"), ("whole video", "start", "end")):
            wall, cpu = marks[b] - marks[a], marks[b + "_cpu"] - marks[a + "_cpu"]
            print(f"{label:37s} wall {wall:6.1f} s ({footage / wall:5.2f}x real time), "
                  f"CPU {cpu:6.1f} s ({1000 * cpu / (footage * FPS):5.1f} ms/frame)")  # fmt: skip
        kept = sum(c["frames"] for c in index["clips"])
        print(f"clips: {len(index['clips'])}, frames kept {kept} of {round(footage * FPS)}")
        for span in (SPEED_SPAN, 1, 3):
            measured, truth = [], []
            for clip in index["clips"]:
                if span == SPEED_SPAN:
                    speeds = np.load(Path(tmp) / "data" / clip["files"]["speed"]["path"])
                else:
                    speeds = head_speeds(np.load(Path(tmp) / "data" / clip["files"]["landmarks"]["path"]), span)
                frames = np.arange(clip["start_frame"], clip["start_frame"] + clip["frames"])
                # The true speed at frame t: half the roll between frames t - 1 and t + 1.
                true = np.abs(np.array([roll_angle(t + 1, args.amplitude) - roll_angle(t - 1, args.amplitude)
                                        for t in frames])) / 2  # fmt: skip
                measured.append(speeds[3:-3])  # the clip ends use one-sided differences
                truth.append(true[3:-3])
            measured, truth = np.concatenate(measured), np.concatenate(truth)
            label = "stored, +-2 frames" if span == SPEED_SPAN else f"recomputed, +-{span} frame{'s' * (span > 1)}"
            print(f"head speed ({label}): true mean {truth.mean():.3f}, measured mean {measured.mean():.3f} "
                  f"degrees/frame; median abs error {np.median(np.abs(measured - truth)):.3f}; correlation "
                  f"{np.corrcoef(measured, truth)[0, 1]:.3f}")  # fmt: skip
        print(f"speed percentiles 10/50/90: {index['speed']['percentiles'][10]:.3f} / "
              f"{index['speed']['percentiles'][50]:.3f} / {index['speed']['percentiles'][90]:.3f} degrees/frame")  # fmt: skip


if __name__ == "__main__":
    main()
