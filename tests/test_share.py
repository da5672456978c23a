"""The share CLI (sae.cli.share): encode a photo to public + key files, decode with the key, refuse bad input cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sae.cli.share import main
from sae.core.faces import face_input, load_photo
from sae.core.model import SparseAutoencoder
from sae.privacy.scheme import PublicCode
from tests.conftest import TINY

torch.set_num_threads(1)

K = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    SparseAutoencoder(**TINY).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "face.jpg"
    pixels = (np.random.default_rng(0).random((109, 89, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def encode(tmp_path: Path, model_dir: Path, photo: Path, name: str = "share", *extra: str) -> Path:
    out = tmp_path / name
    assert main(["encode", str(photo), "--out", str(out), "--model", str(model_dir), "--k", str(K), *extra]) == 0
    return out


def decode(share: Path, model_dir: Path, *extra: str, key: Path | None = None) -> int:
    return main(["decode", str(share / "public"), "--key", str(key or share / "key"), "--model", str(model_dir), *extra])


def assert_one_line_error(code: int, capsys) -> str:
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sae: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def read_png(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


def test_round_trip_reproduces_the_key_holders_reconstruction(tmp_path, model_dir, photo, capsys):
    share = encode(tmp_path, model_dir, photo)
    printed = capsys.readouterr().out
    assert "public" in printed and "key" in printed and "bytes" in printed
    public = PublicCode.from_bytes((share / "public").read_bytes())
    assert public.permuted and public.k_prime == 32  # the defaults: every position filled, permuted
    out = tmp_path / "face.png"
    assert decode(share, model_dir, "--out", str(out)) == 0
    model = SparseAutoencoder.from_pretrained(model_dir).eval()
    with torch.no_grad():
        expected = model.decode(model.sparsify(model.encode(face_input(load_photo(photo))), K).half().float())[0]
    assert (read_png(out) - expected).abs().max() <= 1.5 / 255


def test_fraction_passphrase_scale_and_options(tmp_path, model_dir, photo, capsys):
    share = encode(
        tmp_path, model_dir, photo, "share", "--passphrase", "open sesame", "--no-permute", "--value-bits", "8", "--k-prime", "8"
    )
    public = PublicCode.from_bytes((share / "public").read_bytes())
    assert not public.permuted and public.value_bits == 8 and public.k_prime == 8
    out = tmp_path / "half.png"
    assert decode(share, model_dir, "--passphrase", "open sesame", "--fraction", "0.5", "--scale", "2", "--out", str(out)) == 0
    with Image.open(out) as image:
        assert image.size == (128, 128)


@pytest.mark.parametrize("passphrase", [None, "wrong"])
def test_missing_or_wrong_passphrase(tmp_path, model_dir, photo, capsys, passphrase):
    share = encode(tmp_path, model_dir, photo, "share", "--passphrase", "right")
    capsys.readouterr()
    extra = [] if passphrase is None else ["--passphrase", passphrase]
    assert "passphrase" in assert_one_line_error(decode(share, model_dir, *extra), capsys)
    assert not (share / "reconstruction.png").exists()


def test_a_key_for_another_share_is_refused(tmp_path, model_dir, photo, capsys):
    first, second = encode(tmp_path, model_dir, photo, "a"), encode(tmp_path, model_dir, photo, "b")
    capsys.readouterr()
    assert "key" in assert_one_line_error(decode(first, model_dir, key=second / "key"), capsys)


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "tamper":
        data[len(data) // 2] ^= 0x10
    elif how == "version":
        data[4] = 99
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["public", "key"])
@pytest.mark.parametrize("how", ["truncate", "tamper", "version", "empty"])
def test_damaged_files_are_refused(tmp_path, model_dir, photo, capsys, which, how):
    share = encode(tmp_path, model_dir, photo)
    capsys.readouterr()
    damage(share / which, how)
    message = assert_one_line_error(decode(share, model_dir), capsys)
    if how == "version":
        assert "version" in message
    assert not (share / "reconstruction.png").exists()


def test_a_protected_key_with_a_tampered_body_is_refused(tmp_path, model_dir, photo, capsys):
    share = encode(tmp_path, model_dir, photo, "share", "--passphrase", "p")
    capsys.readouterr()
    damage(share / "key", "tamper")
    assert_one_line_error(decode(share, model_dir, "--passphrase", "p"), capsys)


def test_a_non_image_photo_and_missing_files(tmp_path, model_dir, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    assert "image" in assert_one_line_error(main(["encode", str(text), "--out", str(tmp_path / "s"), "--model", str(model_dir)]), capsys)
    missing = main(["encode", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "s"), "--model", str(model_dir)])
    assert_one_line_error(missing, capsys)
    assert_one_line_error(decode(tmp_path / "nowhere", model_dir), capsys)


def test_bad_options_and_a_model_that_does_not_fit(tmp_path, model_dir, photo, capsys):
    assert_one_line_error(main(["encode", str(photo), "--out", str(tmp_path / "s"), "--model", str(model_dir), "--k", "99"]), capsys)
    share = encode(tmp_path, model_dir, photo)
    capsys.readouterr()
    assert_one_line_error(decode(share, model_dir, "--fraction", "1.5"), capsys)
    other = tmp_path / "other-model"
    SparseAutoencoder(**(TINY | {"num_groups": 2})).save_pretrained(other)
    assert "model" in assert_one_line_error(decode(share, other), capsys)
    assert_one_line_error(decode(share, tmp_path / "no-model"), capsys)
