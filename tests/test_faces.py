from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from sae.core.faces import PhotoError, centre_square, face_input, load_photo


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


def test_numpy_input():
    assert load_photo(np.zeros((20, 20, 3), dtype=np.float32)).size == (20, 20)


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "examples"


def test_astronaut_is_found_and_cropped_like_celeba():
    from sae.core.faces import locate_face

    photo = load_photo(EXAMPLES / "astronaut.png")
    crop = locate_face(photo)
    left, top, right, bottom = crop.box
    assert crop.found and "Face found" in crop.message
    assert right - left == bottom - top and 140 <= right - left <= 180  # forehead to chin, not the whole 512 image
    assert 130 <= left <= 160 and 10 <= top <= 40  # about where the hand-made astronaut_face.png crop is


def test_no_face_falls_back_to_centre_with_a_message():
    from sae.core.faces import locate_face

    crop = locate_face(Image.new("RGB", (300, 200), (120, 120, 120)))
    assert not crop.found and "No face found" in crop.message and crop.box == centre_square((300, 200))


def test_whole_image_toggle_skips_detection(monkeypatch):
    from sae.core import faces

    monkeypatch.setattr(faces, "detect_faces", lambda photo: pytest.fail("detection ran"))
    crop = faces.locate_face(load_photo(EXAMPLES / "astronaut.png"), whole_image=True)
    assert crop.box == (0, 0, 512, 512) and "whole image" in crop.message


def test_celeba_box_stays_inside_the_photo():
    from sae.core.faces import celeba_box

    assert celeba_box((0, 0, 100, 100), (120, 400)) == (0, 0, 120, 120)
    left, top, right, bottom = celeba_box((900, 10, 80, 80), (1000, 1000))
    assert right <= 1000 and top == 0 and right - left == bottom - top


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
