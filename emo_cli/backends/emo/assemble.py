"""`init_weights`: a start-point EMO model from the public components.

Both UNets start as the SD1.5 UNet, the temporal modules as AnimateDiff's, the VAE and the audio
encoder are copied; every EMO layer (reference-, audio- and speed-attention outputs, the face
locator's last conv) starts at zero, so the assembled model computes what SD1.5 + AnimateDiff
compute until it is trained. It is not yet a talking-head model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from emo_cli.backends.emo.weights import INDEX, atomic_dir, write_index
from emo_cli.errors import WeightsError

DTYPE_NAMES = ("float32", "float16", "bfloat16")
PART_FOLDERS = {"backbone": "denoising_unet"}  # EmoModel attribute -> weights folder


# What `init_weights` reads from each local folder: the config each loader opens first.
EXPECTED_FILES = {
    "--sd15": ("unet/config.json", "scheduler/scheduler_config.json"),
    "--vae": ("config.json",),
    "--motion-adapter": ("config.json",),
    "--wav2vec": ("config.json",),
}


def _source(value: str | Path, flag: str, what: str) -> str:
    """A local folder, or a hub id ("owner/name") that goes through the Hugging Face cache.

    Raises:
        WeightsError: neither; or a local folder that lacks a file its loader needs.
    """
    text = str(value)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WeightsError(f"{flag} {text}: is a file, not a folder; pass the local folder of {what}")
        missing = [name for name in EXPECTED_FILES.get(flag, ()) if not (path / name).is_file()]
        if missing:
            raise WeightsError(f"{flag} {text}: not {what}: {', '.join(missing)} missing from the folder")
        return str(path)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return text
    raise WeightsError(f"{flag} {text}: no such folder; download {what} (e.g. `huggingface-cli download ...`) "
                       f"and pass its local folder")  # fmt: skip


def check_sources(*, sd15: str | Path, vae: str | Path, motion_adapter: str | Path, wav2vec: str | Path,
                  out: str | Path, dtype: str = "float32", overwrite: bool = False) -> dict[str, str]:  # fmt: skip
    """Every argument of `init_weights` checked before torch is imported (it takes seconds):
    returns the resolved sources by name.

    Raises:
        WeightsError: every bad argument at once, one per line.
    """
    wanted = {
        "sd15": (sd15, "--sd15", "Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5)"),
        "vae": (vae, "--vae", "sd-vae-ft-mse (stabilityai/sd-vae-ft-mse)"),
        "motion_adapter": (motion_adapter, "--motion-adapter",
                           "the AnimateDiff motion adapter (guoyww/animatediff-motion-adapter-v1-5-2)"),
        "wav2vec": (wav2vec, "--wav2vec", "wav2vec 2.0 (facebook/wav2vec2-base-960h)"),
    }  # fmt: skip
    sources, problems = {}, []
    for name, (value, flag, what) in wanted.items():
        try:
            sources[name] = _source(value, flag, what)
        except WeightsError as exc:
            problems.append(str(exc))
    if dtype not in DTYPE_NAMES:
        problems.append(f"--dtype {dtype!r}: must be one of {', '.join(DTYPE_NAMES)}")
    if Path(out).expanduser().exists() and not overwrite:
        problems.append(f"{out} already exists; choose another --out or pass --force to replace it")
    if len(problems) == 1:
        raise WeightsError(problems[0])
    if problems:
        raise WeightsError(
            f"{len(problems)} problems with the arguments:\n" + "\n".join(f"  {p}" for p in problems)
        )
    return sources


def _load(loader, source: str, flag: str, what: str, **kwargs):
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError) as exc:
        if not Path(source).exists():
            raise WeightsError(f"{flag} {source}: no such folder, and loading it as a Hugging Face hub id failed "
                               f"({exc}); pass the local folder of {what}") from exc  # fmt: skip
        raise WeightsError(f"{flag} {source}: cannot load {what} ({exc})") from exc


def init_weights(
    *,
    sd15: str | Path,
    vae: str | Path,
    motion_adapter: str | Path,
    wav2vec: str | Path,
    out: str | Path,
    dtype: str = "float32",
    overwrite: bool = False,
    audio_tokens: int = 32,
    hidden_dim: int = 512,
    motion_frames: int = 4,
) -> dict:
    """Assemble and write a weights folder at `out` (atomically); returns its index.

    Every argument is checked (`check_sources`) before torch, diffusers and transformers load.
    """
    found = check_sources(sd15=sd15, vae=vae, motion_adapter=motion_adapter, wav2vec=wav2vec, out=out,
                          dtype=dtype, overwrite=overwrite)  # fmt: skip
    sd15_src, vae_src, motion_src, wav_src = (found[k] for k in ("sd15", "vae", "motion_adapter", "wav2vec"))

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import Wav2Vec2Model

    torch_dtype = getattr(torch, dtype)

    unet2d = _load(
        UNet2DConditionModel.from_pretrained, sd15_src, "--sd15", "the SD1.5 UNet (unet/)", subfolder="unet"
    )
    scheduler = _load(DDIMScheduler.from_pretrained, sd15_src, "--sd15", "the SD1.5 scheduler (scheduler/)",
                      subfolder="scheduler")  # fmt: skip
    # DDIM as in the AnimateDiff and Hallo pipelines: no clipping of the predicted sample.
    scheduler = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    autoencoder = _load(AutoencoderKL.from_pretrained, vae_src, "--vae", "the VAE")
    adapter = _load(MotionAdapter.from_pretrained, motion_src, "--motion-adapter", "the motion adapter")
    audio_encoder = _load(Wav2Vec2Model.from_pretrained, wav_src, "--wav2vec", "the wav2vec 2.0 model")

    try:
        model = assemble_model(unet2d, scheduler, autoencoder, adapter, audio_encoder, audio_tokens=audio_tokens,
                               hidden_dim=hidden_dim, motion_frames=motion_frames)  # fmt: skip
    except ValueError as exc:
        raise WeightsError(f"--motion-adapter {motion_src} does not fit the --sd15 UNet ({exc})") from exc

    out = Path(out).expanduser()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, part in model.parts().items():
            if torch_dtype != torch.float32:
                part.to(torch_dtype)
            part.save_pretrained(tmp / PART_FOLDERS.get(name, name), safe_serialization=True)
        pre = Path(wav_src) / "preprocessor_config.json"
        if pre.is_file():
            shutil.copyfile(pre, tmp / "audio_encoder" / "preprocessor_config.json")
        scheduler.save_pretrained(tmp / "scheduler")
        sources = {"sd15": sd15_src, "vae": vae_src, "motion_adapter": motion_src, "wav2vec": wav_src}
        index = write_index(tmp, sources, extra={"dtype": dtype, "trained": False})
        assert (tmp / INDEX).is_file()
    return index


def assemble_model(unet2d, scheduler, vae, motion_adapter, audio_encoder, *, audio_tokens: int = 32,
                   hidden_dim: int = 512, motion_frames: int = 4):  # fmt: skip
    """An `EmoModel` from loaded components: both UNets from `unet2d`, temporal modules from
    `motion_adapter`, new EMO modules sized to fit, their output layers at zero.

    Raises:
        ValueError: the motion adapter does not fit the UNet.
    """
    from diffusers import UNetMotionModel

    from emo_cli.backends.emo.modules import AudioProjection, EmoBackbone, FaceLocator, SpeedEncoder
    from emo_cli.backends.emo.pipeline import EmoModel

    motion_unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter)
    cross_dim = int(unet2d.config.cross_attention_dim)
    backbone = EmoBackbone(
        unet_config={k: v for k, v in motion_unet.config.items() if not k.startswith("_")},
        audio_context_dim=cross_dim,
        speed_context_dim=cross_dim,
        motion_frames=motion_frames,
        # What AnimateDiff's motion modules were trained with (each frame normalised on its own),
        # and speed layers that attend along the frame axis (the paper's; trainable from zero).
        temporal_norm="per_frame",
        speed_attention_mode="frame_axis",
    )
    backbone.unet.load_state_dict(motion_unet.state_dict(), strict=True)
    del motion_unet
    levels = len(vae.config.block_out_channels) - 1  # the VAE halves the size this many times
    face_locator = FaceLocator(in_channels=1, block_out_channels=tuple(16 * 2**i for i in range(levels + 1)),
                               out_channels=int(unet2d.config.in_channels))  # fmt: skip
    audio_proj = AudioProjection(
        window=5, layers=int(audio_encoder.config.num_hidden_layers), feature_dim=int(audio_encoder.config.hidden_size),
        hidden_dim=hidden_dim, tokens=audio_tokens, context_dim=cross_dim,
    )  # fmt: skip
    speed_encoder = SpeedEncoder(hidden_dim=hidden_dim, context_dim=cross_dim)
    return EmoModel(
        reference_unet=unet2d, backbone=backbone, face_locator=face_locator, audio_proj=audio_proj,
        speed_encoder=speed_encoder, vae=vae, audio_encoder=audio_encoder, scheduler_config=dict(scheduler.config),
    )  # fmt: skip
