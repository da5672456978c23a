"""The learned attack, fitted once on training faces and shipped beside the model so the app can show it.

A visitor's clone has no CelebA to fit it on, so it is fitted here, once per model:

    python -m sae.bundled_attack --model assets/model --data ../shared/data/celeba10k

encodes training faces, fits two small scorers (one on plain public codes, one on permuted ones; k and k' drawn per
batch over the app's range, so one scorer serves every slider position) and writes `learned_attack.safetensors` beside
the model in float16 (about 1 MB), stamped with the sha256 of the model's weights: a retrained model never pairs with a
stale scorer (the app then hides the option and says why).

The README's privacy table comes from `sae.privacy_eval`, which fits a wider scorer for each setting; this is a smaller,
general instance of the same attack (`sae.attacks.LearnedAttack`), for showing rather than measuring.

The ridge-regression attack is not bundled: its fitted form is the attacker's training features plus one dual
coefficient per face and pixel (2000 x (10240 + 12288) float64 for the bundled model's codes, 0.36 GB), or 0.5 GB of
float32 primal weights; any small form would be a different, weaker attack.
"""

from __future__ import annotations

import argparse
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

from sae import privacy
from sae.attacks import LearnedAttack, keep_by_score, support_recovery
from sae.model import SparseAutoencoder, topk_by_magnitude

FILENAME = "learned_attack.safetensors"
FORMAT = "1"
HIDDEN = 16  # context width: 2 scorers x ~250k weights in float16 stay near 1 MB (the budget for bundled artifacts is 2 MB)
SCHEMES = {"plain": False, "permuted": True}
FIT_COMMAND = "python -m sae.bundled_attack --model DIR --data ../shared/data/celeba10k"


def weights_digest(directory: Path) -> str:
    """sha256 of the model's weights file: what a bundled scorer was fitted for."""
    digest = hashlib.sha256()
    with open(directory / "model.safetensors", "rb") as file:
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


def load(directory: Path | None, model: SparseAutoencoder) -> tuple[LearnedScorers | None, str]:
    """(scorers, "") when a scorer file fitted for exactly this model sits in `directory`, else (None, the reason in one line)."""
    path = None if directory is None else Path(directory) / FILENAME
    if path is None or not path.is_file():
        return None, f"no {FILENAME} beside the model (fit it with `{FIT_COMMAND}`)"
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name).float() for name in file.keys()}
    except (SafetensorError, OSError) as error:
        return None, f"{FILENAME} is unreadable ({str(error).splitlines()[0] if str(error) else error.__class__.__name__})"
    if metadata.get("format") != FORMAT:
        return None, f"{FILENAME} has format {metadata.get('format')!r}, expected {FORMAT!r}; refit it with `{FIT_COMMAND}`"
    if not (Path(directory) / "model.safetensors").is_file():
        return None, f"no model.safetensors beside {FILENAME} to check it against"
    if metadata.get("model_sha256") != weights_digest(Path(directory)):
        return None, f"{FILENAME} was fitted for other model weights; refit it with `{FIT_COMMAND}`"
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
    from sae.data import load_split, to_float
    from sae.hub import ModelLoadError, load_model

    parser = argparse.ArgumentParser(prog="python -m sae.bundled_attack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "model", help="model directory")
    parser.add_argument("--data", type=Path, required=True, help="CelebA folder (train ids are used; a few validation faces check it)")
    parser.add_argument("--out", type=Path, default=None, help=f"default: MODEL/{FILENAME}")
    parser.add_argument("--train-limit", type=int, default=2000, help="training faces the attacker holds (as in sae.privacy_eval)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None, help="where sae.data caches the decoded faces")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model).model
    except ModelLoadError as error:
        raise SystemExit(f"sae.bundled_attack: {error}") from None
    started = time.perf_counter()
    train = _encode(model, to_float(load_split(args.data, "train", args.cache_dir, limit=args.train_limit)))
    check = _encode(model, to_float(load_split(args.data, "val", args.cache_dir, limit=256)))
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
    save(scorers, out, weights_digest(args.model), info)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
