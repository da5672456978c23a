"""Share a face as a public code plus a key; decode it back with the key, at the fidelity the key grants.

    python -m sae.cli.share encode PHOTO --out DIR [--model DIR] [--k K] [--k-prime K2] [--passphrase P]
                                     [--scheme keyed|paper] [--no-permute] [--value-bits 8|16]
    python -m sae.cli.share decode DIR/public --key DIR/key [--fraction F] [--passphrase P] [--out FILE.png]
                                     [--scale S] [--model DIR]

`encode` writes DIR/public (safe to publish) and DIR/key (give it only to whom may see the face), with the keyed
scheme by default (`--scheme paper` publishes the values in the clear, as the paper did: see `sae.privacy.scheme`).
Decoys, secrets and the nonce come from OS entropy. Every failure a user can cause (wrong key,
damaged or truncated files, a file from another format version, a wrong passphrase, a photo that is
not an image) ends with one `sae: ...` line on stderr and exit status 2. The science lives in
`sae.privacy.scheme`; this module only reads and writes files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from PIL import Image

from sae.core.data import to_uint8
from sae.core.faces import PhotoError, crop_style_for, face_input, load_photo, locate_face
from sae.core.messages import one_line
from sae.core.model import SparseAutoencoder
from sae.privacy.codec import decode_share, share_codes
from sae.privacy.formats import CodeFormatError, Key, KeyMismatchError, PassphraseError, PublicCode
from sae.privacy.scheme import DEFAULT_K, DEFAULT_SCHEME, SCHEMES, default_k, k_prime_for
from sae.zoo.files import DataNote
from sae.zoo.hub import ModelLoadError, load_model

EXIT_USER_ERROR = 2
PUBLIC_NAME, KEY_NAME = "public", "key"
_USER_ERRORS = (CodeFormatError, KeyMismatchError, PassphraseError, PhotoError, ModelLoadError, OSError, ValueError)


class ShareError(ValueError):
    """A request that cannot be served; the message is one line for the user."""


def encode_photo(model: SparseAutoencoder, photo: str | Path, *, k: int | None = None, k_prime: int | None = None,
                 scheme: str = DEFAULT_SCHEME, style: str = "celeba", **overrides) -> tuple[PublicCode, Key, str]:  # fmt: skip
    """Photo -> (public code, key, what was cropped): a real share with the scheme's settings (`overrides`: permute,
    value_bits, signs); the face is found and framed like `style`'s dataset, as the app does."""
    k = default_k(model.k_max) if k is None else k
    if not 1 <= k <= model.k_max:
        raise ShareError(f"--k must be in [1, {model.k_max}] for this model, got {k}")
    k_prime = k_prime_for(k, model.code_dim) if k_prime is None else k_prime
    if not k <= k_prime <= model.code_dim:
        raise ShareError(f"--k-prime must be in [k={k}, {model.code_dim}], got {k_prime}")
    image = load_photo(photo)
    found = locate_face(image, style=style)
    with torch.inference_mode():
        codes = model.encode(face_input(image, found.box, size=model.image_size))
    return *share_codes(model, codes, k, k_prime, scheme, **overrides), found.message


def read_share(
    public_path: str | Path, key_path: str | Path, passphrase: str | None, shape: tuple[int, int] | None = None
) -> tuple[PublicCode, Key]:
    """Read and validate both files (for a model of `shape` (groups, code_dim), when given); the format checks and the
    fingerprint reject any mix-up or damage."""
    public = PublicCode.from_bytes(Path(public_path).read_bytes(), shape)
    key = Key.from_bytes(Path(key_path).read_bytes(), passphrase, shape)
    return public, key


def write_private(path: Path, data: bytes) -> None:
    """Write a key file readable by its owner only (mode 0600), whatever the umask."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600)


def passphrase_of(args: argparse.Namespace) -> str | None:
    """--passphrase-file's first line, else --passphrase (which other users can see in a process list)."""
    if getattr(args, "passphrase_file", None):
        return Path(args.passphrase_file).read_text(encoding="utf-8").splitlines()[0]
    return args.passphrase


def save_png(image: torch.Tensor, path: str | Path, scale: int = 1) -> None:
    """(3, H, W) floats in [0, 1] -> PNG, optionally upscaled (bicubic) for viewing."""
    pixels = to_uint8(image).permute(1, 2, 0).numpy()
    picture = Image.fromarray(pixels)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.BICUBIC)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")


def _model(source: str | None) -> tuple[SparseAutoencoder, str]:
    """The model given on the command line (the bundled default when None) and how it frames a face (its data note)."""
    loaded = load_model(source)
    return loaded.model.eval(), crop_style_for(DataNote.read(loaded.directory).dataset)


def command_encode(args: argparse.Namespace) -> None:
    """`encode`: photo -> DIR/public and DIR/key (0600), and one line on each."""
    model, style = _model(args.model)
    overrides = {
        name: value
        for name, value in (("permute", False if args.no_permute else None), ("value_bits", args.value_bits), ("signs", args.signs))
        if value is not None
    }
    public, key, cropped = encode_photo(model, args.photo, k=args.k, k_prime=args.k_prime, scheme=args.scheme, style=style, **overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    passphrase = passphrase_of(args)
    public_bytes, key_bytes = public.to_bytes(), key.to_bytes(passphrase)
    (out / PUBLIC_NAME).write_bytes(public_bytes)
    write_private(out / KEY_NAME, key_bytes)
    protected = ", passphrase-protected" if passphrase is not None else ""
    kind = "keyed" if public.keyed else "values in the clear"
    print(cropped)
    print(f"{out / PUBLIC_NAME}: {len(public_bytes)} bytes ({kind}, k'={public.k_prime} per group, {public.value_bits}-bit values)")
    print(f"{out / KEY_NAME}: {len(key_bytes)} bytes (k={key.k} per group{', secret permutation' if public.permuted else ''}{protected})")


def command_decode(args: argparse.Namespace) -> None:
    """`decode`: public + key -> the key holder's reconstruction as PNG(s)."""
    if not 0.0 < args.fraction <= 1.0:
        raise ShareError(f"--fraction must be in (0, 1], got {args.fraction}")
    if args.scale < 1:
        raise ShareError(f"--scale must be at least 1, got {args.scale}")
    model, _ = _model(args.model)
    public, key = read_share(args.public, args.key, passphrase_of(args), (model.num_groups, model.code_dim))
    images = decode_share(model, public, key, args.fraction)
    out = Path(args.out) if args.out else Path(args.public).with_name("reconstruction.png")
    if len(images) == 1:
        save_png(images[0], out, args.scale)
        print(f"{out}: {images.shape[-1] * args.scale}x{images.shape[-2] * args.scale} reconstruction (fraction {args.fraction:g})")
        return
    for index, image in enumerate(images):
        save_png(image, out.with_name(f"{out.stem}-{index}{out.suffix}"), args.scale)
    print(f"{len(images)} reconstructions written beside {out}")


def parser() -> argparse.ArgumentParser:
    """The command line: `encode` and `decode`."""
    formatter = argparse.RawDescriptionHelpFormatter
    main_parser = argparse.ArgumentParser(prog="python -m sae.cli.share", description=__doc__, formatter_class=formatter)
    commands = main_parser.add_subparsers(dest="command", required=True)
    encode = commands.add_parser("encode", help="photo -> DIR/public and DIR/key")
    encode.add_argument("photo", help="a face photo (the largest face is cropped the way the model's training faces are)")
    encode.add_argument("--out", required=True, help="folder for the public and key files")
    encode.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    encode.add_argument("--k", type=int, default=None, help=f"true non-zeros per group (default {DEFAULT_K}, capped at the model's k_max)")
    encode.add_argument("--k-prime", type=int, default=None, help="public non-zeros per group (default: see sae.privacy.scheme)")
    encode.add_argument("--passphrase", default=None, help="protect the key file (scrypt + AES-GCM); visible in process lists")
    encode.add_argument("--passphrase-file", default=None, help="read the passphrase from this file's first line instead")
    encode.add_argument("--no-permute", action="store_true", help="publish positions in the model's own coordinates (weaker)")
    encode.add_argument("--scheme", choices=sorted(SCHEMES), default=DEFAULT_SCHEME, help="keyed (default) or paper (values in the clear)")
    encode.add_argument("--value-bits", type=int, choices=(8, 16), default=None, help="stored value width (default 8)")
    encode.add_argument("--signs", choices=("balanced", "anchor"), default=None, help="how the paper scheme's decoys get their signs")
    encode.set_defaults(handler=command_encode)
    decode = commands.add_parser("decode", help="public + key -> reconstruction PNG")
    decode.add_argument("public", help="the public code file")
    decode.add_argument("--key", required=True, help="the key file")
    decode.add_argument("--fraction", type=float, default=1.0, help="use only this share of the true entries (the largest)")
    decode.add_argument("--passphrase", default=None, help="the key's passphrase, if it has one")
    decode.add_argument("--passphrase-file", default=None, help="read the passphrase from this file's first line instead")
    decode.add_argument("--out", default=None, help="PNG to write (default: reconstruction.png beside the public file)")
    decode.add_argument("--scale", type=int, default=1, help="upscale the result by this factor")
    decode.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    decode.set_defaults(handler=command_decode)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; a user error is one `sae: ...` line on stderr and exit status 2, never a traceback."""
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except _USER_ERRORS as error:
        print(f"sae: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
