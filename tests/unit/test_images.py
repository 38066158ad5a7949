"""Safe decoding: bad files are refused with the file named, good ones come out RGB and upright."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detector.images import ImageError, load_image, read_image_size, to_tensor


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgb_png_roundtrip_and_tensor_range():
    img = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    out = load_image(_png(img), name="a.png")
    assert out.mode == "RGB" and out.size == (4, 4)
    assert np.array_equal(np.asarray(out), np.asarray(img))
    t = to_tensor(out)
    assert t.shape == (3, 4, 4) and float(t.max()) == pytest.approx(47 / 255)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA"])
def test_modes_become_rgb(mode):
    img = Image.new(mode, (5, 3))
    out = load_image(_png(img), name=f"m-{mode}.png")
    assert out.mode == "RGB" and out.size == (5, 3)


def test_transparent_pixels_composite_on_white():
    img = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    out = np.asarray(load_image(_png(img), name="t.png"))
    assert (out == 255).all()


def test_exif_orientation_rotates_and_size_reports_displayed_frame():
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _png(img, "JPEG", exif=exif.tobytes())
    assert read_image_size(data, "r.jpg") == (20, 40)
    assert load_image(data, "r.jpg").size == (20, 40)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "photo.png"),
    ],
)
def test_bad_bytes_refused_with_the_file_named(data, expected):
    with pytest.raises(ImageError) as err:
        load_image(data, name="photo.png")
    assert "photo.png" in str(err.value) and expected in str(err.value)


def test_truncated_jpeg_refused():
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    data = _png(Image.fromarray(noise), "JPEG")
    with pytest.raises(ImageError, match="cut.jpg: corrupt or truncated"):
        load_image(data[: len(data) // 2], name="cut.jpg")


def test_pixel_limit_checked_before_decoding():
    # a 6000x6000 PNG compresses to a few KB: the limit must refuse it from the header alone
    data = _png(Image.new("L", (6000, 6000)))
    assert len(data) < 200_000
    with pytest.raises(ImageError, match="over the limit"):
        load_image(data, name="bomb.png", max_pixels=10_000_000)


def test_extension_does_not_matter_content_does(tmp_path):
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(_png(Image.new("RGB", (3, 3))))
    assert load_image(path).size == (3, 3)
    fake = tmp_path / "fake.png"
    fake.write_text("<html>not an image</html>")
    with pytest.raises(ImageError, match="fake.png"):
        load_image(fake)
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.png")
