"""Proof that the EMO stack learns audio-driven motion: distil the `warp` backend into a small EMO.

The teacher is emo-cli's own `warp` backend: it opens the jaw from the audio (loudness, voicing,
formants; `emo_cli.backends.warp.motion.motion_curves`). The student is the EMO architecture at
a small size, trained from scratch (no public weights are reachable offline) with the real
`emo dataset prepare`, `emo train stage1|stage2` and `emo train export`, then rendered through
the real chunked renderer (`EmoRenderer.render_chunk`, several clips per utterance, so each
clip continues from the motion frames of the last). If it learned audio-driven motion, the
mouth aperture measured on its output frames follows the loudness and the teacher's jaw curve
of held-out voices; the three controls must bring that correlation to about 0.

Phases (each resumable: a finished phase leaves its result in the work dir and is skipped):

    data    espeak-ng speech in many voices and languages (train and held-out voices), pseudo
            identities from the one public-domain portrait available offline (the astronaut,
            manifests/assets/astronaut.jpg: the original, mirrored, zoomed, hue- and
            contrast-shifted; one held out), talking videos rendered by `emo render` with the
            warp backend at 256 px, then `emo dataset prepare` at --size (train voices -> data/,
            held-out voices -> evaldata/); the teacher's jaw curve of each held-out clip
    pack / unpack   data/ + evaldata/ + speech/ as one tar.gz (render on a CPU, train on a GPU)
    probe   can a random-init wav2vec carry loudness? Ridge regression from its per-frame
            features (the renderer's grid) to RMS dB, fitted on train voices, R^2 on held-out
    vae     a small AutoencoderKL (--size px -> 16 x 16 x 4 latents) trained from scratch on the
            dataset's frames (MSE with the mouth weighing 5x, + a small KL); PSNR on held-out
            frames, whole and mouth box
    weights a small EMO weights folder by the real `init_weights` (tiny SD-style UNet, motion
            adapter, the trained VAE, the random wav2vec)
    stage1, stage2  `emo train stage1`, `export`, `emo train stage2`, `export` (lr 2e-4, f = 8,
            n = 2); steps chosen from the steps/s of a short calibration run to fit --minutes
    eval    held-out voices rendered by the exported weights through the real chunked renderer
            (`EmoBackend.start_job` + `render_chunk` in chunks of 25 frames, clips of 8: each clip
            continues from the motion frames of the last), the reference being the teacher's first
            frame; Pearson r of the mouth aperture (darkness of the mouth box found from the
            reference's face-mesh landmarks) with the loudness (RMS dB) and with the teacher's jaw,
            at the lag in -2..2 frames with the best mean, raw and high-passed at 25 frames (a slow
            drift of the whole picture follows the utterance's silence-speech-silence envelope
            whatever the audio does to the mouth), for the teacher's own frames (the ceiling), the
            model and three controls:
              shuffled audio   the audio of another held-out utterance (its frames correlated
                               with the true utterance's curves)
              zeroed audio-attention  every audio-attention layer's output set to 0 (a hook)
              motion frames only      the audio replaced by silence: only the reference and
                               the motion frames of the previous clip drive the clip
    report  the table so far (also WORK/report.json); `all` prints it after every phase
    continue  `--from WORK1 --work WORK2`: WORK2 reuses WORK1's data, probe and VAE and starts
            from its exported stage-1 weights; `all --work WORK2` then trains on from there

    python benchmarks/train_distill.py all --work WORK [--size 64] [--device cpu] [--vae-minutes 5]
        [--stage1-minutes 8] [--stage2-minutes 14] [--eval-utterances N] [--eval-frames F] [--eval-steps S]
    python benchmarks/train_distill.py all --work WORK --smoke     # the plumbing, in minutes
    benchmarks/train_distill_gpu.sh ARCHIVE WORK                   # 128 px on one GPU (see there)

Figures of a 64 px CPU run: README, "Proof of learning".

Heavy imports stay inside the phases: this is a script, not library code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
PORTRAIT = REPO / "manifests" / "assets" / "astronaut.jpg"
FPS, RATE = 25, 16000
MOUTH_LANDMARKS = (13, 14, 61, 291, 78, 308)  # face mesh: inner lips mid (upper, lower), corners

SENTENCES = {
    "en": ["The quick brown fox jumps over the lazy dog near the river bank.",
           "Please remember to bring your umbrella, it might rain this afternoon."],
    "fr": ["Le petit chat dort paisiblement sur le canapé du salon.",
           "Nous irons au marché demain matin pour acheter des pommes."],
    "es": ["El perro marrón corre muy rápido por el parque grande.",
           "Mañana vamos a visitar a mis abuelos en el pueblo."],
    "de": ["Der alte Mann geht jeden Morgen mit seinem Hund spazieren.",
           "Wir haben gestern Abend einen sehr schönen Film gesehen."],
    "it": ["La mamma prepara una buona pasta per tutta la famiglia.",
           "Domani mattina partiamo presto per andare al mare."],
    "pt": ["O menino brinca com a bola no jardim da escola.",
           "Amanhã vamos almoçar juntos num restaurante novo."],
    "pl": ["Mały kot bawi się piłką w ogrodzie babci.",
           "Jutro rano pojedziemy pociągiem do Krakowa."],
    "nl": ["De oude molen draait langzaam in de koude wind.",
           "Morgen gaan we met de fiets naar het strand."],
    "sv": ["Den lilla flickan läser en bok om stora båtar.",
           "Vi ska äta middag hos mormor på lördag kväll."],
    "fi": ["Pieni poika leikkii pallolla puistossa koko päivän.",
           "Huomenna menemme mökille järven rannalle."],
    "hu": ["A kis macska a napon alszik a kert közepén.",
           "Holnap reggel korán indulunk a nagymamához."],
    "cs": ["Malý pes běhá po zahradě a štěká na ptáky.",
           "Zítra ráno pojedeme vlakem do hor."],
}  # fmt: skip
TRAIN_LANGS = ("en", "fr", "es", "de", "it", "pt", "pl", "nl", "sv", "cs")
TRAIN_VARIANTS = ("m3", "f2", "m1", "f3")
# Held out: voice variants never heard in training, two of them in languages never heard either.
EVAL_VOICES = ("en+f4", "fr+m7", "de+f4", "es+m7", "fi+m3", "hu+f2", "it+f4", "pl+m7")
IDENTITIES = ("orig", "mirror", "zoom", "hue", "dim")
HELD_OUT_IDENTITY = "mirror-hue"


# -- measures, subprocesses, phase records ---------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def emo(*args: str, threads: int = 2) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    shown = " ".join(args)
    log("$ emo " + (shown if len(shown) < 300 else shown[:300] + " ..."))
    done = subprocess.run([sys.executable, "-m", "emo_cli", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}")
    log(f"  {seconds:.1f} s")
    return seconds


def done_marker(work: Path, phase: str) -> Path:
    return work / "done" / phase


def finished(work: Path, phase: str) -> dict | None:
    path = done_marker(work, phase)
    return json.loads(path.read_text()) if path.is_file() else None


def finish(work: Path, phase: str, result: dict) -> dict:
    path = done_marker(work, phase)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return result


def level_db(audio: np.ndarray, frames: int, fps: int = FPS, rate: int = RATE) -> np.ndarray:
    """RMS level (dBFS) of a 50 ms window centred on each video frame."""
    half = int(0.025 * rate)
    out = np.empty(frames)
    for i in range(frames):
        c = int(round((i + 0.5) * rate / fps))
        seg = audio[max(0, c - half) : c + half]
        out[i] = 10 * np.log10(np.mean(np.square(seg, dtype=np.float64)) + 1e-10) if seg.size else -100.0
    return np.maximum(out, -60.0)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lagged_r(x: np.ndarray, y: np.ndarray, max_lag: int = 2) -> tuple[float, int]:
    """Pearson r of x[t] with y[t - lag] at the lag in [-max_lag, max_lag] with the largest r."""
    best = (-2.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            r = pearson(x[lag:], y[: len(y) - lag])
        else:
            r = pearson(x[:lag], y[-lag:])
        best = max(best, (r, lag))
    return best


def mouth_box(landmarks: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the mouth corners' span, from a little above the upper inner lip to as far
    below the lower inner lip as the mouth is wide over two (room for a dropped jaw)."""
    pts = np.asarray(landmarks)[list(MOUTH_LANDMARKS), :2]
    x0, x1 = pts[:, 0].min(), pts[:, 0].max()
    width = max(x1 - x0, 2.0)
    mid = (pts[0, 1] + pts[1, 1]) / 2
    y0, y1 = mid - 0.2 * width, mid + 0.45 * width
    box = [
        int(np.floor(x0 + 0.1 * width)),
        int(np.floor(y0)),
        int(np.ceil(x1 - 0.1 * width)),
        int(np.ceil(y1)),
    ]
    box = [min(max(v, 0), size) for v in box]
    return box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1)


def aperture(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Per frame: the darkness (255 - luma, mean) inside the mouth box. An open mouth shows its dark
    cavity where the shut lips were."""
    x0, y0, x1, y1 = box
    region = np.asarray(frames[:, y0:y1, x0:x1, :3], dtype=np.float32)
    luma = region @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return 255.0 - luma.mean(axis=(1, 2))


def read_video(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# -- data ------------------------------------------------------------------------------------------------
def speak(voice: str, text: str, out: Path, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng speech at 16 kHz mono float32 (written as a 16-bit wav at `out`), at most 6 s."""
    from scipy.io import wavfile

    from emo_cli.media.audio import decode_audio

    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                   check=True, capture_output=True)  # fmt: skip
    audio = decode_audio(raw, RATE)[: 6 * RATE]
    raw.unlink()
    audio = 0.7 * audio / max(float(np.abs(audio).max()), 1e-6)
    wavfile.write(str(out), RATE, np.round(audio * 32767).astype(np.int16))
    return audio.astype(np.float32)


def pseudo_identity(name: str):
    """One of the pseudo-identities derived from the astronaut (a PIL image, 512 px)."""
    from PIL import Image, ImageEnhance, ImageOps

    image = Image.open(PORTRAIT).convert("RGB").resize((512, 512), Image.Resampling.LANCZOS)

    def hue(img, shift: int):
        h, s, v = img.convert("HSV").split()
        h = h.point(lambda x: (x + shift) % 256)
        return Image.merge("HSV", (h, s, v)).convert("RGB")

    def zoom(img, factor: float, dx: int = 0, dy: int = 0):
        side = int(512 / factor)
        x0, y0 = (512 - side) // 2 + dx, (512 - side) // 2 + dy
        return img.crop((x0, y0, x0 + side, y0 + side)).resize((512, 512), Image.Resampling.LANCZOS)

    if name == "mirror":
        image = ImageOps.mirror(image)
    elif name == "zoom":
        image = zoom(image, 1.25, dx=-20, dy=10)
    elif name == "hue":
        image = ImageEnhance.Color(hue(zoom(image, 1.1, dx=15), 20)).enhance(1.3)
    elif name == "dim":
        image = ImageEnhance.Contrast(
            ImageEnhance.Brightness(zoom(image, 1.05, dy=-10)).enhance(0.8)
        ).enhance(1.2)
    elif name == HELD_OUT_IDENTITY:
        image = ImageOps.mirror(hue(zoom(image, 1.15, dx=10, dy=-5), -25))
    return image


def utterances(smoke: bool) -> list[dict]:
    """The corpus plan: one entry per utterance (voice, language, text, split, identity, espeak rate/pitch)."""
    rng = np.random.default_rng(0)
    plan = []
    langs = TRAIN_LANGS[:3] if smoke else TRAIN_LANGS
    variants = TRAIN_VARIANTS[:2] if smoke else TRAIN_VARIANTS
    k = 0
    for lang in langs:
        for variant in variants:
            for s, text in enumerate(SENTENCES[lang][: 1 if smoke else 2]):
                plan.append({"name": f"train-{lang}-{variant}-{s}", "voice": f"{lang}+{variant}", "text": text,
                             "split": "train", "identity": IDENTITIES[k % len(IDENTITIES)],
                             "speed": int(rng.integers(140, 190)), "pitch": int(rng.integers(30, 70))})  # fmt: skip
                k += 1
    for j, voice in enumerate(EVAL_VOICES[:3] if smoke else EVAL_VOICES):
        lang = voice.split("+")[0]
        plan.append({"name": f"eval-{voice.replace('+', '-')}", "voice": voice, "text": SENTENCES[lang][1],
                     "split": "eval", "identity": HELD_OUT_IDENTITY if j % 2 else IDENTITIES[j % len(IDENTITIES)],
                     "speed": 165, "pitch": 50})  # fmt: skip
    return plan


RENDER_MANIFEST = """\
version: 1
output_dir: out
output: "{{audio}}.mp4"
defaults:
  backend: warp
  fps: 25
  resolution: 256
  seed: 0
  chunk_frames: 50
  warp: {{head_motion: 0.5}}
  provenance: {{watermark: false, sign: false}}
  qc: {{enabled: false}}
portraits:
{portraits}
audio:
{audio}
jobs:
{jobs}
"""


def phase_data(args) -> dict:
    work: Path = args.work
    plan = utterances(args.smoke)
    speech, portraits, render = work / "speech", work / "portraits", work / "render"
    for folder in (speech, portraits, render):
        folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for u in plan:
        if not (speech / f"{u['name']}.wav").is_file():
            audio = speak(u["voice"], u["text"], speech / f"{u['name']}.wav", u["speed"], u["pitch"])
            u["seconds"] = round(audio.size / RATE, 2)
    for name in (*IDENTITIES, HELD_OUT_IDENTITY):
        if not (portraits / f"{name}.png").is_file():
            pseudo_identity(name).save(portraits / f"{name}.png")
    (work / "utterances.json").write_text(json.dumps(plan, indent=1))
    speak_s = time.perf_counter() - t0
    manifest = render / "render.yaml"
    manifest.write_text(RENDER_MANIFEST.format(
        portraits="\n".join(f"  {n}: {portraits / f'{n}.png'}" for n in (*IDENTITIES, HELD_OUT_IDENTITY)),
        audio="\n".join(f"  {u['name']}: {speech / (u['name'] + '.wav')}" for u in plan),
        jobs="\n".join(f"  - {{portrait: {u['identity']}, audio: {u['name']}}}" for u in plan),
    ))  # fmt: skip
    render_s = (
        emo("render", str(manifest), "--devices", "cpu:2", "--quiet")
        if not _all_rendered(render, plan)
        else 0.0
    )
    times = {"speech_s": speak_s, "render_s": render_s}
    for split, folder in (("train", "data"), ("eval", "evaldata")):
        videos = [str(render / "out" / f"{u['name']}.mp4") for u in plan if u["split"] == split]
        times[f"prepare_{split}_s"] = emo("dataset", "prepare", *videos, "--out", str(work / folder),
                                          "--resolution", str(args.size), "--val-fraction", "0",
                                          "--workers", "2", "--json")  # fmt: skip
    frames = {}
    for folder in ("data", "evaldata"):
        index = json.loads((work / folder / "index.json").read_text())
        frames[folder] = sum(int(c.get("frames", 0)) for c in index["clips"])
    return {**times, "utterances": len(plan), "train_utterances": sum(u["split"] == "train" for u in plan),
            "eval_utterances": sum(u["split"] == "eval" for u in plan), "frames": frames}  # fmt: skip


def _all_rendered(render: Path, plan: list[dict]) -> bool:
    return all((render / "out" / f"{u['name']}.mp4").is_file() for u in plan)


def clips_of(root: Path) -> list[dict]:
    """Every clip of a prepared dataset with its source's name (the utterance) and its arrays' paths."""
    out = []
    for record_path in sorted((root / "videos").glob("*/record.json")):
        record = json.loads(record_path.read_text())
        for clip in record["clips"]:
            files = {kind: root / entry["path"] for kind, entry in clip["files"].items()}
            out.append({"utterance": Path(record["source"]).stem, "id": clip["id"], "frames": clip["frames"],
                        "start_frame": clip["start_frame"], "files": files})  # fmt: skip
    return out


def teacher_jaw(audio: np.ndarray, frames: int) -> np.ndarray:
    """The warp teacher's jaw curve for this audio, as the render computed it (same options, seed 0)."""
    from emo_cli.backends.warp.motion import motion_curves

    return motion_curves(audio, RATE, FPS, frames, 0, expression=1.0, blink_rate=15.0, head_motion=0.5).jaw


# -- probe -----------------------------------------------------------------------------------------------
def wav2vec_config(size: int):
    """A small wav2vec 2.0 with the base model's CNN strides and kernels (50 features a second, each
    seeing 25 ms): the layout the emo backend runs, at a fraction of the width."""
    from transformers import Wav2Vec2Config

    width = 64 if size <= 64 else 128
    return Wav2Vec2Config(
        hidden_size=width, num_hidden_layers=2, num_attention_heads=4, intermediate_size=2 * width,
        conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_feat_extract_layers=7,
    )  # fmt: skip


def random_wav2vec(work: Path, size: int) -> Path:
    folder = work / "components" / "wav2vec"
    if not (folder / "config.json").is_file():
        import torch
        from transformers import Wav2Vec2Model

        torch.manual_seed(0)
        Wav2Vec2Model(wav2vec_config(size)).save_pretrained(folder)
    return folder


def utterance_features(encoder, audio: np.ndarray, frames: int) -> np.ndarray:
    """Per-frame features on the renderer's grid, every layer the audio projection reads, flattened."""
    from emo_cli.backends.emo.audio import AudioFeatures

    layers = int(encoder.config.num_hidden_layers)
    feats = AudioFeatures(encoder, audio, sample_rate=RATE, fps=FPS, num_frames=frames, layers=layers)
    return feats.frames(0, frames).reshape(frames, -1).numpy()


def phase_probe(args) -> dict:
    import torch
    from transformers import Wav2Vec2Model

    torch.set_num_threads(args.threads)
    encoder = Wav2Vec2Model.from_pretrained(random_wav2vec(args.work, args.size)).eval()
    sets = {}
    for split, folder in (("train", "data"), ("eval", "evaldata")):
        xs, ys = [], []
        for clip in clips_of(args.work / folder):
            audio = np.load(clip["files"]["audio"])
            xs.append(utterance_features(encoder, audio, clip["frames"]))
            ys.append(level_db(audio, clip["frames"]))
        sets[split] = (np.concatenate(xs), np.concatenate(ys))
    (x, y), (xe, ye) = sets["train"], sets["eval"]
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, xe = (x - mean) / std, (xe - mean) / std
    ridge = 1.0 * x.shape[0] / 100
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ (y - y.mean()))
    pred = xe @ w + y.mean()
    r2 = 1 - float(np.sum((ye - pred) ** 2) / np.sum((ye - ye.mean()) ** 2))
    return {"r2_heldout": round(r2, 3), "features": int(x.shape[1]), "train_frames": int(x.shape[0]),
            "eval_frames": int(xe.shape[0])}  # fmt: skip


# -- vae -------------------------------------------------------------------------------------------------
def vae_levels(size: int) -> int:
    """Down-sampling steps from `size` to 16 x 16 latents."""
    return int(round(math.log2(size / 16)))


def all_frames(root: Path) -> tuple[np.ndarray, list[tuple[int, int, tuple]]]:
    """Every frame of a dataset (N, H, W, 3) uint8 and, per clip, (first index, count, mouth box)."""
    frames, spans = [], []
    total = 0
    for clip in clips_of(root):
        video = read_video(clip["files"]["frames"])[: clip["frames"]]
        landmarks = np.load(clip["files"]["landmarks"], mmap_mode="r")
        spans.append((total, len(video), mouth_box(landmarks[0], video.shape[1])))
        frames.append(video)
        total += len(video)
    return np.concatenate(frames), spans


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def phase_vae(args) -> dict:
    import torch
    from diffusers import AutoencoderKL

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train, train_spans = all_frames(args.work / "data")
    held, spans = all_frames(args.work / "evaldata")
    torch.manual_seed(0)
    levels = vae_levels(args.size)
    width = 16 if args.device == "cpu" else 64  # 2 CPU cores: about 2.5 s a step even so
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(width,) + (2 * width,) * levels,
        down_block_types=("DownEncoderBlock2D",) * (levels + 1), up_block_types=("UpDecoderBlock2D",) * (levels + 1),
        layers_per_block=1, norm_num_groups=8, sample_size=args.size,
    ).to(device)  # fmt: skip
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    data = torch.from_numpy(train).permute(0, 3, 1, 2)
    # The mouth is what the benchmark measures and a few pixels at 64 px: its box weighs 5x in the loss.
    weight = torch.ones(len(train), 1, args.size, args.size)
    for a, n, (x0, y0, x1, y1) in train_spans:
        h = y1 - y0
        weight[a : a + n, :, max(0, y0 - h // 2) : y1 + h // 2, x0:x1] = 5.0
    rng = np.random.default_rng(0)
    batch = 16 if args.device == "cpu" else 128
    deadline = time.perf_counter() + 60 * args.vae_minutes
    step, losses, last_report = 0, [], time.perf_counter()
    while time.perf_counter() < deadline and (not args.smoke or step < 20):
        idx = rng.integers(0, len(data), batch)
        x = (data[idx].float() / 127.5 - 1).to(device)
        w = weight[idx].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample()
            rec = vae.decode(z).sample
        mse = ((rec.float() - x).square() * w).mean() / w.mean()
        kl = posterior.kl().mean() / (z[0].numel())
        loss = mse + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(float(mse.detach()))
        step += 1
        if time.perf_counter() - last_report > 60:
            log(f"vae step {step}: mse {statistics.mean(losses[-20:]):.4f}")
            last_report = time.perf_counter()
    vae.eval()
    with torch.no_grad():
        z, recs = [], []
        for lo in range(0, len(held), 64):
            x = (torch.from_numpy(held[lo : lo + 64]).permute(0, 3, 1, 2).float() / 127.5 - 1).to(device)
            latent = vae.encode(x).latent_dist.mode()
            z.append(latent.float().cpu())
            out = vae.decode(latent).sample.float().clamp(-1, 1)
            recs.append(((out + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
        rec = np.concatenate(recs)
        std = float(torch.cat(z).std())
    mouth = [
        psnr(held[a : a + n, y0:y1, x0:x1], rec[a : a + n, y0:y1, x0:x1]) for a, n, (x0, y0, x1, y1) in spans
    ]
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))  # unit-variance latents for the diffusion
    vae.cpu().save_pretrained(args.work / "components" / "vae")
    return {"steps": step, "mse_first": round(losses[0], 4), "mse_last20": round(statistics.mean(losses[-20:]), 4),
            "psnr_heldout": round(psnr(held, rec), 2), "psnr_mouth_heldout": round(statistics.mean(mouth), 2),
            "latent_std": round(std, 4), "latent": [4, args.size // 2**levels, args.size // 2**levels]}  # fmt: skip


# -- weights ---------------------------------------------------------------------------------------------
def phase_weights(args) -> dict:
    import torch
    from diffusers import DDIMScheduler, MotionAdapter, UNet2DConditionModel

    from emo_cli.backends.emo.assemble import init_weights

    comp = args.work / "components"
    channels = (32, 64) if args.device == "cpu" else (96, 192)
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=16,
    ).save_pretrained(comp / "sd15" / "unet")  # fmt: skip
    DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
    ).save_pretrained(comp / "sd15" / "scheduler")
    MotionAdapter(block_out_channels=channels, motion_layers_per_block=1, motion_num_attention_heads=4,
                  motion_norm_num_groups=16, motion_max_seq_length=32).save_pretrained(comp / "motion")  # fmt: skip
    out = args.work / "weights" / "start"
    if out.exists():
        shutil.rmtree(out)
    init_weights(sd15=comp / "sd15", vae=comp / "vae", motion_adapter=comp / "motion",
                 wav2vec=random_wav2vec(args.work, args.size), out=out, audio_tokens=4, hidden_dim=64,
                 motion_frames=2)  # fmt: skip
    params = {}
    for part in ("denoising_unet", "reference_unet", "audio_proj", "vae", "audio_encoder"):
        files = list((out / part).glob("*.safetensors"))
        params[part] = round(sum(f.stat().st_size for f in files) / 4e6, 2)
    return {"channels": list(channels), "million_params": params}


# -- train ---------------------------------------------------------------------------------------------
CLIP_FRAMES = 8  # f; the weights' motion frames n = 2


def train_yaml(path: Path, args, steps: int, stage: str) -> Path:
    batch = (4 if stage == "stage1" else 1) if args.device == "cpu" else (32 if stage == "stage1" else 8)
    path.write_text(
        f"seed: 0\nsteps: {steps}\nbatch_size: {batch}\nlearning_rate: 2.0e-4\nwarmup_steps: {min(50, steps // 10)}\n"
        f"clip_frames: {CLIP_FRAMES}\nfirst_clip_share: 0.1\ngradient_checkpointing: false\n"
        f"checkpoint_every: {max(1, steps // 4)}\nkeep_checkpoints: 2\ndevice: {args.device}\n"
    )  # fmt: skip
    return path


def run_stage(args, stage: str, start: Path, minutes: float) -> dict:
    """Calibrate steps/s with a few steps, then train as many steps as fit `minutes`, then export.
    A run that overruns its time by a third is interrupted (Ctrl-C keeps its checkpoints)."""
    import signal

    work = args.work
    cal = work / "runs" / f"{stage}-calibrate"
    shutil.rmtree(cal, ignore_errors=True)
    cal_steps = 3 if args.smoke else 8
    emo("train", stage, "--config", str(train_yaml(work / f"{stage}-cal.yaml", args, cal_steps, stage)),
        "--data", str(work / "data"), "--weights", str(start), "--out", str(cal), "--json", threads=args.threads)  # fmt: skip
    rows = [json.loads(line) for line in (cal / "metrics.jsonl").read_text().splitlines()]
    rate = statistics.median(r["steps_per_s"] for r in rows[1:])
    steps = cal_steps if args.smoke else max(10, int(rate * minutes * 60 * 0.95))
    log(f"{stage}: {rate:.2f} steps/s measured, training {steps} steps")
    run = work / "runs" / stage
    shutil.rmtree(run, ignore_errors=True)
    config = train_yaml(work / f"{stage}.yaml", args, steps, stage)
    argv = [sys.executable, "-m", "emo_cli", "train", stage, "--config", str(config), "--data", str(work / "data"),
            "--weights", str(start), "--out", str(run), "--json"]  # fmt: skip
    t0 = time.perf_counter()
    with open(work / f"{stage}.log", "w") as out:
        # A job started in the background of a shell ignores SIGINT, and so would its children:
        # the trainer gets the default back, so that Ctrl-C (below) stops it and keeps its checkpoints.
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        try:
            proc.wait(timeout=max(120.0, minutes * 60 * 4 / 3))
        except subprocess.TimeoutExpired:
            log(f"{stage}: over time, interrupting (the newest checkpoint is exported)")
            proc.send_signal(signal.SIGINT)
            proc.wait()
    train_s = time.perf_counter() - t0
    if proc.returncode not in (0, 130):
        sys.exit(f"{stage} failed ({proc.returncode}); see {work / f'{stage}.log'}")
    out_weights = work / "weights" / stage
    export_s = emo("train", "export", str(run), "--out", str(out_weights), "--force", threads=args.threads)
    return {
        **stage_metrics(run),
        "planned_steps": steps,
        "train_s": round(train_s, 1),
        "export_s": round(export_s, 1),
    }


def stage_metrics(run: Path) -> dict:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    tail = rows[-20:]
    return {"steps": len(rows), "loss_first": round(rows[0]["loss"], 4),
            "loss_first20": round(statistics.mean(r["loss"] for r in rows[:20]), 4),
            "loss_last20": round(statistics.mean(r["loss"] for r in tail), 4),
            "steps_per_s": round(statistics.median(r["steps_per_s"] for r in rows[1:] or rows), 3)}  # fmt: skip


def phase_stage1(args) -> dict:
    return run_stage(args, "stage1", args.work / "weights" / "start", args.stage1_minutes)


def phase_stage2(args) -> dict:
    return run_stage(args, "stage2", args.work / "weights" / "stage1", args.stage2_minutes)


# -- eval ------------------------------------------------------------------------------------------------
CONDITIONS = ("model", "shuffled_audio", "zeroed_audio_attention", "motion_frames_only")
EVAL_OPTIONS = {"steps": 20, "guidance_scale": 2.0, "clip_frames": CLIP_FRAMES}  # chosen once, not tuned
CHUNK = 25
# A slow drift of the whole picture (the first clip settling, brightness creeping from clip to clip)
# correlates with the slow envelope of an utterance (silence, speech, silence) whatever the audio
# does to the mouth; the high-passed figures keep only what moves faster than a second.
HIGH_PASS_FRAMES = 25


def render_held_out(backend, weights: Path, portrait: Path, audio: np.ndarray, frames: int, size: int,
                    device: str, steps: int) -> np.ndarray:  # fmt: skip
    """One held-out utterance through the real chunked renderer: (frames, size, size, 3) uint8."""
    from emo_cli.backends.base import JobInput

    options = backend.resolve_options(
        {**EVAL_OPTIONS, "steps": steps, "weights": str(weights), "device": device}
    )
    job = JobInput(job_id="distill", portrait_path=portrait, audio=audio, sample_rate=RATE, fps=FPS,
                   num_frames=frames, seed=0, resolution=size, options=options)  # fmt: skip
    renderer = backend.start_job(job)
    state, out = renderer.initial_state(), []
    for start in range(0, frames, CHUNK):
        chunk = renderer.render_chunk(start, min(CHUNK, frames - start), state)
        state = chunk.state
        out.append(chunk.frames)
    renderer.close()
    return np.concatenate(out)


def high_pass(x: np.ndarray, frames: int = HIGH_PASS_FRAMES) -> np.ndarray:
    """x minus its centred moving average over `frames`: what moves faster than about a second."""
    x = np.asarray(x, dtype=np.float64)
    pad = np.pad(x, frames // 2, mode="reflect", reflect_type="odd")  # a straight line stays straight
    return x - np.convolve(pad, np.ones(frames) / frames, mode="valid")[: len(x)]


def curves_r(ap: np.ndarray, loud: np.ndarray, jaw: np.ndarray) -> dict:
    """r at lags -2..2 of the aperture with the loudness and the jaw, raw and high-passed."""
    out = {}
    for suffix, f in (("", np.asarray), ("_hp", high_pass)):
        out[f"loud{suffix}"] = [pearson_at(f(ap), f(loud), lag) for lag in range(-2, 3)]
        out[f"jaw{suffix}"] = [pearson_at(f(ap), f(jaw), lag) for lag in range(-2, 3)]
    return out


def pearson_at(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """Pearson r of x[t] with y[t - lag]."""
    if lag >= 0:
        return pearson(x[lag:], y[: len(y) - lag])
    return pearson(x[:lag], y[-lag:])


def summarise(per_utterance: list[dict]) -> dict:
    """Mean r over the utterances at the lag (-2..2, one for all utterances) where the mean is highest."""
    out = {}
    for curve in ("loud", "jaw", "loud_hp", "jaw_hp"):
        table = np.array([u[curve] for u in per_utterance])  # (utterances, 5 lags)
        means = table.mean(axis=0)
        best = int(np.argmax(means))
        out[f"r_{curve}"] = round(float(means[best]), 3)
        out[f"lag_{curve}"] = best - 2
        out[f"r_{curve}_range"] = [
            round(float(table[:, best].min()), 3),
            round(float(table[:, best].max()), 3),
        ]
    return out


def phase_eval(args) -> dict:
    import torch
    from PIL import Image

    from emo_cli.backends.emo import EmoBackend

    torch.set_num_threads(args.threads)
    work, size = args.work, args.size
    weights = work / "weights" / "stage2"
    clips = clips_of(work / "evaldata")
    clips = clips[: 2 if args.smoke else args.eval_utterances or None]
    (work / "eval").mkdir(exist_ok=True)
    backend = EmoBackend(device=args.device)
    results: dict[str, list[dict]] = {name: [] for name in ("teacher", *CONDITIONS)}
    audios = [np.load(c["files"]["audio"]) for c in clips]
    for i, clip in enumerate(clips):
        frames_n = (
            2 * CLIP_FRAMES + 4 if args.smoke else min(clip["frames"], args.eval_frames or clip["frames"])
        )
        teacher = read_video(clip["files"]["frames"])[:frames_n]
        box = mouth_box(np.load(clip["files"]["landmarks"])[0], size)
        audio = audios[i][: int(round(frames_n * RATE / FPS))]
        loud, jaw = level_db(audio, frames_n), teacher_jaw(audio, frames_n)
        results["teacher"].append(curves_r(aperture(teacher, box), loud, jaw))
        # The reference: the teacher's first frame, enlarged so the renderer's face detector finds it
        # (the renderer shrinks it back to `size`).
        portrait = work / "eval" / f"{clip['utterance']}.png"
        Image.fromarray(teacher[0]).resize((4 * size, 4 * size), Image.Resampling.LANCZOS).save(portrait)
        other = audios[(i + 1) % len(audios)]
        other = np.resize(other, audio.shape)  # tiled or cut to this utterance's length
        for name in CONDITIONS:
            target = work / "eval" / f"{clip['utterance']}.{name}.npy"
            frames = np.load(target) if target.is_file() else None
            if frames is None or len(frames) != frames_n:
                t0 = time.perf_counter()
                use_audio = {"shuffled_audio": other, "motion_frames_only": np.zeros_like(audio)}.get(
                    name, audio
                )
                handles = []
                if name == "zeroed_audio_attention":
                    pipe = backend.pipeline(weights.resolve(), args.device, "auto")
                    # CrossAttentionLayer returns x + attention: the hook returns x alone.
                    handles = [layer.register_forward_hook(lambda m, a, o: a[0])
                               for layer in pipe.backbone.audio_attention.values()]  # fmt: skip
                try:
                    frames = render_held_out(backend, weights, portrait, use_audio, frames_n, size, args.device,
                                             4 if args.smoke else args.eval_steps)  # fmt: skip
                finally:
                    for h in handles:
                        h.remove()
                np.save(target.with_suffix(".tmp.npy"), frames)
                target.with_suffix(".tmp.npy").replace(target)
                log(f"eval {clip['utterance']} {name}: {frames_n} frames in {time.perf_counter() - t0:.1f} s")
            results[name].append(curves_r(aperture(frames, box), loud, jaw))
    (work / "eval" / "per_utterance.json").write_text(json.dumps(results))
    preview(work, clips[0], size)
    return {name: summarise(rows) for name, rows in results.items()} | {
        "utterances": len(clips), "frames": [min(c["frames"], args.eval_frames or c["frames"]) for c in clips],
        "steps": 4 if args.smoke else args.eval_steps, "guidance_scale": EVAL_OPTIONS["guidance_scale"]}  # fmt: skip


def preview(work: Path, clip: dict, size: int) -> None:
    """WORK/eval/preview.png: every 5th of the first 40 frames, teacher and each condition, a row each."""
    from PIL import Image

    rows = [read_video(clip["files"]["frames"])]
    rows += [np.load(work / "eval" / f"{clip['utterance']}.{name}.npy") for name in CONDITIONS]
    count = min(len(r) for r in rows)
    grid = np.concatenate([np.concatenate(list(r[: min(40, count) : 5]), axis=1) for r in rows], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST).save(
        work / "eval" / "preview.png"
    )


# -- report, pack ----------------------------------------------------------------------------------------
def report(args) -> dict:
    """Everything measured so far (a run cut short still reports), printed and written as WORK/report.json."""
    work = args.work
    phases = {p: finished(work, p) for p in PHASES}
    for stage in ("stage1", "stage2"):
        if phases.get(stage) is None and (work / "runs" / stage).is_dir():
            phases[stage] = {"running": True, **stage_metrics(work / "runs" / stage)}
    doc = {"size": args.size, "device": args.device, "phases": phases}
    tmp = work / "report.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(work / "report.json")
    print(f"\nDistillation benchmark, {args.size} px, {args.device} (work dir {work})")
    ev = phases.get("eval") or {}
    if ev:
        for suffix, what in (("", "raw curves"), ("_hp", f"curves high-passed at {HIGH_PASS_FRAMES} frames")):
            print(f"  {what + ':':24} {'r vs loudness':>14} {'lag':>4} {'r vs teacher jaw':>17} {'lag':>4}   "
                  f"(mean over {ev.get('utterances')} held-out utterances; range)")  # fmt: skip
            for name in ("teacher", *CONDITIONS):
                e = ev[name]
                loud, jaw = f"loud{suffix}", f"jaw{suffix}"
                print(f"  {name:24} {e['r_' + loud]:14.3f} {e['lag_' + loud]:4d} {e['r_' + jaw]:17.3f} "
                      f"{e['lag_' + jaw]:4d}   loud {e['r_' + loud + '_range']}, jaw {e['r_' + jaw + '_range']}")  # fmt: skip
    if phases.get("probe"):
        print(
            f"  probe: random wav2vec -> loudness, ridge R^2 on held-out voices {phases['probe']['r2_heldout']}"
        )
    if phases.get("vae"):
        v = phases["vae"]
        print(
            f"  vae: {v['steps']} steps, held-out PSNR {v['psnr_heldout']} dB, mouth box {v['psnr_mouth_heldout']} dB"
        )
    for stage in ("stage1", "stage2"):
        st = phases.get(stage) or {}
        if st.get("steps"):
            print(f"  {stage}: {st['steps']} steps, loss {st['loss_first20']} (mean of the first 20) -> "
                  f"{st['loss_last20']} (last 20), {st['steps_per_s']} steps/s"
                  f"{' (running)' if st.get('running') else ''}")  # fmt: skip
    walls = {p: r.get("wall_s") for p, r in phases.items() if r and r.get("wall_s") is not None}
    print("  wall time per phase (s): " + ", ".join(f"{p} {w}" for p, w in walls.items()))
    return doc


PACKED = ("data", "evaldata", "speech", "portraits", "utterances.json", "done/data")


def pack(args) -> None:
    """WORK -> --archive: what the training phases need, rendered beforehand (tar.gz)."""
    with tarfile.open(args.archive, "w:gz") as tar:
        for name in PACKED:
            tar.add(args.work / name, arcname=name)
    log(f"packed {args.archive} ({args.archive.stat().st_size / 2**20:.1f} MiB)")


def unpack(args) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.archive, "r:gz") as tar:
        tar.extractall(args.work, filter="data")
    log(f"unpacked {args.archive} into {args.work}")


PHASES = {"data": phase_data, "probe": phase_probe, "vae": phase_vae, "weights": phase_weights,
          "stage1": phase_stage1, "stage2": phase_stage2, "eval": phase_eval}  # fmt: skip


def carry_on(args) -> None:
    """A new work dir that goes on training from an earlier one (`--from`): its data, probe and VAE
    are reused (hard links), and its exported stage-1 weights are the new start, so `all` then
    trains stage 1 further, stage 2 afresh, and evaluates."""
    earlier = args.from_work
    if earlier is None or not (earlier / "weights" / "stage1").is_dir():
        raise SystemExit("continue: --from WORK must name a work dir whose stage 1 is exported")
    for name in ("components", "data", "evaldata", "portraits", "render", "speech", "utterances.json"):
        source = earlier / name
        if source.exists() and not (args.work / name).exists():
            subprocess.run(["cp", "-al", str(source), str(args.work / name)], check=True)
    for phase in ("data", "probe", "vae", "weights"):
        if finished(earlier, phase) and not finished(args.work, phase):
            done_marker(args.work, phase).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(done_marker(earlier, phase), done_marker(args.work, phase))
    start = args.work / "weights" / "start"
    if not start.exists():
        shutil.copytree(earlier / "weights" / "stage1", start)
    log(f"continue: {args.work} goes on from {earlier}'s stage 1; run `all` on it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=[*PHASES, "all", "report", "pack", "unpack", "continue"])
    parser.add_argument("--from", dest="from_work", type=Path, help="continue: the earlier work dir")
    parser.add_argument("--archive", type=Path, help="pack / unpack: the tar.gz")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="a few steps of everything: the plumbing only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 on a CPU shared with other jobs)"
    )
    parser.add_argument("--vae-minutes", type=float, default=5.0)
    parser.add_argument("--stage1-minutes", type=float, default=8.0)
    parser.add_argument("--stage2-minutes", type=float, default=14.0)
    parser.add_argument(
        "--eval-utterances", type=int, default=0, help="held-out utterances rendered (0: all)"
    )
    parser.add_argument("--eval-frames", type=int, default=0, help="frames of each rendered (0: all)")
    parser.add_argument(
        "--eval-steps", type=int, default=EVAL_OPTIONS["steps"], help="denoising steps per clip"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase in ("pack", "unpack", "report", "continue"):
        {"pack": pack, "unpack": unpack, "report": report, "continue": carry_on}[args.phase](args)
        return
    for name, phase in PHASES.items():
        if args.phase in (name, "all"):
            if finished(args.work, name) and args.phase == "all":
                continue
            t0 = time.perf_counter()
            result = phase(args)
            result["wall_s"] = round(time.perf_counter() - t0, 1)
            finish(args.work, name, result)
            log(f"{name}: {json.dumps(result)}")
            report(args)


if __name__ == "__main__":
    main()
