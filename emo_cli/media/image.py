"""Portrait loading: any size, EXIF orientation, grayscale, palette, RGBA and CMYK -> RGB uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emo_cli.errors import InputError


def load_portrait(path: Path | str) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array, upright as EXIF says.

    Transparent pixels are composited on white, the way a viewer shows them.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(canvas, rgba)
            rgb = img.convert("RGB")
    except FileNotFoundError as exc:
        raise InputError(f"portrait {path} does not exist") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"portrait {path} is not a readable image ({exc})") from exc
    array = np.asarray(rgb, dtype=np.uint8)
    if array.shape[0] < 16 or array.shape[1] < 16:
        raise InputError(f"portrait {path} is too small ({array.shape[1]}x{array.shape[0]} pixels)")
    return np.ascontiguousarray(array)
