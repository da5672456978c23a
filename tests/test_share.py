"""The share CLI (sae.cli.share): encode a photo to public + key files, decode with the key, refuse bad input cleanly.

Both schemes: keyed (the default: values padded with a stream cipher) and paper (values in the clear). A version 2
public code names the model that made it; another model refuses it. Version 1 files (the old format) still decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sae.cli.share import main
from sae.core.faces import face_input, load_photo, locate_face
from sae.core.fingerprint import model_id
from sae.core.metrics import psnr
from sae.core.model import SparseAutoencoder
from sae.privacy.formats import Key, PublicCode
from sae.privacy.scheme import UNNAMED_MODEL, reveal
from sae.zoo.files import DataNote
from tests.conftest import TINY

K = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    SparseAutoencoder(**TINY).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory) -> Path:
    """The same architecture with other weights: it could decode the codes, but it did not make them."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("other")
    SparseAutoencoder(**TINY).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(model_dir) -> SparseAutoencoder:
    return SparseAutoencoder.from_pretrained(model_dir).eval()


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


def read(share: Path, passphrase: str | None = None) -> tuple[PublicCode, Key]:
    return PublicCode.from_bytes((share / "public").read_bytes()), Key.from_bytes((share / "key").read_bytes(), passphrase)


def exact_reconstruction(model: SparseAutoencoder, photo: Path) -> torch.Tensor:
    """What the key holder sees when values are stored exactly (16-bit values in the clear: float16 codes)."""
    with torch.no_grad():
        return model.decode(model.sparsify(model.encode(face_input(load_photo(photo))), K).half().float())[0]


def test_the_face_is_framed_like_the_models_training_faces(tmp_path, model_dir, model, capsys):
    """The CLI crops a photo as the app does: the largest face, framed in the style of the model's data note."""
    photo = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"
    DataNote("utkface", "test", "test").write(model_dir)
    try:
        public, key = read(encode(tmp_path, model_dir, photo, "utk"))
    finally:
        (model_dir / "data.json").unlink()
    assert "Face found: cropped like a UTKFace photo" in capsys.readouterr().out
    image = load_photo(photo)
    with torch.no_grad():
        expected = model.sparsify(model.encode(face_input(image, locate_face(image, style="utkface").box)), K)
    assert torch.equal(reveal(public, key) != 0, expected != 0)  # the code of that crop, not of the centre square


def test_keyed_by_default_and_the_round_trip_shows_the_face(tmp_path, model_dir, model, photo, capsys):
    share = encode(tmp_path, model_dir, photo)
    printed = capsys.readouterr().out
    assert "No face found" in printed  # noise: the centre square, said so
    assert "public" in printed and "key" in printed and "bytes" in printed and "keyed" in printed
    public, key = read(share)
    assert public.keyed and key.keyed and public.version == key.version == 2
    assert public.permuted and public.k_prime == 32  # the defaults: every position filled, permuted
    assert public.value_bits == 8 and key.k == K
    assert public.model_id == model_id(model) != UNNAMED_MODEL  # the public code names its model
    out = tmp_path / "face.png"
    assert decode(share, model_dir, "--out", str(out)) == 0
    assert str(out) in capsys.readouterr().out
    # 8-bit levels per group: close to the exact reconstruction, not equal
    assert float(psnr(exact_reconstruction(model, photo), read_png(out))[0]) > 35


def test_paper_scheme_with_16_bit_values_reproduces_the_key_holders_reconstruction(tmp_path, model_dir, model, photo, capsys):
    share = encode(tmp_path, model_dir, photo, "share", "--scheme", "paper", "--value-bits", "16")
    assert "values in the clear" in capsys.readouterr().out
    public, key = read(share)
    assert not public.keyed and not key.keyed and public.permuted and public.value_bits == 16 and public.k_prime == 32
    assert public.model_id == model_id(model)
    out = tmp_path / "face.png"
    assert decode(share, model_dir, "--out", str(out)) == 0
    assert (read_png(out) - exact_reconstruction(model, photo)).abs().max() <= 1.5 / 255


@pytest.mark.parametrize("scheme", ["keyed", "paper"])
def test_fraction_passphrase_scale_and_options(tmp_path, model_dir, photo, capsys, scheme):
    share = encode(
        tmp_path, model_dir, photo, "share", "--scheme", scheme, "--passphrase", "open sesame", "--no-permute", "--value-bits", "8",
        "--k-prime", "8",
    )  # fmt: skip
    public, key = read(share, "open sesame")
    assert not public.permuted and public.value_bits == 8 and public.k_prime == 8 and public.keyed == (scheme == "keyed")
    assert "passphrase-protected" in capsys.readouterr().out
    out = tmp_path / "half.png"
    assert decode(share, model_dir, "--passphrase", "open sesame", "--fraction", "0.5", "--scale", "2", "--out", str(out)) == 0
    with Image.open(out) as image:
        assert image.size == (128, 128)
    assert decode(share, model_dir, "--passphrase", "open sesame") == 0  # default output: beside the public file
    assert (share / "reconstruction.png").is_file()


def test_a_lower_fraction_shows_less(tmp_path, model_dir, model, photo):
    share = encode(tmp_path, model_dir, photo, "share", "--scheme", "paper", "--value-bits", "16")
    full, quarter = tmp_path / "full.png", tmp_path / "quarter.png"
    assert decode(share, model_dir, "--out", str(full)) == 0 and decode(share, model_dir, "--fraction", "0.25", "--out", str(quarter)) == 0
    with torch.no_grad():
        one = model.decode(model.sparsify(model.encode(face_input(load_photo(photo))), 1).half().float())[0]
    assert (read_png(quarter) - one).abs().max() <= 1.5 / 255  # a quarter of k = 4: the largest entry of each group
    assert not torch.equal(read_png(full), read_png(quarter))


def test_the_signs_option_is_for_the_paper_scheme(tmp_path, model_dir, photo):
    share = encode(tmp_path, model_dir, photo, "share", "--scheme", "paper", "--signs", "anchor")
    assert decode(share, model_dir) == 0


@pytest.mark.parametrize("scheme", ["keyed", "paper"])
def test_a_code_made_by_another_model_is_refused(tmp_path, model_dir, other_model_dir, photo, capsys, scheme):
    share = encode(tmp_path, model_dir, photo, "share", "--scheme", scheme)
    capsys.readouterr()
    message = assert_one_line_error(decode(share, other_model_dir), capsys)
    assert "another model" in message and model_id(SparseAutoencoder.from_pretrained(model_dir)).hex() in message
    assert not (share / "reconstruction.png").exists()
    assert decode(share, model_dir) == 0  # the model that made it decodes it


def test_version_1_files_still_decode(tmp_path, model_dir, other_model_dir, model, photo, capsys):
    """A version 1 share (values in the clear, no model named), as the old code wrote it, decodes as before; it names
    no model, so any model of its shape is allowed to decode it."""
    share = encode(tmp_path, model_dir, photo, "share", "--scheme", "paper", "--value-bits", "16")
    public, key = read(share)
    old_public = PublicCode(public.positions, public.values, public.code_dim, 16, None, public.permuted, model_id=b"", version=1)
    old_key = Key(key.true_mask, key.code_dim, old_public.fingerprint(), key.secret, version=1)
    old = tmp_path / "v1"
    old.mkdir()
    (old / "public").write_bytes(old_public.to_bytes())
    (old / "key").write_bytes(old_key.to_bytes(passphrase="old"))
    assert (old / "public").read_bytes()[4] == 1 and (old / "key").read_bytes()[4] == 1  # the version byte
    assert decode(old, model_dir, "--passphrase", "old", "--out", str(tmp_path / "v1.png")) == 0
    assert (read_png(tmp_path / "v1.png") - exact_reconstruction(model, photo)).abs().max() <= 1.5 / 255
    assert decode(old, other_model_dir, "--passphrase", "old", "--out", str(tmp_path / "other.png")) == 0
    capsys.readouterr()
    assert "passphrase" in assert_one_line_error(decode(old, model_dir), capsys)


@pytest.mark.parametrize("passphrase", [None, "wrong"])
def test_missing_or_wrong_passphrase(tmp_path, model_dir, photo, capsys, passphrase):
    share = encode(tmp_path, model_dir, photo, "share", "--passphrase", "right")
    capsys.readouterr()
    extra = [] if passphrase is None else ["--passphrase", passphrase]
    assert "passphrase" in assert_one_line_error(decode(share, model_dir, *extra), capsys)
    assert not (share / "reconstruction.png").exists()


@pytest.mark.parametrize("scheme", ["keyed", "paper"])
def test_a_key_for_another_share_is_refused(tmp_path, model_dir, photo, capsys, scheme):
    first, second = encode(tmp_path, model_dir, photo, "a", "--scheme", scheme), encode(tmp_path, model_dir, photo, "b", "--scheme", scheme)
    capsys.readouterr()
    assert "key" in assert_one_line_error(decode(first, model_dir, key=second / "key"), capsys)


def test_a_key_of_the_other_scheme_is_refused(tmp_path, model_dir, photo, capsys):
    keyed = encode(tmp_path, model_dir, photo, "keyed")
    paper = encode(tmp_path, model_dir, photo, "paper", "--scheme", "paper")
    capsys.readouterr()
    assert_one_line_error(decode(keyed, model_dir, key=paper / "key"), capsys)
    assert_one_line_error(decode(paper, model_dir, key=keyed / "key"), capsys)


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


@pytest.mark.parametrize("scheme", ["keyed", "paper"])
@pytest.mark.parametrize("which", ["public", "key"])
@pytest.mark.parametrize("how", ["truncate", "tamper", "version", "empty"])
def test_damaged_files_are_refused(tmp_path, model_dir, photo, capsys, which, how, scheme):
    share = encode(tmp_path, model_dir, photo, "share", "--scheme", scheme)
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
    assert "no such file" in assert_one_line_error(decode(tmp_path / "nowhere", model_dir), capsys)


def test_bad_options_and_a_model_that_does_not_fit(tmp_path, model_dir, photo, capsys):
    assert "--k must be in [1, 16]" in assert_one_line_error(
        main(["encode", str(photo), "--out", str(tmp_path / "s"), "--model", str(model_dir), "--k", "99"]), capsys
    )
    assert "--k-prime must be in [k=4, 32]" in assert_one_line_error(
        main(["encode", str(photo), "--out", str(tmp_path / "s"), "--model", str(model_dir), "--k", "4", "--k-prime", "3"]), capsys
    )
    share = encode(tmp_path, model_dir, photo)
    capsys.readouterr()
    assert "--fraction" in assert_one_line_error(decode(share, model_dir, "--fraction", "1.5"), capsys)
    assert "--fraction" in assert_one_line_error(decode(share, model_dir, "--fraction", "0"), capsys)
    assert "--scale" in assert_one_line_error(decode(share, model_dir, "--scale", "0"), capsys)
    other = tmp_path / "other-model"
    SparseAutoencoder(**(TINY | {"num_groups": 2})).save_pretrained(other)
    assert "model" in assert_one_line_error(decode(share, other), capsys)
    assert_one_line_error(decode(share, tmp_path / "no-model"), capsys)


def test_an_unknown_scheme_is_an_argument_error(tmp_path, model_dir, photo, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", str(photo), "--out", str(tmp_path / "s"), "--model", str(model_dir), "--scheme", "rot13"])
    assert exit_info.value.code == 2 and "invalid choice: 'rot13'" in capsys.readouterr().err


def test_the_key_file_is_private_and_a_passphrase_can_come_from_a_file(tmp_path, model_dir, photo, capsys):
    secret = tmp_path / "passphrase.txt"
    secret.write_text("from a file\nignored second line\n")
    share = encode(tmp_path, model_dir, photo, "private", "--passphrase-file", str(secret))
    assert (share / "key").stat().st_mode & 0o777 == 0o600 and "passphrase-protected" in capsys.readouterr().out
    assert decode(share, model_dir, "--passphrase-file", str(secret), "--out", str(tmp_path / "f.png")) == 0
    assert decode(share, model_dir, "--passphrase", "from a file", "--out", str(tmp_path / "g.png")) == 0
