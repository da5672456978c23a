"""The learned attack, fitted once on training faces and shipped beside the model so the app can show it.

A visitor's clone has no CelebA to fit it on, so it is fitted here, once per model:

    python -m sae.zoo.shipped --model assets/model --data ../shared/data/celeba10k

encodes training faces, fits two small scorers (one on plain public codes, one on permuted ones; k and k' drawn per
batch over the app's range, so one scorer serves every slider position) and writes `learned_attack.safetensors` beside
the model in float16 (about 1 MB), stamped with the sha256 of the model's weights: a retrained model never pairs with a
stale scorer (the app then hides the option and says why).

The README's privacy table comes from `sae.cli.privacy_eval`, which fits a wider scorer for each setting; this is a smaller,
general instance of the same attack (`sae.privacy.attacks.LearnedAttack`), for showing rather than measuring.

The same command fits the ridge-regression attack (`sae.privacy.attacks.fit_regression_attack`, as in the table) for the
setting the app shows by default (k = 32, k' = code size, permuted, balanced signs, 8-bit values) and writes
`regression_attack.safetensors` beside the model: its fitted dual form (training features and one coefficient per
face and pixel, 0.36 GB) is compressed to the top `--rank` (128) principal axes of the attacker's training pixels
(`RegressionAttack.compact`), about 4.5 MB in float16, stamped with the same sha256. Its features depend on k', and
it was fitted at one k and scheme, so the app offers it only at that setting and says so elsewhere.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from sae.core.model import SparseAutoencoder, topk_by_magnitude
from sae.privacy import scheme as privacy
from sae.privacy.attacks import CompactRegression, LearnedAttack, RegressionAttack, fit_regression_attack, keep_by_score, support_recovery

FILENAME = "learned_attack.safetensors"
FORMAT = "1"
HIDDEN = 16  # context width: 2 scorers x ~250k weights in float16 stay near 1 MB (the budget for bundled artifacts is 2 MB)
SCHEMES = {"plain": False, "permuted": True}
REGRESSION_FILENAME = "regression_attack.safetensors"
REGRESSION_FORMAT = "1"
RANK = 128  # principal pixel axes kept: 2 x float16 matrices of (5120 + 12288) x 128 for the bundled model, about 4.5 MB
FIT_COMMAND = "python -m sae.zoo.shipped --model DIR --data ../shared/data/celeba10k"


def weights_digest(directory: Path) -> str:
    """sha256 of the model's weights file: what a bundled scorer was fitted for."""
    path = Path(directory) / "model.safetensors"
    stat = path.stat()
    return _file_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """Hashed once per file version: both bundled attacks check the same weights at start-up."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _draw_scheme(k_max: int, code_dim: int, generator: torch.Generator) -> tuple[int, int]:
    """A (k, k') the app can show: k log-uniform in [1, k_max]; k' every position half the time, else 1.5-8 k."""
    k = min(k_max, max(1, round(math.exp(float(torch.rand((), generator=generator)) * math.log(k_max)))))
    if float(torch.rand((), generator=generator)) < 0.5:
        return k, code_dim
    ratio = 1.5 + 6.5 * float(torch.rand((), generator=generator))
    return k, min(code_dim, max(k + 1, round(ratio * k)))


def fit_scorer(
    codes: torch.Tensor,
    k_max: int,
    permute: bool,
    steps: int,
    generator: torch.Generator,
    *,
    batch_size: int = 64,
    hidden: int = HIDDEN,
    lr: float = 2e-3,
    log: Callable[[int, float], None] | None = None,
) -> LearnedAttack:
    """Fit one scorer on dense training codes (N, L, m): each step sparsifies a batch at a drawn k and ambiguates it
    at a drawn k' with the app's scheme (balanced signs, 8-bit values, permuted or not)."""
    count, groups, code_dim = codes.shape
    typical = topk_by_magnitude(codes[: min(count, 512)], min(privacy.DEFAULT_K, k_max))
    scale = float(typical.abs()[typical != 0].median())
    attacker = LearnedAttack(groups, code_dim, hidden, scale, generator)
    optimizer = torch.optim.Adam(attacker.parameters(), lr=lr)
    attacker.train()
    for step in range(steps):
        k, k_prime = _draw_scheme(k_max, code_dim, generator)
        batch = topk_by_magnitude(codes[torch.randint(count, (batch_size,), generator=generator)], k)
        public, key = privacy.ambiguate(
            batch, k_prime, generator, k=k, permute=permute, signs=privacy.DEFAULT_SIGNS, value_bits=privacy.DEFAULT_VALUE_BITS
        )
        loss = F.binary_cross_entropy_with_logits(attacker(public), key.true_mask.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None:
            log(step, loss.item())
    return attacker.eval()


@dataclass(frozen=True)
class LearnedScorers:
    """The bundled scorers, one per scheme, and what they were fitted on (the safetensors metadata)."""

    plain: LearnedAttack
    permuted: LearnedAttack
    info: dict[str, str]

    def for_scheme(self, permuted: bool) -> LearnedAttack:
        return self.permuted if permuted else self.plain


def save(scorers: dict[str, LearnedAttack], path: Path, model_digest: str, info: dict[str, str] | None = None) -> None:
    """Write both scorers in float16 with the model's digest; written to a temporary name and renamed (never half a file)."""
    first = scorers["plain"]
    tensors = {
        f"{name}.{key}": value.detach().half().contiguous()
        for name, scorer in scorers.items()
        for key, value in scorer.state_dict().items()
    }
    metadata = {
        "format": FORMAT,
        "model_sha256": model_digest,
        "num_groups": str(first.num_groups),
        "code_dim": str(first.code_dim),
        "hidden": str(first.context[0].out_features),
    } | (info or {})
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, partial, metadata=metadata)
    os.replace(partial, path)


def _read(directory: Path | None, filename: str, version: str) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(float32 tensors, metadata, "") of a bundled file fitted for the weights beside it, else ({}, {}, the reason)."""
    path = None if directory is None else Path(directory) / filename
    if path is None or not path.is_file():
        return {}, {}, f"no {filename} beside the model (fit it with `{FIT_COMMAND}`)"
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name).float() for name in file.keys()}
    except (SafetensorError, OSError) as error:
        return {}, {}, f"{filename} is unreadable ({str(error).splitlines()[0] if str(error) else error.__class__.__name__})"
    if metadata.get("format") != version:
        return {}, {}, f"{filename} has format {metadata.get('format')!r}, expected {version!r}; refit it with `{FIT_COMMAND}`"
    if not (Path(directory) / "model.safetensors").is_file():
        return {}, {}, f"no model.safetensors beside {filename} to check it against"
    if metadata.get("model_sha256") != weights_digest(Path(directory)):
        return {}, {}, f"{filename} was fitted for other model weights; refit it with `{FIT_COMMAND}`"
    return tensors, metadata, ""


def load(directory: Path | None, model: SparseAutoencoder) -> tuple[LearnedScorers | None, str]:
    """(scorers, "") when a scorer file fitted for exactly this model sits in `directory`, else (None, the reason in one line)."""
    tensors, metadata, reason = _read(directory, FILENAME, FORMAT)
    if reason:
        return None, reason
    try:
        num_groups, code_dim, hidden = (int(metadata[key]) for key in ("num_groups", "code_dim", "hidden"))
    except (KeyError, ValueError) as error:  # a hand-edited or foreign file: say so, never a traceback at the app's start
        what = f"no {error.args[0]!r} entry" if isinstance(error, KeyError) else _one_line(error)
        return None, f"{FILENAME} has malformed metadata ({what}); refit it with `{FIT_COMMAND}`"
    if (num_groups, code_dim) != (model.num_groups, model.code_dim):
        return None, f"{FILENAME} is for another code shape"
    if hidden < 1:
        return None, f"{FILENAME} has malformed metadata (hidden = {hidden}); refit it with `{FIT_COMMAND}`"
    scorers = {}
    for name in SCHEMES:
        scorer = LearnedAttack(model.num_groups, model.code_dim, hidden)
        state = {key.removeprefix(f"{name}."): value for key, value in tensors.items() if key.startswith(f"{name}.")}
        try:
            scorer.load_state_dict(state, strict=True)
        except RuntimeError as error:
            return None, f"{FILENAME} does not match the scorer's layout ({str(error).splitlines()[0]})"
        scorers[name] = scorer.eval()
    return LearnedScorers(scorers["plain"], scorers["permuted"], metadata), ""


@dataclass(frozen=True)
class BundledRegression:
    """The compact regression attack and the one setting it was fitted for (its features depend on k')."""

    attack: CompactRegression
    k: int
    k_prime: int
    permute: bool
    signs: str
    value_bits: int
    info: dict[str, str]

    def mismatch(self, k: int, k_prime: int, permute: bool, signs: str, value_bits: int) -> str:
        """ "" when these sharing settings are the fitted ones, else why the attack is not shown (one line)."""
        if (k, k_prime, permute, signs, value_bits) == (self.k, self.k_prime, self.permute, self.signs, self.value_bits):
            return ""
        scheme = "permuted" if self.permute else "not permuted"
        return (
            f"the regression attack is fitted for k = {self.k}, k' = {self.k_prime}, {scheme}, {self.signs} signs, "
            f"{self.value_bits}-bit values only (the app's defaults); set those to see it"
        )


def fit_regression(
    sparse_codes: torch.Tensor, images: torch.Tensor, k: int, code_dim: int, generator: torch.Generator
) -> tuple[RegressionAttack, dict[str, str]]:
    """The table's ridge regression (dual form) at the app's default sharing settings, and the metadata saying which."""
    k_prime = privacy.default_k_prime(k, code_dim)
    options = dict(k=k, permute=privacy.DEFAULT_PERMUTE, signs=privacy.DEFAULT_SIGNS, value_bits=privacy.DEFAULT_VALUE_BITS)
    dual = fit_regression_attack(sparse_codes, images, k_prime, generator, **options)
    settings = {
        "k": str(k),
        "k_prime": str(k_prime),
        "permute": str(int(privacy.DEFAULT_PERMUTE)),
        "signs": privacy.DEFAULT_SIGNS,
        "value_bits": str(privacy.DEFAULT_VALUE_BITS),
        "ridge": repr(dual.ridge),
    }
    return dual, settings


def save_regression(attack: CompactRegression, path: Path, model_digest: str, info: dict[str, str]) -> None:
    """Write the compact regression in float16 with the model's digest and its fitted setting (`info`: k, k_prime, ...)."""
    tensors = {name: getattr(attack, name).detach().half().contiguous() for name in ("weights", "basis", "feature_mean", "pixel_mean")}
    if not all(bool(value.isfinite().all()) for value in tensors.values()):
        raise ValueError("the regression's weights overflow float16")
    metadata = {"format": REGRESSION_FORMAT, "model_sha256": model_digest, "value_scale": repr(attack.value_scale)} | info
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, partial, metadata=metadata)
    os.replace(partial, path)


def load_regression(directory: Path | None, model: SparseAutoencoder) -> tuple[BundledRegression | None, str]:
    """(regression, "") when a regression file fitted for exactly this model sits in `directory`, else (None, the reason)."""
    tensors, metadata, reason = _read(directory, REGRESSION_FILENAME, REGRESSION_FORMAT)
    if reason:
        return None, reason
    refit = f"refit it with `{FIT_COMMAND}`"
    try:
        k, k_prime, permute, value_bits = (int(metadata[key]) for key in ("k", "k_prime", "permute", "value_bits"))
        signs, value_scale = metadata["signs"], float(metadata["value_scale"])
        weights, basis, feature_mean, pixel_mean = (tensors[name] for name in ("weights", "basis", "feature_mean", "pixel_mean"))
    except (KeyError, ValueError) as error:
        what = f"no {error.args[0]!r} entry" if isinstance(error, KeyError) else _one_line(error)
        return None, f"{REGRESSION_FILENAME} is malformed ({what}); {refit}"
    features = model.num_groups * (model.code_dim + k_prime)  # public_features: the dense code and each group's k' values
    if not 1 <= k <= k_prime <= model.code_dim or weights.shape[0] != features or feature_mean.shape != (features,):
        return None, f"{REGRESSION_FILENAME} is for another code shape"
    if weights.ndim != 2 or basis.ndim != 2 or basis.shape[1] != weights.shape[1] or pixel_mean.shape != basis.shape[:1]:
        return None, f"{REGRESSION_FILENAME} has inconsistent shapes; {refit}"
    attack = CompactRegression(weights, basis, feature_mean, pixel_mean, value_scale)
    return BundledRegression(attack, k, k_prime, bool(permute), signs, value_bits, metadata), ""


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


@torch.inference_mode()
def _recovery(scorer: LearnedAttack, codes: torch.Tensor, k: int, k_prime: int, permute: bool, generator: torch.Generator) -> float:
    """Mean share of the scorer's kept entries that are true (chance: k/k')."""
    public, key = privacy.ambiguate(
        topk_by_magnitude(codes, k),
        k_prime,
        generator,
        k=k,
        permute=permute,
        signs=privacy.DEFAULT_SIGNS,
        value_bits=privacy.DEFAULT_VALUE_BITS,
    )
    return float(support_recovery(keep_by_score(public, scorer(public), k), public, key).mean())


def _encode(model: SparseAutoencoder, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model.encode(chunk) for chunk in images.split(batch)])


def main(argv: list[str] | None = None) -> None:
    from sae.core.data import load_split, to_float
    from sae.zoo.hub import ModelLoadError, load_model

    parser = argparse.ArgumentParser(prog="python -m sae.zoo.shipped", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[2] / "assets" / "model", help="model directory")
    parser.add_argument("--data", type=Path, required=True, help="CelebA folder (train ids are used; a few validation faces check it)")
    parser.add_argument("--out", type=Path, default=None, help=f"default: MODEL/{FILENAME}")
    parser.add_argument("--train-limit", type=int, default=2000, help="training faces the attacker holds (as in sae.cli.privacy_eval)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rank", type=int, default=RANK, help="principal pixel axes the bundled regression keeps")
    parser.add_argument("--only", choices=("learned", "regression"), default=None, help="fit one of the two (default: both)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where sae.core.data caches the decoded faces")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model).model
    except ModelLoadError as error:
        raise SystemExit(f"sae.zoo.shipped: {error}") from None
    started = time.perf_counter()
    train_images = to_float(load_split(args.data, "train", args.cache_dir, limit=args.train_limit))
    check_images = to_float(load_split(args.data, "val", args.cache_dir, limit=256))
    train, check = _encode(model, train_images), _encode(model, check_images)
    digest = weights_digest(args.model)
    if args.only != "learned":
        _fit_and_save_regression(model, train, train_images, check, check_images, args, digest)
    if args.only == "regression":
        return
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    scorers = {}
    for name, permute in SCHEMES.items():
        losses: list[float] = []
        scorers[name] = fit_scorer(
            train,
            model.k_max,
            permute,
            args.steps,
            generator,
            batch_size=args.batch,
            hidden=args.hidden,
            log=lambda _, loss, into=losses: into.append(loss),
        )
        tail = losses[-50:]
        print(f"{name}: {args.steps} steps of {args.batch}, last-50 mean loss {sum(tail) / max(1, len(tail)):.4f}", flush=True)
        k = min(privacy.DEFAULT_K, model.k_max)
        for k_prime in (min(2 * k, model.code_dim), model.code_dim):
            recovered = _recovery(scorers[name], check, k, k_prime, permute, torch.Generator().manual_seed(args.seed + 1))
            print(f"  validation, k={k}, k'={k_prime}: keeps {recovered:.1%} true entries (chance {k / k_prime:.1%})", flush=True)
    out = args.out or args.model / FILENAME
    info = {"train_faces": str(len(train)), "steps": str(args.steps), "batch": str(args.batch), "seed": str(args.seed)}
    save(scorers, out, digest, info)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - started:.0f} s", flush=True)


def _fit_and_save_regression(model, train, train_images, check, check_images, args, digest: str) -> None:
    """Fit the regression at the app's default setting, compact it, report held-out PSNR (dual vs compact), write it."""
    from sae.core.metrics import psnr
    from sae.privacy.attacks import regression_attack

    started = time.perf_counter()
    k = min(privacy.DEFAULT_K, model.k_max)
    generator = torch.Generator().manual_seed(args.seed + 2)
    dual, settings = fit_regression(topk_by_magnitude(train, k), train_images, k, model.code_dim, generator)
    attack = dual.compact(args.rank)
    public, _ = privacy.ambiguate(
        topk_by_magnitude(check, k),
        int(settings["k_prime"]),
        torch.Generator().manual_seed(args.seed + 3),
        k=k,
        permute=privacy.DEFAULT_PERMUTE,
        signs=privacy.DEFAULT_SIGNS,
        value_bits=privacy.DEFAULT_VALUE_BITS,
    )
    shape = tuple(check_images.shape[1:])
    full, compact = (float(psnr(check_images, regression_attack(public, form, shape)).mean()) for form in (dual, attack))
    print(
        f"regression (k={k}, k'={settings['k_prime']}, permuted, ridge {settings['ridge']}): validation PSNR "
        f"{full:.2f} dB, {compact:.2f} dB at rank {attack.rank}",
        flush=True,
    )
    del dual
    out = (args.out or args.model / FILENAME).with_name(REGRESSION_FILENAME)
    save_regression(attack, out, digest, settings | {"train_faces": str(len(train)), "rank": str(attack.rank), "seed": str(args.seed)})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
