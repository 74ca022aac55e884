"""Portrait loading, the one place an image file is decoded: any format Pillow reads, any bit
depth and color mode -> upright 8-bit sRGB.

Pillow's own `convert("RGB")` is not enough: it clips 16-bit grayscale (`I;16`, `I`) to 255
instead of scaling it (a 16-bit PNG comes out almost white), ignores embedded ICC profiles
(CMYK and wide-gamut photos come out with wrong colors) and cannot convert LAB at all. So each
mode is brought to 8 bits first, then through its ICC profile (littlecms, via Pillow's
ImageCms) to sRGB, and transparency is composited on white.

Decoding is bounded: an image of more than `max_portrait_pixels()` pixels (`EMO_MAX_PORTRAIT_PIXELS`,
default 100 million) is refused from its header, before its pixels are decompressed, so a
small file that declares an enormous canvas (a decompression bomb) cannot exhaust memory.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emo_cli.errors import InputError, UsageError
from emo_cli.fsutil import NotRegularFileError, open_regular_file

if TYPE_CHECKING:
    import numpy as np

MAX_PIXELS_ENV = "EMO_MAX_PORTRAIT_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000  # a 108-megapixel phone photo is 12000 x 9000
MIN_SIDE = 16


def max_portrait_pixels() -> int:
    """The largest portrait (width x height) that is decoded: EMO_MAX_PORTRAIT_PIXELS or 100 million.

    Raises:
        UsageError: the environment variable is not a positive whole number.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(
            f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive whole number of pixels"
        )
    return value


def load_portrait(path: Path | str) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 sRGB array, upright as EXIF says.

    Transparent pixels are composited on white, the way a viewer shows them.

    Raises:
        InputError: the file is missing, not a regular file, not a readable image, larger
            than `max_portrait_pixels()` or smaller than 16 pixels on a side.
    """
    import numpy as np

    return np.ascontiguousarray(np.asarray(_decode_portrait(Path(path)), dtype=np.uint8))


def portrait_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of the portrait as `load_portrait` reads it, upright: the same decode,
    checks and errors, without the array (validation needs no NumPy).

    Raises:
        InputError: as `load_portrait`.
    """
    return _decode_portrait(Path(path)).size


def _decode_portrait(path: Path) -> Any:
    """The decoded, checked portrait as a Pillow "RGB" image in sRGB (see `load_portrait`)."""
    from PIL import Image

    limit = max_portrait_pixels()
    # Pillow refuses images above 2 x MAX_IMAGE_PIXELS by itself; ours is the limit that counts,
    # so Pillow's is only ever raised to it, never lowered (it is process-wide).
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit
    try:
        stream = open_regular_file(path)
    except FileNotFoundError as exc:
        raise InputError(f"portrait {path} does not exist") from exc
    except NotRegularFileError as exc:
        raise InputError(f"portrait {path} is {exc.kind}, not an image file") from exc
    except OSError as exc:  # permission, a symlink loop, a name too long...
        raise InputError(f"portrait {path} cannot be read ({exc.strerror or exc})") from exc
    try:
        with stream, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > limit:
                    raise InputError(_too_large(path, f"{width * height:,}", limit, f"{width}x{height}, "))
                img.load()
                rgb = _to_srgb(img)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's guard, at twice its MAX_IMAGE_PIXELS
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,}" if found else "more than twice that many"
        raise InputError(_too_large(path, pixels, limit)) from exc
    except Exception as exc:
        # The bytes are untrusted: whatever a decoder raises on them (OSError, SyntaxError,
        # ValueError, struct.error, EOFError... depending on the format plugin) means the file
        # is not an image this tool can use, which is the user's to fix, not a bug.
        reason = str(exc) or type(exc).__name__
        raise InputError(f"portrait {path} is not a readable image ({reason})") from exc
    width, height = rgb.size
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(f"portrait {path} is too small ({width}x{height} pixels)")
    return rgb


def _too_large(path: Path, pixels: str, limit: int, size: str = "") -> str:
    return (
        f"portrait {path} is too large to decode ({size}{pixels} pixels; the limit is {limit:,}): "
        f"scale it down, or raise the limit with {MAX_PIXELS_ENV} if the image is genuine"
    )


def _to_srgb(img: Any) -> Any:
    """Any Pillow image -> an 8-bit "RGB" image in sRGB, upright, transparency on white."""
    from PIL import Image, ImageOps

    icc = img.info.get("icc_profile")
    img = ImageOps.exif_transpose(img)
    img = _to_8bit(img)
    if img.mode == "LAB":
        icc, img = None, _convert_with_profile(img, _lab_profile(), "RGB") or img.convert("RGB")
    if icc:
        img = _convert_with_profile(img, icc, "RGBA" if _has_alpha(img) else "RGB") or img
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    return img.convert("RGB")


def _has_alpha(img: Any) -> bool:
    return img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info)


def _to_8bit(img: Any) -> Any:
    """Scale high-bit-depth single-channel modes to "L" (Pillow would clip them at 255)."""
    if not (img.mode.startswith("I;16") or img.mode in ("I", "F")):
        return img
    import numpy as np
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        # I;16 holds 0-65535; "I" is what 16-bit data becomes in some plugins (32-bit storage).
        # Integer arithmetic, in place: (v + 128) // 257 is v / 257 rounded, at 4 bytes a pixel.
        values = np.array(img, dtype=np.int32)
        np.clip(values, 0, 65535, out=values)
        values += 128
        values //= 257
        return Image.fromarray(values.astype(np.uint8), "L")
    if img.mode == "F":  # floating point grayscale (TIFF): 0.0 black, 1.0 white
        values = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0)
        return Image.fromarray(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8), "L")
    return img


def _lab_profile() -> Any:
    from PIL import ImageCms

    return ImageCms.createProfile("LAB")


def _convert_with_profile(img: Any, profile: Any, mode: str) -> Any:
    """`img` converted from `profile` (ICC bytes or a profile) to sRGB, or None if that fails."""
    from PIL import ImageCms

    if img.mode not in ("RGB", "RGBA", "CMYK", "L", "LAB") or (img.mode == "L" and mode != "RGB"):
        return None  # palette, bilevel or gray with alpha: littlecms wants plain channels
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile)) if isinstance(profile, bytes) else profile
        if img.mode in ("RGB", "RGBA") and "sRGB" in ImageCms.getProfileDescription(source):
            return None  # already sRGB: converting would only cost time
        return ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a broken or mismatched profile: the plain conversion is the best guess
