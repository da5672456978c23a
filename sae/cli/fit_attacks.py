"""Fit the attacks the app ships beside a model: the learned attack's scorers and the regression attack.

    python -m sae.cli.fit_attacks --model assets/models/celeba64 --data ../shared/data/celeba10k

Encodes training faces (the attacker's own; never the test split), fits two small scorers on the paper's scheme (plain
and permuted positions; k and k' drawn per batch over the app's range, so one scorer serves every slider position) and
the ridge regression at the app's default setting of the paper's scheme, compacts it to its top `--rank` principal
pixel axes, and writes both beside the model (`sae.zoo.shipped`), stamped with the model's weights digest. A few
validation faces check each: the share of true entries the scorers keep (against chance) and the regression's PSNR.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from sae.core.data import load_split, to_float
from sae.core.fingerprint import weights_digest
from sae.core.inference import encode_batched
from sae.core.metrics import psnr
from sae.core.model import topk_by_magnitude
from sae.privacy.attacks import keep_by_score, regression_attack, support_recovery
from sae.privacy.learned import LearnedAttack, RegressionAttack, fit_learned_attack, fit_regression_attack, value_scale
from sae.privacy.scheme import SCHEMES, ambiguate, default_k, k_prime_for
from sae.zoo import files, shipped
from sae.zoo.hub import ModelLoadError, load_model

HIDDEN = 16  # the scorers' context width: it sets the shipped file's size (stored in float16)
RANK = 128  # principal pixel axes the compact regression keeps
PAPER = SCHEMES["paper"]


def _draw_setting(k_max: int, code_dim: int, generator: torch.Generator) -> tuple[int, int]:
    """A (k, k') the app can show: k log-uniform in [1, k_max]; k' every position half the time, else 1.5-8 k."""
    k = min(k_max, max(1, round(math.exp(float(torch.rand((), generator=generator)) * math.log(k_max)))))
    if float(torch.rand((), generator=generator)) < 0.5:
        return k, code_dim
    return k, min(code_dim, max(k + 1, round((1.5 + 6.5 * float(torch.rand((), generator=generator))) * k)))


def fit_scorer(codes: torch.Tensor, k_max: int, permute: bool, steps: int, generator: torch.Generator, *, batch_size: int = 64,
               hidden: int = HIDDEN, lr: float = 2e-3) -> tuple[LearnedAttack, list[float]]:  # fmt: skip
    """One scorer fitted on dense training codes (N, L, m): each step sparsifies a batch at a drawn k and shares it at
    a drawn k' with the paper's scheme (permuted or not). Returns the scorer and its losses."""
    code_dim = codes.shape[-1]
    losses: list[float] = []
    attacker = fit_learned_attack(
        codes,
        code_dim,
        steps,
        generator,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        log=lambda _, loss: losses.append(loss),
        settings=lambda: _draw_setting(k_max, code_dim, generator),
        scale=value_scale(topk_by_magnitude(codes[:512], default_k(k_max))),
        **(PAPER.options() | {"permute": permute}),
    )
    return attacker, losses


def fit_regression(sparse: torch.Tensor, images: torch.Tensor, k: int, code_dim: int, generator) -> tuple[RegressionAttack, dict[str, str]]:
    """The privacy table's ridge regression (dual form) at the app's default setting of the paper's scheme, and the
    metadata saying which setting."""
    k_prime = k_prime_for(k, code_dim)
    dual = fit_regression_attack(sparse, images, k_prime, generator, k=k, **PAPER.options())
    settings = {
        "k": str(k),
        "k_prime": str(k_prime),
        "permute": str(int(PAPER.permute)),
        "signs": PAPER.signs,
        "value_bits": str(PAPER.value_bits),
        "ridge": repr(dual.ridge),
    }
    return dual, settings


@torch.inference_mode()
def _recovery(scorer: LearnedAttack, codes: torch.Tensor, k: int, k_prime: int, permute: bool, generator: torch.Generator) -> float:
    """Mean share of the scorer's kept entries that are true (chance: k/k')."""
    public, key = ambiguate(topk_by_magnitude(codes, k), k_prime, generator, k=k, **(PAPER.options() | {"permute": permute}))
    return float(support_recovery(keep_by_score(public, scorer(public), k), public, key).mean())


def _ship_regression(model, train, train_images, check, check_images, args, digest: str) -> None:
    """Fit the regression at the app's default setting, compact it, report held-out PSNR (dual vs compact), write it."""
    started = time.perf_counter()
    k = default_k(model.k_max)
    dual, settings = fit_regression(
        topk_by_magnitude(train, k), train_images, k, model.code_dim, torch.Generator().manual_seed(args.seed + 2)
    )
    attack = dual.compact(args.rank)
    generator = torch.Generator().manual_seed(args.seed + 3)
    public, _ = ambiguate(topk_by_magnitude(check, k), int(settings["k_prime"]), generator, k=k, **PAPER.options())
    shape = tuple(check_images.shape[1:])
    full, compact = (float(psnr(check_images, regression_attack(public, form, shape)).mean()) for form in (dual, attack))
    print(f"regression (k={k}, k'={settings['k_prime']}): validation PSNR {full:.2f} dB, {compact:.2f} at rank {attack.rank}", flush=True)
    out = args.model / files.REGRESSION
    info = settings | {"train_faces": str(len(train)), "rank": str(attack.rank), "seed": str(args.seed)}
    shipped.save_regression(attack, out, digest, info)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Command line: fit and write the shipped attacks."""
    parser = argparse.ArgumentParser(
        prog="python -m sae.cli.fit_attacks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=files.default_model(), help="model directory")
    parser.add_argument("--data", type=Path, required=True, help="the model's dataset (train faces are used; a few validation faces check)")
    parser.add_argument("--train-limit", type=int, default=2000, help="training faces the attacker holds")
    parser.add_argument("--steps", type=int, default=600, help="scorer training steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--rank", type=int, default=RANK, help="principal pixel axes the shipped regression keeps")
    parser.add_argument("--only", choices=("learned", "regression"), default=None, help="fit one of the two (default: both)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"), help="where decoded faces are cached")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model).model
    except ModelLoadError as error:
        raise SystemExit(f"sae.cli.fit_attacks: {error}") from None
    size = model.image_size
    train_images = to_float(load_split(args.data, "train", args.cache_dir, args.train_limit, size))
    check_images = to_float(load_split(args.data, "val", args.cache_dir, 256, size))
    train, check = encode_batched(model, train_images), encode_batched(model, check_images)
    digest = weights_digest(model)
    k = default_k(model.k_max)
    if args.only != "learned":
        _ship_regression(model, train, train_images, check, check_images, args, digest)
    if args.only == "regression":
        return
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    scorers = {}
    for name, permute in shipped.SCHEMES.items():
        scorers[name], losses = fit_scorer(train, model.k_max, permute, args.steps, generator, batch_size=args.batch, hidden=args.hidden)
        tail = losses[-50:]
        print(f"{name}: {args.steps} steps of {args.batch}, last-50 mean loss {sum(tail) / max(1, len(tail)):.4f}", flush=True)
        for k_prime in (min(2 * k, model.code_dim), model.code_dim):
            recovered = _recovery(scorers[name], check, k, k_prime, permute, torch.Generator().manual_seed(args.seed + 1))
            print(f"  validation, k={k}, k'={k_prime}: keeps {recovered:.1%} true entries (chance {k / k_prime:.1%})", flush=True)
    out = args.model / files.SCORERS
    info = {"train_faces": str(len(train)), "steps": str(args.steps), "batch": str(args.batch), "seed": str(args.seed)}
    shipped.save_scorers(scorers, out, digest, info)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
