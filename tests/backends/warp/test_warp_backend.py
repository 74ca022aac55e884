"""The warp backend's contract: inputs it accepts and refuses, options, framing, determinism."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from factories import ASSETS, PORTRAIT, REPO, decoded_frames
from PIL import Image
from warp_measure import FPS, RATE, job_input, speech, write_wav

from emo_cli.backends.base import decode_state, encode_state
from emo_cli.backends.registry import get_backend_class
from emo_cli.backends.warp import WarpBackend
from emo_cli.backends.warp.motion import analyse_audio, blink_curve, mouth_curves
from emo_cli.errors import InputError, RenderError

SMALL = 256  # resolution for tests that check behaviour, not looks


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return speech(ASSETS / "hello_en.wav")[: 2 * RATE]


@pytest.fixture(scope="module")
def backend() -> WarpBackend:
    return WarpBackend()


def render_all(backend, job):
    renderer = backend.start_job(job)
    return renderer, renderer.render_chunk(0, renderer.num_frames, renderer.initial_state()).frames


def test_registered_as_the_default_cpu_backend_with_strict_options():
    from emo_cli.backends.registry import DEFAULT_BACKEND

    assert get_backend_class(DEFAULT_BACKEND) is WarpBackend
    assert (WarpBackend.name, WarpBackend.resources, WarpBackend.sample_rate) == ("warp", "cpu", 16000)
    assert WarpBackend.options_schema["additionalProperties"] is False
    assert WarpBackend.resolve_options({}) == {
        "framing": "crop", "head_motion": 1.0, "expression": 1.0, "blink_rate": 15,
    }  # fmt: skip


def test_importing_and_rendering_never_loads_torch_or_matplotlib(tmp_path):
    script = f"""
import sys
import emo_cli.backends.warp
assert "torch" not in sys.modules
sys.path[:0] = [{str(REPO / "tests" / "backends" / "warp")!r}, {str(REPO / "tests")!r}]
from warp_measure import job_input, speech
from pathlib import Path
renderer = emo_cli.backends.warp.WarpBackend().start_job(
    job_input(Path({str(PORTRAIT)!r}), speech(Path({str(ASSETS / "hello_en.wav")!r}))[:8000], resolution=128))
renderer.render_chunk(0, renderer.num_frames, renderer.initial_state())
assert "torch" not in sys.modules, "torch was imported"
# mediapipe's plotting helpers import matplotlib.pyplot; it is deferred until something uses it.
assert "matplotlib" not in sys.modules, "matplotlib was imported"
import matplotlib.pyplot as plt
from mediapipe.python.solutions import drawing_utils
assert drawing_utils.plt.figure is plt.figure
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


MANIFEST = """\
version: 1
output_dir: out
output: "{{portrait}}/{{audio}}.mp4"
defaults: {{backend: warp, fps: 25, resolution: 128, seed: 0, chunk_frames: 10}}
portraits: {{astro: astronaut.jpg{extra_portraits}}}
audio: {{en: en.wav}}
jobs:
{jobs}
"""


def test_unknown_or_bad_option_is_a_validation_error_naming_the_field(tmp_path, media_dir):
    manifest = media_dir / "bad.yaml"
    job = "  - {portrait: astro, audio: en, settings: {warp: {blink_rat: 3, framing: side}}}"
    manifest.write_text(MANIFEST.format(extra_portraits="", jobs=job).replace("en.wav", "hello_en.wav"))
    proc = subprocess.run([sys.executable, "-m", "emo_cli", "validate", str(manifest)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "jobs[0].settings.warp.blink_rat: unknown key 'blink_rat'" in text
    assert "jobs[0].settings.warp.framing" in text and "'side'" in text
    assert "Traceback" not in text


def test_no_face_is_an_input_error_naming_the_file(tmp_path, backend, voice):
    gradient = np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None].repeat(200, 0).repeat(3, 2)
    path = tmp_path / "gradient.png"
    Image.fromarray(gradient).save(path)
    with pytest.raises(InputError, match=f"no face found in {path}"):
        backend.start_job(job_input(path, voice))


def test_a_cat_is_not_a_face(tmp_path, backend, voice):
    from skimage import data

    path = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    with pytest.raises(InputError, match=f"no face found in {path}"):
        backend.start_job(job_input(path, voice))


def test_a_tiny_face_is_refused_with_its_size(tmp_path, backend, voice):
    path = tmp_path / "tiny.png"
    Image.open(PORTRAIT).resize((160, 160)).save(path)  # the face is about 33 pixels wide
    with pytest.raises(InputError, match=r"the face in .*tiny\.png is only \d+x\d+ pixels"):
        backend.start_job(job_input(path, voice))


def test_of_several_faces_the_largest_is_animated_and_the_log_says_so(tmp_path, backend, voice, caplog):
    astronaut = Image.open(PORTRAIT)
    group = Image.new("RGB", (512 + 384, 512), (200, 200, 210))
    group.paste(astronaut.resize((384, 384)), (0, 128))
    group.paste(astronaut, (384, 0))  # the larger face, on the right
    path = tmp_path / "group.png"
    group.save(path)
    with caplog.at_level("INFO", logger="emo_cli"):
        renderer = backend.start_job(job_input(path, voice[: RATE // 5], resolution=SMALL))
    assert f"2 faces found in {path}; animating the largest" in caplog.text
    alone = backend.start_job(job_input(PORTRAIT, voice[: RATE // 5], resolution=SMALL))
    assert np.abs(renderer.frame.astype(int) - alone.frame).mean() < 8  # the same head-and-shoulders crop


def test_bad_portraits_fail_their_own_jobs_and_the_others_finish(media_dir):
    from emo_cli.execution import render_manifest

    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(media_dir / "wall.png")
    write_wav(media_dir / "en.wav", speech(media_dir / "hello_en.wav")[: RATE // 2])
    manifest = media_dir / "run.yaml"
    manifest.write_text(MANIFEST.format(extra_portraits=", wall: wall.png", jobs=(
        "  - {portrait: wall, audio: en}\n  - {portrait: astro, audio: en}"
    )))  # fmt: skip
    summary = render_manifest(manifest)
    by_name = {r.job: r for r in summary.results}
    assert by_name["astro/en"].status == "done"
    assert len(decoded_frames(by_name["astro/en"].output)) == 13
    failed = by_name["wall/en"]
    assert failed.status == "failed"
    assert "no face found in" in failed.error and "wall.png" in failed.error


@pytest.mark.parametrize("kind", ["exif_rotated", "grayscale", "rgba", "cmyk", "palette"])
def test_image_modes_and_orientation(tmp_path, backend, voice, kind):
    upright = Image.open(PORTRAIT)
    path = tmp_path / f"{kind}.jpg"
    if kind == "exif_rotated":
        # Stored on its side; the EXIF orientation tag (6: rotate 90 degrees clockwise to view).
        exif = Image.Exif()
        exif[0x0112] = 6
        upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    elif kind == "grayscale":
        upright.convert("L").save(path, quality=95)
    elif kind == "rgba":
        path = path.with_suffix(".png")
        rgba = upright.convert("RGBA")
        rgba.putalpha(Image.fromarray(np.full((512, 512), 255, np.uint8)))
        rgba.save(path)
    elif kind == "cmyk":
        upright.convert("CMYK").save(path, quality=95)
    else:
        path = path.with_suffix(".png")
        upright.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    job = job_input(path, voice[: RATE // 2], resolution=SMALL)
    renderer, frames = render_all(backend, job)
    assert frames.shape == (13, SMALL, SMALL, 3)
    reference, _ = render_all(backend, job_input(PORTRAIT, voice[: RATE // 2], resolution=SMALL))
    # Same face, same framing: the frame matches the upright colour portrait's closely.
    grey = lambda img: np.asarray(Image.fromarray(img).convert("L"), dtype=np.float64)  # noqa: E731
    assert np.abs(grey(renderer.frame) - grey(reference.frame)).mean() < 6


def test_full_framing_keeps_the_image_size_rounded_to_even(tmp_path, backend, voice):
    path = tmp_path / "odd.png"
    Image.open(PORTRAIT).crop((11, 0, 11 + 457, 391)).save(path)  # 457 x 391
    renderer, frames = render_all(backend, job_input(path, voice[: RATE // 2], framing="full"))
    assert (renderer.width, renderer.height) == (456, 390)
    assert frames.shape == (13, 390, 456, 3)
    still = backend.start_job(job_input(path, np.zeros(RATE // 2, np.float32), framing="full", head_motion=0,
                                        blink_rate=0))  # fmt: skip
    frame = still.render_chunk(0, 1, still.initial_state()).frames[0]
    changed = np.flatnonzero((frame != np.asarray(Image.open(path))[:390, :456]).any(axis=(1, 2)))
    # Pixel for pixel the photo, but for the smile's parted lips, shut at rest (the upper lip
    # stretches from under the nose, the chin rises a little).
    assert changed.size and below_the_eyes(still.rig.landmarks) < changed.min()
    # The fields fade out below the chin.
    assert changed.max() < still.rig.landmarks[152, 1] + 0.4 * still.rig.face_height


def below_the_eyes(landmarks: np.ndarray) -> int:
    """A row half way from between the eyes to the nose tip: nothing above it moves with the mouth."""
    return int((landmarks[168, 1] + landmarks[4, 1]) / 2)


def test_the_rest_mouth_is_shut_over_the_portraits_teeth(backend):
    """The astronaut smiles with her teeth showing; in silence the lips meet over them, and
    outside the mouth and jaw nothing moves."""
    renderer, frames = render_all(backend, job_input(PORTRAIT, np.zeros(RATE // 5, np.float32), head_motion=0,
                                                     blink_rate=0))  # fmt: skip
    lm = renderer.rig.landmarks
    x = int(round(lm[13, 0]))
    gap = range(int(np.ceil(lm[13, 1])) + 1, int(lm[14, 1]))
    assert len(gap) >= 8  # pixels of teeth between the photo's lips
    portrait, shut = renderer.frame.astype(float), frames[0].astype(float)
    teeth = [portrait[y, x - 2 : x + 3].mean() for y in gap]
    lips = [shut[y, x - 2 : x + 3] for y in gap]
    assert max(teeth) > 220  # the photo shows white teeth there...
    # ...the shut mouth's pink lips and the seam where they meet: no row is light and grey.
    colours = [p.mean(axis=0) for p in lips]
    assert not any(c.mean() > 195 and c[0] - c[2] < 40 for c in colours), colours
    assert sum(c[0] - c[2] > 40 for c in colours) >= len(colours) - 3, colours  # pink, but the seam
    top = below_the_eyes(lm)
    assert np.array_equal(frames[0][:top], renderer.frame[:top])


def test_crop_framing_renders_at_the_resolution(backend, voice):
    renderer, frames = render_all(backend, job_input(PORTRAIT, voice[: RATE // 5], resolution=384))
    assert frames.shape == (5, 384, 384, 3)


def test_no_motion_options_give_the_rest_frame_throughout(backend, voice):
    renderer, frames = render_all(
        backend, job_input(PORTRAIT, voice, resolution=SMALL, expression=0, head_motion=0, blink_rate=0)
    )
    silent, rest = render_all(backend, job_input(PORTRAIT, np.zeros(RATE // 5, np.float32), resolution=SMALL,
                                                 head_motion=0, blink_rate=0))  # fmt: skip
    assert all(np.array_equal(frame, rest[0]) for frame in frames)
    top = below_the_eyes(renderer.rig.landmarks)  # above the mouth, the portrait itself
    assert np.array_equal(rest[0][:top], renderer.frame[:top])


def test_an_open_mouth_shows_upper_teeth_a_dark_cavity_and_lower_teeth(backend, voice):
    """Wide open: bright upper teeth under the upper lip, a dark cavity, and lighter lower teeth
    above the lower lip; the painted gap follows the warped lips on both portraits."""
    closed = Path(__file__).parent / "fixtures" / "astronaut_closed.jpg"
    for portrait in (PORTRAIT, closed):
        renderer = backend.start_job(job_input(portrait, voice, expression=2.0, head_motion=0))
        index = int(np.argmax(renderer.params[:, 0]))
        upper, lower = renderer.mouth.lips(renderer.params[index])
        x = int(round(upper[5, 0]))
        top, bottom = upper[5, 1], lower[5, 1]
        assert bottom - top > 12  # pixels: a clearly open mouth
        frame = renderer.render_frame(index).astype(float)
        column = frame[int(np.ceil(top)) : int(bottom), x - 1 : x + 2].mean(axis=(1, 2))
        third = len(column) // 3
        assert column[:3].max() > 170, (portrait, column)  # upper teeth
        assert column[third : 2 * third].min() < 60, (portrait, column)  # the cavity
        # Lower teeth and tongue, lighter than the cavity.
        assert column[-third:].max() > column[third : 2 * third].min() + 40, (portrait, column)


@pytest.mark.parametrize("framing", ["crop", "full"])
def test_the_warp_fades_to_nothing_at_the_edge_of_its_region(backend, voice, framing):
    """No seam: where the warped region meets the untouched frame, the displacement is zero."""
    renderer = backend.start_job(job_input(PORTRAIT, voice, head_motion=4, framing=framing, resolution=SMALL))
    x0, y0, x1, y1 = renderer.rig.roi
    worst = 0.0
    for index in range(renderer.num_frames):
        field = renderer.displacement(index)
        edges = [field[0]] * (y0 > 0) + [field[-1]] * (y1 < renderer.height)
        edges += [field[:, 0]] * (x0 > 0) + [field[:, -1]] * (x1 < renderer.width)
        worst = max([worst] + [float(np.abs(edge).max()) for edge in edges])
    assert worst < 0.02  # pixels: below the remap's 1/32-pixel resolution
    moved = max(float(np.abs(renderer.displacement(i)).max()) for i in range(renderer.num_frames))
    assert moved > 1.0


@pytest.mark.parametrize("framing", ["crop", "full"])
def test_warping_band_by_band_where_pixels_move_equals_one_remap_of_the_whole_region(backend, voice, framing):
    """The renderer remaps only the columns of each band of rows that some field can move; the
    frames are bit for bit those of one remap of the whole region with the same displacement."""
    import cv2

    renderer = backend.start_job(job_input(PORTRAIT, voice, head_motion=4, blink_rate=60, framing=framing,
                                           resolution=SMALL))  # fmt: skip
    x0, y0, x1, y1 = renderer.rig.roi
    covered = sum((bottom - top) * (right - left) for top, bottom, left, right in renderer._bands)
    assert covered < (x1 - x0) * (y1 - y0)  # the bands leave out some of the region
    blinks = np.flatnonzero(renderer.params[:, 2] > 0.5)
    assert blinks.size > 0
    for index in [*range(0, renderer.num_frames, 9), *blinks[:3]]:
        reference = renderer.frame.copy()
        sample = renderer._grid - renderer.displacement(index)
        cv2.remap(renderer.framing.canvas, sample, None, cv2.INTER_LINEAR, dst=reference[y0:y1, x0:x1],
                  borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        renderer.mouth.paint(reference, renderer.params[index])
        renderer.eyelids.paint(reference, float(renderer.params[index, 2]))
        assert np.array_equal(renderer.render_frame(index), reference), index


def test_chunks_rendered_ahead_are_the_frames_asked_for_in_any_order(backend, voice):
    """The renderer queues the next chunks in a thread; whatever the render loop asks for next
    (the following chunk, the last and shorter one, or a jump back as on a resume) it gets
    exactly the frames of that range, and closing leaves no work running."""
    renderer = backend.start_job(job_input(PORTRAIT, voice, resolution=SMALL))
    n = renderer.num_frames
    reference = np.stack([renderer.render_frame(i) for i in range(n)])
    chunk = 12
    state = renderer.initial_state()
    for start in range(0, n, chunk):
        out = renderer.render_chunk(start, min(chunk, n - start), state)
        assert np.array_equal(out.frames, reference[start : start + chunk]), start
        assert len(renderer._ahead) == min(2, len(range(start + chunk, n, chunk)))
        state = out.state
    assert not renderer._ahead
    renderer.render_chunk(0, chunk, renderer.initial_state())  # queues 12-23 and 24-35
    jumped = renderer.render_chunk(36, chunk, {"next_frame": 36, "motion": renderer.motion_id})
    assert np.array_equal(jumped.frames, reference[36:48])
    assert [start for start, _, _ in renderer._ahead] == [s for s in (48, 60) if s < n]
    renderer.close()
    assert not renderer._ahead and renderer._pool is None


def test_expression_scales_the_mouth(voice):
    """Linear up to a natural wide open (jaw 1), then a soft knee: wider, never a cartoon."""
    features = analyse_audio(voice, RATE, FPS, 50)
    calm, _ = mouth_curves(features, FPS, 0.5)
    natural, _ = mouth_curves(features, FPS, 1.0)
    wide, _ = mouth_curves(features, FPS, 2.5)
    assert np.allclose(natural, 2 * calm) and natural.max() > 0.5
    assert np.all(wide >= natural) and wide.max() > natural.max() + 0.1
    assert np.allclose(wide, np.where(2.5 * natural <= 1, 2.5 * natural, 1 + 0.4 * (2.5 * natural - 1)))


def test_chunks_and_resumes_give_the_same_frames_as_one_pass(backend, voice):
    job = job_input(PORTRAIT, voice, resolution=SMALL, seed=7)
    _, whole = render_all(backend, job)
    chunked = backend.start_job(job)
    for cuts in ([0, 13, 27, 50], [0, 1, 49, 50], [0, 25, 50]):
        parts, state = [], chunked.initial_state()
        for start, end in zip(cuts, cuts[1:], strict=False):
            out = chunked.render_chunk(start, end - start, decode_state(encode_state(state)))
            parts.append(out.frames)
            state = out.state
        assert np.array_equal(np.concatenate(parts), whole), cuts
    # A resume: a new renderer (after a restart) picks up from the state saved after frame 26.
    saved = encode_state(chunked.render_chunk(13, 14, {"next_frame": 13, "motion": chunked.motion_id}).state)
    resumed = backend.start_job(job)
    assert np.array_equal(resumed.render_chunk(27, 23, decode_state(saved)).frames, whole[27:])


def test_a_state_from_elsewhere_is_refused(backend, voice):
    renderer = backend.start_job(job_input(PORTRAIT, voice, resolution=SMALL))
    state = renderer.render_chunk(0, 10, renderer.initial_state()).state
    with pytest.raises(RenderError, match="render again without resuming"):
        renderer.render_chunk(20, 10, state)
    other = backend.start_job(job_input(PORTRAIT, voice, resolution=SMALL, seed=1))
    with pytest.raises(RenderError):
        other.render_chunk(10, 10, state)


def test_the_seed_picks_the_blinks_and_fixes_everything(backend, voice):
    audio = np.concatenate([voice] * 3)  # 6 s: a few blinks
    a = backend.start_job(job_input(PORTRAIT, audio, resolution=SMALL, seed=1))
    b = backend.start_job(job_input(PORTRAIT, audio, resolution=SMALL, seed=1))
    c = backend.start_job(job_input(PORTRAIT, audio, resolution=SMALL, seed=2))
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params[:, 2], c.params[:, 2])
    assert np.array_equal(a.params[:, :2], c.params[:, :2])  # the mouth follows the audio only
    frames = lambda r: r.render_chunk(0, 60, r.initial_state()).frames  # noqa: E731
    assert np.array_equal(frames(a), frames(b))
    assert not np.array_equal(frames(a), frames(c))


@pytest.mark.parametrize("rate", [10, 15, 25])
def test_blink_rate_over_ten_minutes(rate):
    for seed in range(3):
        closure = blink_curve(10 * 60 * FPS, FPS, seed, rate)
        starts = np.flatnonzero((closure[1:] > 0.5) & (closure[:-1] <= 0.5))
        assert 0.8 * rate <= len(starts) / 10 <= 1.2 * rate
        assert np.diff(starts).min() >= 0.3 * FPS  # never a flutter
    assert not blink_curve(FPS * 60, FPS, 0, 0).any()


def _vowel(f1: float, f2: float, seconds: float = 0.6, pitch: float = 220.0) -> np.ndarray:
    """A sung vowel: a glottal pulse train through two formant resonators, with vibrato."""
    from scipy.signal import lfilter

    t = np.arange(int(seconds * RATE)) / RATE
    phase = np.cumsum(pitch * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))) / RATE
    source = np.diff(np.floor(phase), prepend=0.0)
    out = source
    for freq, bw in ((f1, 80.0), (f2, 120.0)):
        r = np.exp(-np.pi * bw / RATE)
        out = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / RATE), r * r], out)
    return (0.4 * out / np.abs(out).max()).astype(np.float32)


def test_formants_shape_the_lips_for_sung_vowels():
    """Language independent: an open /a/ opens the jaw more, a bright /i/ spreads the lips."""
    a, i = _vowel(750, 1200), _vowel(300, 2300)
    audio = np.concatenate([a, np.zeros(RATE // 2, np.float32), i])
    frames = int(len(audio) / RATE * FPS)
    features = analyse_audio(audio, RATE, FPS, frames)
    in_a, in_i = slice(3, 12), slice(frames - 12, frames - 3)
    assert np.nanmedian(features.f1_hz[in_a]) == pytest.approx(750, rel=0.2)
    assert np.nanmedian(features.f2_hz[in_a]) == pytest.approx(1200, rel=0.2)
    assert np.nanmedian(features.f1_hz[in_i]) == pytest.approx(300, rel=0.25)
    assert np.nanmedian(features.f2_hz[in_i]) == pytest.approx(2300, rel=0.2)
    assert np.nanmedian(features.pitch_hz[in_a]) == pytest.approx(220, rel=0.05)
    jaw, width = mouth_curves(features, FPS, 1.0)
    assert jaw[in_a].mean() > jaw[in_i].mean() + 0.05
    assert width[in_i].mean() > 0.3 > -0.3 > width[in_a].mean()
    gap = slice(int(0.6 * FPS) + 3, int(1.1 * FPS) - 1)
    assert np.all(jaw[gap] < 0.02)  # the mouth shuts in the pause


def test_sigkill_mid_render_resumes_to_the_same_video(tmp_path):
    """A real kill in the middle of a warp render, then a resume: the same frames as one pass."""
    import json

    from factories import PLUGINS

    wav = write_wav(tmp_path / "voice.wav", speech(ASSETS / "hello_fr.wav")[: int(1.5 * RATE)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMO_TEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(PLUGINS), str(REPO / "tests")])
    driver = [sys.executable, str(REPO / "tests" / "render_driver.py")]
    outputs = []
    for name, kill in (("once", False), ("killed", True)):
        spec = tmp_path / f"{name}.json"
        job = {"audio": str(wav), "backend": "warp", "resolution": 128, "chunk_frames": 10}
        spec.write_text(json.dumps({"output_dir": str(tmp_path / name), "jobs": [job]}))
        if kill:
            fifo = tmp_path / "pause.fifo"
            os.mkfifo(fifo)
            proc = subprocess.Popen(driver + [str(spec)], start_new_session=True, stdout=subprocess.DEVNULL,
                                    env={**env, "EMO_TEST_PAUSE_AT": "encode:2", "EMO_TEST_PAUSE_FIFO": str(fifo)})  # fmt: skip
            # Non-blocking: if the render dies before the point, the test fails instead of hanging.
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            announced, deadline = b"", time.monotonic() + 120
            while not announced.endswith(b"\n"):
                assert proc.poll() is None and time.monotonic() < deadline, (
                    "the render never reached encode:2"
                )
                if select.select([reader], [], [], 0.5)[0]:
                    announced += os.read(reader, 100)
            os.close(reader)
            assert announced == b"encode:2\n"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        run = subprocess.run(driver + [str(spec)], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        events = [json.loads(line) for line in run.stdout.splitlines()]
        if kill:
            started = next(e for e in events if e["event"] == "job_started")
            assert started["chunks_reused"] == 2
        outputs.append(Path(events[-1]["jobs"][0]["output"]))
    once, resumed = (decoded_frames(path) for path in outputs)
    assert len(once) == len(resumed) == 38
    assert all(np.array_equal(a, b) for a, b in zip(once, resumed, strict=True))


def test_head_motion_leaves_the_neck_below_the_jaw_and_the_collar_still(backend, voice):
    """The head's sway fades out along the neck: from 0.2 face heights under the jaw line down
    (the astronaut's collar ring and suit), no pixel changes, however much the head moves."""
    renderer, frames = render_all(
        backend, job_input(PORTRAIT, voice, head_motion=4, expression=0, blink_rate=0)
    )
    lm, face_h = renderer.rig.landmarks, renderer.rig.face_height
    below = int(np.ceil(lm[152, 1] + 0.2 * face_h)) + 1
    assert below < renderer.height - 50
    assert all(np.array_equal(frame[below:], frames[0][below:]) for frame in frames)
    beside = [int(lm[152, 0] - 0.5 * face_h), int(lm[152, 0] + 0.5 * face_h)]
    chin_level = int(lm[152, 1])
    assert all(np.array_equal(frame[chin_level:, beside], frames[0][chin_level:, beside]) for frame in frames)
    moved = max(
        np.abs(frame[: int(lm[152, 1])].astype(int) - frames[0][: int(lm[152, 1])]).max() for frame in frames
    )
    assert moved > 40  # the head itself moves
