"""Portrait decoding: every bit depth and color mode reads as the picture a viewer shows, and an
image too large to decode is refused from its header, naming the file and the field."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from factories import run_emo
from PIL import Image, ImageCms

from emo_cli.errors import InputError, UsageError
from emo_cli.media.image import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, load_portrait, max_portrait_pixels

SIDE = 32


def png(
    width: int, height: int, color_type: int, depth: int, rows: bytes, *chunks: tuple[bytes, bytes]
) -> bytes:
    """A PNG written by hand, so every bit depth and color type can be tested (Pillow writes few).

    `rows`: the raw scanlines without filter bytes; `chunks`: extra (type, data) before IDAT.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    stride = len(rows) // height
    raw = b"".join(b"\0" + rows[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    body = b"".join(chunk(kind, data) for kind, data in chunks)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + body
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def uniform(array: np.ndarray) -> tuple[int, int, int]:
    """The one RGB color of an image that should be a single color."""
    colors = np.unique(array.reshape(-1, 3), axis=0)
    assert len(colors) == 1, colors[:5]
    return tuple(int(c) for c in colors[0])


def samples16(value: int, count: int) -> bytes:
    return struct.pack(f">{count}H", *([value] * count))


# 16-bit 0x4040 is 25% gray: 64 in 8 bits. Pillow's convert("RGB") clips I;16 at 255 (white).
@pytest.mark.parametrize(
    ("name", "color_type", "depth", "rows", "expected"),
    [
        ("gray16", 0, 16, samples16(0x4040, SIDE * SIDE), (64, 64, 64)),
        ("gray16-dark", 0, 16, samples16(0x00FF, SIDE * SIDE), (1, 1, 1)),
        ("gray8", 0, 8, bytes([64]) * SIDE * SIDE, (64, 64, 64)),
        ("gray4", 0, 4, bytes([0x44]) * (SIDE * SIDE // 2), (68, 68, 68)),
        ("gray1", 0, 1, bytes([0xFF]) * (SIDE * SIDE // 8), (255, 255, 255)),
        ("rgb16", 2, 16, struct.pack(">3H", 0xFFFF, 0x8080, 0x0000) * SIDE * SIDE, (255, 128, 0)),
        ("gray-alpha16-transparent", 4, 16, struct.pack(">2H", 0, 0) * SIDE * SIDE, (255, 255, 255)),
        ("gray-alpha16-opaque", 4, 16, struct.pack(">2H", 0x4040, 0xFFFF) * SIDE * SIDE, (64, 64, 64)),
        ("gray-alpha8-half", 4, 8, bytes([0, 128]) * SIDE * SIDE, (127, 127, 127)),
        ("rgba16-opaque", 6, 16, struct.pack(">4H", 0, 0x8080, 0xFFFF, 0xFFFF) * SIDE * SIDE, (0, 128, 255)),
        ("rgba8-transparent", 6, 8, bytes([0, 0, 0, 0]) * SIDE * SIDE, (255, 255, 255)),
    ],
)
def test_png_of_every_depth_and_color_type(tmp_path, name, color_type, depth, rows, expected):
    path = write(tmp_path, f"{name}.png", png(SIDE, SIDE, color_type, depth, rows))
    rgb = load_portrait(path)
    assert rgb.shape == (SIDE, SIDE, 3) and rgb.dtype == np.uint8
    assert uniform(rgb) == expected


def test_palette_png_with_transparency(tmp_path):
    palette = bytes([200, 10, 10, 10, 200, 10])
    rows = bytes([0] * (SIDE * SIDE // 2) + [1] * (SIDE * SIDE // 2))  # top half index 0, bottom 1
    # tRNS: index 0 fully transparent, index 1 opaque.
    path = write(
        tmp_path, "p.png", png(SIDE, SIDE, 3, 8, rows, (b"PLTE", palette), (b"tRNS", bytes([0, 255])))
    )
    rgb = load_portrait(path)
    assert uniform(rgb[: SIDE // 2]) == (255, 255, 255)
    assert uniform(rgb[SIDE // 2 :]) == (10, 200, 10)


def test_sixteen_bit_tiff_and_float_tiff(tmp_path):
    gray16 = Image.fromarray(np.full((SIDE, SIDE), 0xC0C0, np.uint16))
    assert gray16.mode == "I;16"
    gray16.save(tmp_path / "g16.tif")
    assert uniform(load_portrait(tmp_path / "g16.tif")) == (192, 192, 192)
    as_int = Image.fromarray(np.full((SIDE, SIDE), 0x4040, np.int32), "I")
    as_int.save(tmp_path / "i32.tif")
    assert uniform(load_portrait(tmp_path / "i32.tif")) == (64, 64, 64)
    floats = Image.fromarray(np.full((SIDE, SIDE), 0.5, np.float32), "F")
    floats.save(tmp_path / "f.tif")
    assert uniform(load_portrait(tmp_path / "f.tif")) == (128, 128, 128)


def test_cmyk_jpeg_and_tiff(tmp_path):
    # Pure cyan ink: no red, full green and blue.
    cyan = Image.new("CMYK", (SIDE, SIDE), (255, 0, 0, 0))
    cyan.save(tmp_path / "c.tif")
    assert uniform(load_portrait(tmp_path / "c.tif")) == (0, 255, 255)
    cyan.save(tmp_path / "c.jpg", quality=100)
    rgb = load_portrait(tmp_path / "c.jpg")
    assert np.abs(rgb.astype(int) - (0, 255, 255)).max() <= 3


def test_lab_image(tmp_path):
    # L* 50, a* 0, b* 0 is a neutral middle gray (sRGB about 119).
    Image.new("LAB", (SIDE, SIDE), (128, 128, 128)).save(tmp_path / "lab.tif")
    r, g, b = uniform(load_portrait(tmp_path / "lab.tif"))
    assert abs(r - g) <= 1 and abs(g - b) <= 1 and 110 <= r <= 125


def linear_rgb_profile() -> bytes:
    """An ICC v2 display profile with sRGB's primaries but a linear tone curve (gamma 1.0), as
    raw converters write: its mid values must come out brighter in sRGB. Built by hand because
    littlecms, through Pillow, only makes sRGB, LAB and XYZ profiles."""

    def s15(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    text = b"linear test RGB\0"
    tags = {
        b"desc": b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67),
        b"wtpt": b"XYZ \0\0\0\0" + s15(0.9642, 1.0, 0.8249),
        b"rXYZ": b"XYZ \0\0\0\0" + s15(0.4361, 0.2225, 0.0139),
        b"gXYZ": b"XYZ \0\0\0\0" + s15(0.3851, 0.7169, 0.0971),
        b"bXYZ": b"XYZ \0\0\0\0" + s15(0.1431, 0.0606, 0.7141),
    }
    for channel in (b"rTRC", b"gTRC", b"bTRC"):
        tags[channel] = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0100) + b"\0\0"
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags.items():
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + bytes(12)
        + b"acsp" + bytes(24) + struct.pack(">I", 0) + s15(0.9642, 1.0, 0.8249) + bytes(48)
    )  # fmt: skip
    assert len(header) == 128
    return header + table + body


def test_an_embedded_icc_profile_is_applied(tmp_path):
    Image.new("RGB", (SIDE, SIDE), (60, 60, 60)).save(
        tmp_path / "linear.png", icc_profile=linear_rgb_profile()
    )
    r, g, b = uniform(load_portrait(tmp_path / "linear.png"))
    # Linear 60/255 is sRGB 133: the profile was applied (without it the gray stays 60).
    assert abs(r - 133) <= 2 and abs(r - g) <= 1 and abs(g - b) <= 1
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (SIDE, SIDE), (60, 70, 80)).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert uniform(load_portrait(tmp_path / "srgb.png")) == (60, 70, 80)
    Image.new("RGB", (SIDE, SIDE), (60, 70, 80)).save(tmp_path / "broken.png", icc_profile=b"not a profile")
    assert uniform(load_portrait(tmp_path / "broken.png")) == (60, 70, 80)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    """A 48x32 image whose top-left quarter is red, stored so that EXIF `orientation` makes it
    upright: the decoded image is 48x32 with red at the top left, whatever the orientation."""
    upright = np.full((32, 48, 3), 255, np.uint8)
    upright[:16, :24] = (255, 0, 0)
    image = Image.fromarray(upright)
    # The stored pixels are the upright ones transformed by the inverse of `orientation`.
    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = image if inverse is None else image.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.png", exif=exif.tobytes())
    rgb = load_portrait(tmp_path / "o.png")
    assert rgb.shape == (32, 48, 3)
    assert tuple(rgb[4, 4]) == (255, 0, 0) and tuple(rgb[28, 44]) == (255, 255, 255)


def bomb_png(width: int, height: int) -> bytes:
    """A 1-bit black canvas: tens of kilobytes on disk, width x height x 3 bytes decoded."""
    return png(width, height, 0, 1, bytes((width + 7) // 8 * height))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    path = write(tmp_path, "bomb.png", bomb_png(20000, 20000))
    assert path.stat().st_size < 100_000
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        load_portrait(path)
    assert time.monotonic() - started < 2  # refused from the header, nothing decompressed
    assert str(info.value) == (
        f"portrait {path} is too large to decode (400,000,000 pixels; the limit is "
        f"{DEFAULT_MAX_PIXELS:,}): scale it down, or raise the limit with {MAX_PIXELS_ENV} if the image is genuine"
    )


def test_the_pixel_limit_is_a_setting(tmp_path, monkeypatch):
    path = write(tmp_path, "g.png", png(64, 64, 0, 8, bytes([90]) * 64 * 64))
    monkeypatch.setenv(MAX_PIXELS_ENV, "4_000")
    assert max_portrait_pixels() == 4000
    with pytest.raises(InputError, match=r"64x64, 4,096 pixels; the limit is 4,000"):
        load_portrait(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "4096")
    assert uniform(load_portrait(path)) == (90, 90, 90)
    # A limit above Pillow's own bomb guard raises that guard too (it would refuse at 2x its own).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert uniform(load_portrait(path)) == (90, 90, 90)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(UsageError, match=f"{MAX_PIXELS_ENV}='lots' is not a positive whole number"):
        max_portrait_pixels()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.png", b""),
        ("text.jpg", b"hello, I am not a picture\n" * 10),
        ("truncated.png", png(SIDE, SIDE, 2, 8, bytes(SIDE * SIDE * 3))[:60]),
        ("bad-crc.png", png(SIDE, SIDE, 2, 8, bytes(SIDE * SIDE * 3)).replace(b"IDAT", b"IDAt")),
        ("huge-ihdr.png", png(1, 1, 0, 8, b"\0")[:16] + struct.pack(">II", 2**31 - 1, 2**31 - 1)),
    ],
)
def test_broken_files_are_input_errors(tmp_path, name, data):
    path = write(tmp_path, name, data)
    with pytest.raises(InputError, match=f"portrait {path} is "):
        load_portrait(path)


def test_validate_names_the_file_and_field_of_a_bomb(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png(20000, 20000))
    (tmp_path / "voice.wav").write_bytes(
        Path(__file__).resolve().parents[2].joinpath("manifests/assets/hello_en.wav").read_bytes()
    )
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\ndefaults: {backend: testbars}\nportraits:\n  big: bomb.png\naudio: {en: voice.wav}\n"
        "jobs: [{portrait: big, audio: en}]\n"
    )
    proc = run_emo("validate", str(manifest), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0].startswith(
        f"{manifest}:4:8 portraits.big: portrait {tmp_path / 'bomb.png'} is too large to decode (400,000,000 pixels"
    )
    assert "Traceback" not in proc.stderr
    proc = run_emo("validate", str(manifest), timeout=60, **{MAX_PIXELS_ENV: "0"})
    assert proc.returncode == 2
    assert f"{MAX_PIXELS_ENV}='0' is not a positive whole number of pixels" in proc.stderr


def test_a_sixteen_bit_portrait_decodes_like_its_eight_bit_copy(tmp_path):
    """The photo case of the report: a 16-bit grayscale PNG of a face read ~90% white."""
    photo = np.asarray(Image.open(io.BytesIO(Path(__file__).resolve().parents[2].joinpath(
        "manifests/assets/astronaut.jpg").read_bytes())).convert("L"))  # fmt: skip
    wide = photo.astype(np.uint16) * 257
    height, width = wide.shape
    path = write(tmp_path, "face16.png", png(width, height, 0, 16, wide.astype(">u2").tobytes()))
    rgb = load_portrait(path)
    assert np.array_equal(rgb[..., 0], photo) and np.array_equal(rgb[..., 1], photo)


def test_the_face_in_a_sixteen_bit_portrait_is_found(tmp_path):
    """What the report saw: the almost-white decode of a 16-bit PNG had "no face found"."""
    from emo_cli.backends.face import detect_faces

    photo = np.asarray(
        Image.open(Path(__file__).resolve().parents[2] / "manifests/assets/astronaut.jpg").convert("L")
    )
    wide = photo.astype(np.uint16) * 257
    path = write(
        tmp_path, "face16.png", png(wide.shape[1], wide.shape[0], 0, 16, wide.astype(">u2").tobytes())
    )
    (face,) = detect_faces(load_portrait(path))
    (reference,) = detect_faces(np.repeat(photo[..., None], 3, axis=2))
    assert abs(face.center[0] - reference.center[0]) < 2 and abs(face.center[1] - reference.center[1]) < 2
