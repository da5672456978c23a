"""Photos to model inputs (sae.core.faces): any mode, orientation and size; face detection and each dataset's crop."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sae.core.faces import (
    CROP_STYLES,
    DECODE_SIDE,
    MIN_FACE,
    PhotoError,
    centre_square,
    detect_faces,
    face_box,
    face_input,
    load_photo,
    locate_face,
)
from sae.core.metrics import psnr
from sae.core.presets import PRESETS

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def _png(image: Image.Image, **kwargs) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format=kwargs.pop("format", "PNG"), **kwargs)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"])
def test_any_mode_becomes_rgb(mode):
    image = Image.new(mode, (40, 30))
    assert load_photo(image).mode == "RGB"


def test_sixteen_bit_png_keeps_its_brightness(tmp_path):
    array = np.full((32, 32), 65535, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    assert np.asarray(load_photo(path)).min() == 255


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(path)
    assert np.asarray(load_photo(path)).mean() > 250


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_photo(path).size == (20, 40)


def _floats(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def _phone_photo(size: tuple[int, int]) -> Image.Image:
    return Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize(size, Image.Resampling.BICUBIC)


@pytest.mark.parametrize(
    ("size", "decoded"),
    [((4032, 3024), (2016, 1512)), ((2 * DECODE_SIDE, 2 * DECODE_SIDE), (DECODE_SIDE, DECODE_SIDE)), ((2 * DECODE_SIDE - 1, 3000), None)],
)
def test_a_large_jpeg_is_decoded_at_a_reduced_scale_with_the_same_content(size, decoded):
    """libjpeg's scaled decoding (a power of two) keeps DECODE_SIDE pixels a side; what it decodes is the full decode
    scaled down, to within JPEG's own rounding."""
    jpeg = _png(_phone_photo(size), format="JPEG", quality=92).getvalue()
    photo = load_photo(io.BytesIO(jpeg))
    assert photo.size == (decoded or size)
    if decoded:
        full = Image.open(io.BytesIO(jpeg)).convert("RGB").resize(decoded, Image.Resampling.BOX)
        assert psnr(_floats(full), _floats(photo))[0] > 40


def test_a_large_png_is_decoded_whole():
    """Only JPEG decodes at a reduced scale; other formats are decoded as they are."""
    assert load_photo(_png(_phone_photo((2 * DECODE_SIDE, 2 * DECODE_SIDE)))).size == (2 * DECODE_SIDE, 2 * DECODE_SIDE)


def test_a_rotated_phone_photo_is_upright_after_the_reduced_decode():
    """A portrait stored on its side (4032x3024, EXIF orientation 6) comes back upright at half size."""
    upright = _phone_photo((3024, 4032))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = load_photo(_png(upright.transpose(Image.Transpose.ROTATE_90), format="JPEG", quality=92, exif=exif))
    assert photo.size == (1512, 2016)
    assert psnr(_floats(upright.resize(photo.size, Image.Resampling.BOX)), _floats(photo))[0] > 40


def test_the_reduced_decode_keeps_the_smallest_face_as_large_as_every_models_input():
    """The smallest face detection looks for in a photo decoded at DECODE_SIDE, framed the tightest way, covers at least
    the largest preset's input: a phone photo's face is never upscaled to fill the model's input."""
    largest = max(values["image_size"] for values in PRESETS.values())
    assert MIN_FACE * DECODE_SIDE * min(style.scale for style in CROP_STYLES.values()) >= largest


def test_a_weak_detection_larger_than_the_face_is_dropped():
    """The astronaut's 3:4 centre at phone size makes the cascade report a false detection beside her face, larger than
    it, with a handful of neighbours: without WEAKEST_FACE the largest-first rule would crop the background."""
    astronaut = Image.open(EXAMPLES / "astronaut.png").convert("RGB")
    portrait = astronaut.crop((64, 0, 448, 512)).resize((1512, 2016), Image.Resampling.BICUBIC)
    (face,) = detect_faces(astronaut.crop((64, 0, 448, 512)))
    (found,) = detect_faces(portrait)
    scale = 1512 / 384
    assert all(abs(a - b * scale) <= 0.1 * found[2] for a, b in zip(found, face, strict=True))


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    assert np.asarray(load_photo(image)).min() == 255


@pytest.mark.parametrize(
    "payload, message",
    [
        (io.BytesIO(b"this is not an image"), "not a readable image"),
        (io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "not a readable image"),
    ],
)
def test_bad_files_get_a_clear_message(payload, message):
    with pytest.raises(PhotoError, match=message):
        load_photo(payload)


def test_tiny_image_is_refused():
    with pytest.raises(PhotoError, match="at least"):
        load_photo(Image.new("RGB", (1, 1)))


def test_decompression_bomb_is_refused_before_decoding():
    header_only = _png(Image.new("1", (12000, 12000)))
    with pytest.raises(PhotoError, match="megapixels"):
        load_photo(header_only)


def test_face_input_shape():
    x = face_input(Image.new("RGB", (300, 200), (10, 20, 30)))
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    assert centre_square((300, 200)) == (50, 0, 250, 200)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_face_input_at_the_models_size(size):
    photo = Image.new("RGB", (300, 200), (10, 20, 30))
    x = face_input(photo, size=size)
    assert x.shape == (1, 3, size, size) and x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([10, 20, 30]) / 255)
    boxed = face_input(Image.new("RGB", (300, 200), (200, 0, 0)), (0, 0, 100, 100), size)
    assert boxed.shape == (1, 3, size, size)


def test_numpy_input():
    assert load_photo(np.zeros((20, 20, 3), dtype=np.float32)).size == (20, 20)


def test_astronaut_is_found_and_cropped_like_celeba():
    photo = load_photo(EXAMPLES / "astronaut.png")
    crop = locate_face(photo)
    left, top, right, bottom = crop.box
    assert crop.found and "Face found: cropped like a CelebA photo" in crop.message
    assert right - left == bottom - top and 140 <= right - left <= 180  # forehead to chin, not the whole 512 image
    assert 130 <= left <= 160 and 10 <= top <= 40  # about where the hand-made astronaut_face.png crop is


def test_no_face_falls_back_to_centre_with_a_message():
    crop = locate_face(Image.new("RGB", (300, 200), (120, 120, 120)))
    assert not crop.found and "No face found" in crop.message and crop.box == centre_square((300, 200))


def test_whole_image_toggle_skips_detection(monkeypatch):
    from sae.core import faces

    monkeypatch.setattr(faces, "detect_faces", lambda photo: pytest.fail("detection ran"))
    crop = faces.locate_face(load_photo(EXAMPLES / "astronaut.png"), whole_image=True)
    assert crop.box == (0, 0, 512, 512) and "whole image" in crop.message


def test_celeba_box_stays_inside_the_photo():
    assert face_box((0, 0, 100, 100), (120, 400)) == (0, 0, 120, 120)
    left, top, right, bottom = face_box((900, 10, 80, 80), (1000, 1000))
    assert right <= 1000 and top == 0 and right - left == bottom - top


def test_crop_styles_of_both_datasets():
    """CelebA's square is wider than the detection and centred above it; UTKFace's is tighter and a little lower."""
    assert set(CROP_STYLES) == {"celeba", "utkface"}
    celeba, utkface = CROP_STYLES["celeba"], CROP_STYLES["utkface"]
    assert celeba.scale > utkface.scale > 1 and celeba.shift < 0 < utkface.shift
    detection, size = (400, 400, 200, 200), (1000, 1000)
    assert face_box(detection, size) == face_box(detection, size, "celeba") == (330, 302, 670, 642)  # side 340, up 28
    assert face_box(detection, size, "utkface") == (381, 393, 619, 631)  # side 238, down 12
    with pytest.raises(KeyError):
        face_box(detection, size, "imagenet")


@pytest.mark.parametrize("style", sorted(CROP_STYLES))
@pytest.mark.parametrize(
    "detection, size",
    [
        ((0, 0, 100, 100), (120, 400)),  # a face filling a narrow photo
        ((900, 10, 80, 80), (1000, 1000)),  # top right corner
        ((0, 900, 100, 100), (1000, 1000)),  # bottom left corner
        ((5, 5, 300, 200), (310, 210)),  # the detection nearly the whole photo
        ((40, 60, 20, 20), (100, 80)),  # a small face in a landscape photo
        ((0, 0, 640, 640), (640, 480)),  # a detection larger than the photo's short side
    ],
)
def test_face_box_is_a_square_inside_the_photo_for_both_styles(style, detection, size):
    left, top, right, bottom = face_box(detection, size, style)
    assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
    side = right - left
    assert bottom - top == side == min(round(CROP_STYLES[style].scale * max(detection[2:])), *size)


def test_locate_face_with_detections_made_once(monkeypatch):
    """Detections passed in are used as they are (no second detection), and each style frames them its own way."""
    from sae.core import faces

    monkeypatch.setattr(faces, "detect_faces", lambda photo: pytest.fail("detection ran"))
    photo = Image.new("RGB", (1000, 800))
    found = [(400, 300, 200, 200), (50, 50, 60, 60)]
    for style, name in (("celeba", "a CelebA"), ("utkface", "a UTKFace")):
        crop = locate_face(photo, style=style, faces=found)
        assert crop.found and crop.box == face_box(found[0], photo.size, style)
        assert crop.message == f"Face found: cropped like {name} photo (1 other face ignored)."
    assert "(2 other faces ignored)" in locate_face(photo, faces=[*found, (0, 0, 30, 30)]).message
    alone = locate_face(photo, faces=found[:1])
    assert alone.message == "Face found: cropped like a CelebA photo." and alone.box == face_box(found[0], photo.size)
    none = locate_face(photo, style="utkface", faces=[])
    assert not none.found and none.box == centre_square(photo.size) and "No face found" in none.message


def _detected(photo: Image.Image) -> list:
    from sae.core.faces import detect_faces

    found = detect_faces(photo)
    assert found and all(len(box) == 4 for box in found)
    return found


def test_astronaut_in_the_utkface_style_is_a_tighter_crop_of_the_same_face():
    photo = load_photo(EXAMPLES / "astronaut.png")
    detections = _detected(photo)
    celeba, utkface = locate_face(photo, faces=detections), locate_face(photo, style="utkface", faces=detections)
    assert utkface.found and "UTKFace" in utkface.message
    assert utkface.box[2] - utkface.box[0] < celeba.box[2] - celeba.box[0]
    assert celeba.box[0] <= utkface.box[0] and utkface.box[2] <= celeba.box[2]  # both centred on the same face
    assert utkface.box[1] > celeba.box[1]  # CelebA's crop reaches higher (above the detection), UTKFace's a little lower
    assert face_input(photo, utkface.box, 128).shape == (1, 3, 128, 128)


def test_bomb_file_is_refused_without_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)  # a few kB on disk, 144 megapixels decoded
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the bomb was decoded"))
    with pytest.raises(PhotoError, match="megapixels"):
        load_photo(path)


def test_face_detection_in_concurrent_threads():
    """The app detects faces in several worker threads at once: a shared OpenCV cascade crashed (segfault or
    "vector::_M_range_check") on photos of different sizes, and importing cv2 from two threads at once left one without
    `cv2.data`. In a child process, so that a crash is a failure rather than the end of the test run."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = """
import threading
from PIL import Image
from sae.core.faces import detect_faces
base = Image.open("assets/examples/astronaut.png").convert("RGB")
photos = [base.resize((side, side)) for side in (256, 300, 350, 400, 512)]
found = []
def work(offset):  # the first calls import OpenCV and load the cascade in four threads at once
    for step in range(20):
        index = (offset + step) % len(photos)
        found.append((index, detect_faces(photos[index])))
threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for thread in threads: thread.start()
for thread in threads: thread.join()
expected = [detect_faces(photo) for photo in photos]
assert len(found) == 80 and all(boxes == expected[index] for index, boxes in found), found
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
