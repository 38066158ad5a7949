"""Safe image decoding: a pixel limit checked before decoding, content verified, EXIF respected.

Every image that enters the project (upload, dataset, sample) goes through `load_image` or
`read_image_size`. Sizes are always (width, height) of the image *as displayed*, i.e. after EXIF
orientation, which is the frame annotation tools use.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 50 megapixels: far above any photo a detector is fine-tuned on, far below what exhausts memory
# (an RGB image of this size decodes to 150 MB, its float tensor to 600 MB).
MAX_PIXELS = 50_000_000

# Formats we accept, verified from the file's content (never its extension).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO")

# EXIF orientations 5..8 rotate by 90 degrees: width and height swap.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}

Source = Union[str, Path, bytes, BinaryIO]


class ImageError(ValueError):
    """An image that cannot be used; `str()` names the file and the problem in one line."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, without decoding pixels: size after EXIF orientation, format."""

    width: int
    height: int
    format: str


def _open(source: Source, name: str) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise ImageError(name, "empty file (0 bytes)")
        stream: BinaryIO = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(name, "file not found")
        if path.stat().st_size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        stream = open(path, "rb")  # noqa: SIM115 - PIL keeps it open lazily; closed by caller
    else:
        stream = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"image too large to decode safely ({exc})") from None
    except Image.DecompressionBombWarning:
        raise ImageError(name, "image too large to decode safely") from None
    except UnidentifiedImageError:
        raise ImageError(name, "not an image file (content is not JPEG, PNG, WebP, BMP, GIF or TIFF)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, f"corrupt or truncated image header ({exc})") from None
    if img.format not in FORMATS:
        raise ImageError(name, f"unsupported image format {img.format}")
    return img


def _name_of(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", None) or "image"


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is not a broken image
        return 1


def read_image_header(source: Source, name: str | None = None) -> ImageHeader:
    """Size (after EXIF orientation) and format from the header alone; fast, no decoding."""
    label = _name_of(source, name)
    img = _open(source, label)
    try:
        w, h = img.size
        if _orientation(img) in _TRANSPOSING_ORIENTATIONS:
            w, h = h, w
        return ImageHeader(int(w), int(h), str(img.format))
    finally:
        img.close()


def read_image_size(source: Source, name: str | None = None) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the header alone."""
    header = read_image_header(source, name)
    return header.width, header.height


def load_image(source: Source, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image to RGB, upright per EXIF; refuse it before decoding if over `max_pixels`.

    Raises ImageError naming the file and the problem: empty, not an image, truncated or corrupt,
    unsupported format, or too many pixels. Greyscale, palette, 16-bit and CMYK images become RGB;
    transparent images are composited on white.
    """
    label = _name_of(source, name)
    img = _open(source, label)
    try:
        w, h = img.size
        if w <= 0 or h <= 0:
            raise ImageError(label, f"invalid size {w}x{h}")
        if w * h > max_pixels:
            raise ImageError(
                label,
                f"{w}x{h} = {w * h / 1e6:.1f} megapixels is over the limit of {max_pixels / 1e6:.0f} megapixels",
            )
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(label, f"corrupt or truncated image data ({exc})") from None
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block: keep the pixels as stored
            pass
        return to_rgb(img)
    finally:
        img.close()


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any PIL mode: alpha composited on white, 16-bit scaled to 8-bit."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size else 1.0
        arr = (arr / (top if top > 255 else 255.0) * 255.0).clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / ((hi - lo) or 1.0) * 255.0).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_tensor(img: Image.Image) -> "torch.Tensor":  # noqa: F821 - torch imported lazily
    """Float tensor (3, H, W) in [0, 1], the input torchvision's detection models expect."""
    import torch  # lazily: `validate` and other light commands start without torch

    arr = np.asarray(to_rgb(img) if img.mode != "RGB" else img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes of an image (for downloads)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
