"""The attacks shipped beside a model, so the app can show them: their files, read and written, checked against it.

A visitor's clone has no face data to fit them on, so `python -m sae.cli.fit_attacks` fits them once per model and
writes them beside it in float16, stamped with the model's weights digest (`sae.core.fingerprint`): a retrained model
never pairs with a stale attack (the app then hides the option and says why).
- the learned attack's scorers (`sae.privacy.learned.LearnedAttack`), one for plain positions and one for permuted
  ones, fitted on the paper's scheme over the app's whole range of k and k';
- the regression attack in its compact form, fitted at the app's default setting of the paper's scheme only (its
  features depend on k').
Keyed public codes are uniformly random to anyone without the key: there is nothing to fit on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from sae.core.fingerprint import weights_digest
from sae.core.messages import one_line
from sae.core.model import SparseAutoencoder
from sae.privacy.learned import CompactRegression, LearnedAttack
from sae.zoo import files

FORMAT = "2"
REGRESSION_FORMAT = "2"
SCHEMES = {"plain": False, "permuted": True}
FIT_COMMAND = "python -m sae.cli.fit_attacks --model DIR --data DATA"


def _read(
    directory: Path | None, filename: str, version: str, model: SparseAutoencoder
) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(float32 tensors, metadata, "") of a shipped file fitted for `model`'s weights, else ({}, {}, the reason)."""
    path = None if directory is None else Path(directory) / filename
    if path is None or not path.is_file():
        return {}, {}, f"no {filename} beside the model (fit it with `{FIT_COMMAND}`)"
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name).float() for name in file.keys()}
    except (SafetensorError, OSError) as error:
        return {}, {}, f"{filename} is unreadable ({one_line(error)})"
    if metadata.get("format") != version:
        return {}, {}, f"{filename} has format {metadata.get('format')!r}, expected {version!r}; refit it with `{FIT_COMMAND}`"
    if metadata.get("model_sha256") != weights_digest(model):
        return {}, {}, f"{filename} was fitted for other model weights; refit it with `{FIT_COMMAND}`"
    return tensors, metadata, ""


def _write(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write to a temporary name and rename: never half a file."""
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, partial, metadata=metadata)
    os.replace(partial, path)


@dataclass(frozen=True)
class LearnedScorers:
    """The bundled scorers, one per scheme, and what they were fitted on (the safetensors metadata)."""

    plain: LearnedAttack
    permuted: LearnedAttack
    info: dict[str, str]

    def for_scheme(self, keyed: bool, permuted: bool) -> LearnedAttack | None:
        """The scorer for public codes of this kind; None for keyed codes (nothing to learn on them)."""
        if keyed:
            return None
        return self.permuted if permuted else self.plain


def save_scorers(scorers: dict[str, LearnedAttack], path: Path, model_digest: str, info: dict[str, str] | None = None) -> None:
    """Write both scorers in float16 with the model's weights digest."""
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
    _write(tensors, path, metadata)


def load_scorers(directory: Path | None, model: SparseAutoencoder) -> tuple[LearnedScorers | None, str]:
    """(scorers, "") when a scorer file fitted for exactly this model sits in `directory`, else (None, the reason in one line)."""
    tensors, metadata, reason = _read(directory, files.SCORERS, FORMAT, model)
    if reason:
        return None, reason
    try:
        num_groups, code_dim, hidden = (int(metadata[key]) for key in ("num_groups", "code_dim", "hidden"))
    except (KeyError, ValueError) as error:  # a hand-edited or foreign file: say so, never a traceback at the app's start
        what = f"no {error.args[0]!r} entry" if isinstance(error, KeyError) else one_line(error)
        return None, f"{files.SCORERS} has malformed metadata ({what}); refit it with `{FIT_COMMAND}`"
    if (num_groups, code_dim) != (model.num_groups, model.code_dim):
        return None, f"{files.SCORERS} is for another code shape"
    if hidden < 1:
        return None, f"{files.SCORERS} has malformed metadata (hidden = {hidden}); refit it with `{FIT_COMMAND}`"
    scorers = {}
    for name in SCHEMES:
        scorer = LearnedAttack(model.num_groups, model.code_dim, hidden)
        state = {key.removeprefix(f"{name}."): value for key, value in tensors.items() if key.startswith(f"{name}.")}
        try:
            scorer.load_state_dict(state, strict=True)
        except RuntimeError as error:
            return None, f"{files.SCORERS} does not match the scorer's layout ({str(error).splitlines()[0]})"
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

    def mismatch(self, k: int, k_prime: int, keyed: bool, permute: bool, signs: str, value_bits: int) -> str:
        """ "" when these sharing settings are the fitted ones, else why the attack is not shown (one line)."""
        if not keyed and (k, k_prime, permute, signs, value_bits) == (self.k, self.k_prime, self.permute, self.signs, self.value_bits):
            return ""
        return f"fitted for the paper's scheme at k = {self.k}, k' = {self.k_prime} only; choose that scheme and those settings to see it"


def save_regression(attack: CompactRegression, path: Path, model_digest: str, info: dict[str, str]) -> None:
    """Write the compact regression in float16 with the model's digest and its fitted setting (`info`: k, k_prime, ...)."""
    tensors = {name: getattr(attack, name).detach().half().contiguous() for name in ("weights", "basis", "feature_mean", "pixel_mean")}
    if not all(bool(value.isfinite().all()) for value in tensors.values()):
        raise ValueError("the regression's weights overflow float16")
    metadata = {"format": REGRESSION_FORMAT, "model_sha256": model_digest, "value_scale": repr(attack.value_scale)} | info
    _write(tensors, path, metadata)


def load_regression(directory: Path | None, model: SparseAutoencoder) -> tuple[BundledRegression | None, str]:
    """(regression, "") when a regression file fitted for exactly this model sits in `directory`, else (None, the reason)."""
    tensors, metadata, reason = _read(directory, files.REGRESSION, REGRESSION_FORMAT, model)
    if reason:
        return None, reason
    refit = f"refit it with `{FIT_COMMAND}`"
    try:
        k, k_prime, permute, value_bits = (int(metadata[key]) for key in ("k", "k_prime", "permute", "value_bits"))
        signs, value_scale = metadata["signs"], float(metadata["value_scale"])
        weights, basis, feature_mean, pixel_mean = (tensors[name] for name in ("weights", "basis", "feature_mean", "pixel_mean"))
    except (KeyError, ValueError) as error:
        what = f"no {error.args[0]!r} entry" if isinstance(error, KeyError) else one_line(error)
        return None, f"{files.REGRESSION} is malformed ({what}); {refit}"
    features = model.num_groups * (model.code_dim + k_prime)  # public_features: the dense code and each group's k' values
    if not 1 <= k <= k_prime <= model.code_dim or weights.shape[0] != features or feature_mean.shape != (features,):
        return None, f"{files.REGRESSION} is for another code shape"
    if weights.ndim != 2 or basis.ndim != 2 or basis.shape[1] != weights.shape[1] or pixel_mean.shape != basis.shape[:1]:
        return None, f"{files.REGRESSION} has inconsistent shapes; {refit}"
    attack = CompactRegression(weights, basis, feature_mean, pixel_mean, value_scale)
    return BundledRegression(attack, k, k_prime, bool(permute), signs, value_bits, metadata), ""


@dataclass(frozen=True)
class ShippedAttacks:
    """What a model directory ships for the app, and why anything missing is missing (one line each)."""

    scorers: LearnedScorers | None
    regression: BundledRegression | None
    scorer_note: str = ""
    regression_note: str = ""


def load_shipped(directory: Path | None, model: SparseAutoencoder) -> ShippedAttacks:
    """Both shipped attacks of a model directory, each with the reason when it cannot be used."""
    scorers, scorer_note = load_scorers(directory, model)
    regression, regression_note = load_regression(directory, model)
    return ShippedAttacks(scorers, regression, scorer_note, regression_note)
