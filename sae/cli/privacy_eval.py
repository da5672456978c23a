"""Measure the privacy scheme on the CelebA-64 test split: what the key holder sees, what each attack gets.

    python -m sae.cli.privacy_eval --model assets/model --data ../shared/data/celeba10k [--limit N] [--out DIR]

For every public-code configuration (k'/k in {2, 4, 8, full}; plain, with the secret permutation, and
permuted with balanced decoy signs) the test faces are ambiguated once and decoded by the key holder and
by every attack in `sae.privacy.attacks`; the learned and regression attacks are trained on ambiguated codes of
the TRAINING split only (the attacker's own faces) and applied to the test split. The report's buggy
decoys broken by `magnitude_attack` are measured for contrast, with the mean face as the floor.
Writes `privacy.json`, `privacy.md` and `privacy.html`.
The scheme's strength is the best attack's PSNR, measured, not assumed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from sae.cli.evaluate import write_results
from sae.core.baselines import mean_face
from sae.core.data import load_split, to_float
from sae.core.metrics import psnr, ssim
from sae.core.model import SparseAutoencoder
from sae.privacy.attacks import (
    chance_level,
    decoy_attack,
    fit_learned_attack,
    fit_regression_attack,
    learned_attack,
    magnitude_attack,
    permutation_attack,
    reencode_attack,
    regression_attack,
    support_recovery,
)
from sae.privacy.scheme import Key, PublicCode, ambiguate, key_nbytes, public_nbytes, reveal

RATIOS: tuple[int | str, ...] = (2, 4, 8, "full")
SCHEMES: tuple[tuple[bool, str], ...] = ((False, "anchor"), (True, "anchor"), (True, "balanced"))  # (permute, signs)
FRACTIONS = (1.0, 0.5, 0.25)
BATCH = 250
MARGIN_DB = 10.0  # the best attack must stay this far below the key holder...
MEAN_FACE_SLACK_DB = 3.0  # ...and within this of the mean face (issue 3)


def score(reference: torch.Tensor, estimate: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM over a batch."""
    return {"psnr": float(np.mean(psnr(reference, estimate))), "ssim": float(np.mean(ssim(reference, estimate)))}


@torch.no_grad()
def decode(model: SparseAutoencoder, codes: torch.Tensor) -> torch.Tensor:
    """Batched decode, so a thousand faces never sit in one activation tensor."""
    return torch.cat([model.decode(chunk) for chunk in codes.split(BATCH)])


@torch.no_grad()
def sparse_codes(model: SparseAutoencoder, images: torch.Tensor, k: int) -> torch.Tensor:
    """Encode once and keep k per group; values rounded to float16 so 16-bit files hold them exactly."""
    return torch.cat([model.sparsify(model.encode(chunk), k) for chunk in images.split(BATCH)]).half().float()


def k_prime_for(ratio: int | str, k: int, code_dim: int) -> int:
    """k' for a ratio k'/k, or every position for "full" (capped at code_dim)."""
    return code_dim if ratio == "full" else min(int(ratio) * k, code_dim)


def configurations(ratios: Sequence[int | str], k: int, code_dim: int) -> list[tuple[str, int]]:
    """(label, k') pairs with duplicates merged: at k=32 of 128, k'/k = 4 already fills every position."""
    merged: dict[int, list[str]] = {}
    for ratio in ratios:
        merged.setdefault(k_prime_for(ratio, k, code_dim), []).append(str(ratio))
    return [(" = ".join(labels), k_prime) for k_prime, labels in merged.items()]


def evaluate_attack(model, images, code: torch.Tensor, public: PublicCode, key: Key) -> dict[str, float]:
    """Quality of an attack's decode and the share of its kept entries that are true."""
    return score(images, decode(model, code)) | {"support_recovery": float(support_recovery(code, public, key).mean())}


def attack_codes(
    model: SparseAutoencoder,
    images: torch.Tensor,
    public: PublicCode,
    k: int,
    generator: torch.Generator,
    train_attack: Callable[[], object] | None,
) -> dict[str, torch.Tensor]:
    """Every attack's code on one public code (in public coordinates, as an attacker decodes them)."""
    codes = {
        "decode as is": decoy_attack(public),
        "random keep-k": permutation_attack(public, k, generator),
        "magnitude (best side)": magnitude_attack(public, k, "best", model, images),
        "re-encode": reencode_attack(public, k, model),
    }
    if train_attack is not None:
        attacker = train_attack()
        codes["learned (keep k)"] = learned_attack(public, k, attacker)
        codes["learned (soft)"] = learned_attack(public, k, attacker, soft=True)
    return codes


def evaluate_configuration(
    model: SparseAutoencoder,
    images: torch.Tensor,
    sparse: torch.Tensor,
    train: tuple[torch.Tensor, torch.Tensor] | None,
    label: str,
    k_prime: int,
    permute: bool,
    signs: str,
    *,
    value_bits: int,
    learned_steps: int,
    learned_batch: int,
    regression: bool,
    seed: int,
) -> dict:
    """One row of the table: key holder, every attack, the best attack and whether it meets the target."""
    k = int((sparse[0, 0] != 0).sum())
    generator = torch.Generator().manual_seed(seed)
    options = dict(permute=permute, value_bits=value_bits, signs=signs)
    public, key = ambiguate(sparse, k_prime, generator, **options)
    train_attack = None
    train_sparse, train_images = train if train is not None else (None, None)
    if train_sparse is not None and learned_steps > 0:
        attack_generator = torch.Generator().manual_seed(seed + 1)
        train_attack = lambda: fit_learned_attack(  # noqa: E731
            train_sparse, k_prime, learned_steps, attack_generator, batch_size=learned_batch, **options
        )
    codes = attack_codes(model, images, public, k, generator, train_attack)
    attacks = {name: evaluate_attack(model, images, code, public, key) for name, code in codes.items()}
    if train_images is not None and regression:
        regressor = fit_regression_attack(train_sparse, train_images, k_prime, torch.Generator().manual_seed(seed + 2), **options)
        decoded = regression_attack(public, regressor, tuple(images.shape[1:]))
        attacks["regression"] = score(images, decoded) | {"support_recovery": None}  # it chooses no entries
    best = max(attacks, key=lambda name: attacks[name]["psnr"])
    return {
        "ratio": label,
        "k": k,
        "k_prime": k_prime,
        "permute": permute,
        "signs": signs,
        "value_bits": value_bits,
        "chance": chance_level(k, k_prime),
        "public_bytes_per_face": _per_face_bytes(public),
        "key_bytes_per_face": key_nbytes(1, public.num_groups, k, k_prime, permute),
        "key_holder": score(images, decode(model, reveal(public, key))),
        "attacks": attacks,
        "best_attack": best,
    }


def _per_face_bytes(public: PublicCode) -> int:
    """One face's public file size (the files the share CLI writes hold one face)."""
    return public_nbytes(1, public.num_groups, public.code_dim, public.k_prime, public.value_bits)


def key_holder_fractions(model, images, sparse: torch.Tensor, k_prime: int, seed: int) -> dict[str, dict[str, float]]:
    """The owner's fidelity knob: the key holder at fraction 1, 1/2, 1/4 of the true entries."""
    public, key = ambiguate(sparse, k_prime, torch.Generator().manual_seed(seed))
    return {f"{fraction:g}": score(images, decode(model, reveal(public, key, fraction))) for fraction in FRACTIONS}


def value_bits_cost(model, images, sparse: torch.Tensor, k_prime: int, seed: int) -> dict[str, dict[str, float]]:
    """Key holder's quality with 16- and 8-bit stored values (8 bits: int8 times a per-group float16 scale)."""
    rows = {}
    for bits in (16, 8):
        public, key = ambiguate(sparse, k_prime, torch.Generator().manual_seed(seed), value_bits=bits)
        rows[str(bits)] = score(images, decode(model, reveal(public, key))) | {"public_bytes_per_face": _per_face_bytes(public)}
    return rows


def buggy_decoys(model, images, sparse: torch.Tensor, seed: int) -> dict:
    """The report's m/k-scaled decoys at k' = 2k: decode as is, and the one-line smallest-magnitude break."""
    k = int((sparse[0, 0] != 0).sum())
    k_prime = min(2 * k, sparse.shape[-1])
    public, key = ambiguate(sparse, k_prime, torch.Generator().manual_seed(seed), decoys="reference")
    codes = {"decode as is": decoy_attack(public), "magnitude (smallest)": magnitude_attack(public, k, "smallest")}
    return {"k_prime": k_prime, "chance": chance_level(k, k_prime)} | {
        name: evaluate_attack(model, images, code, public, key) for name, code in codes.items()
    }


def meets_target(row: dict, mean_face_psnr: float) -> bool:
    """Issue 3's bar: best attack >= MARGIN_DB below the key holder and <= mean face + MEAN_FACE_SLACK_DB."""
    attack = row["attacks"][row["best_attack"]]["psnr"]
    return attack <= row["key_holder"]["psnr"] - MARGIN_DB and attack <= mean_face_psnr + MEAN_FACE_SLACK_DB


def run(
    model: SparseAutoencoder,
    data: str | Path,
    *,
    limit: int | None = None,
    train_limit: int | None = 2000,
    k: int = 32,
    ratios: Sequence[int | str] = RATIOS,
    schemes: Sequence[tuple[bool, str]] = SCHEMES,
    regression: bool = True,
    value_bits: int = 16,
    learned_steps: int = 300,
    learned_batch: int = 64,
    seed: int = 0,
    cache_dir: str | Path | None = ".cache",
    log: Callable[[str], None] | None = None,
) -> dict:
    """The whole privacy evaluation as a JSON-ready dict (train_limit / learned_steps size the learned attack)."""
    start = time.perf_counter()
    log = log or (lambda message: None)
    model.eval()
    if not 1 <= k <= model.k_max:
        raise ValueError(f"k must be in [1, k_max={model.k_max}], got {k}")
    test = to_float(load_split(data, "test", cache_dir, limit))
    train = to_float(load_split(data, "train", cache_dir, train_limit))
    sparse = sparse_codes(model, test, k)
    attacker_data = (sparse_codes(model, train, k), train) if learned_steps > 0 or regression else None
    floor = score(test, mean_face(train, len(test)))
    rows = []
    for label, k_prime in configurations(ratios, k, model.code_dim):
        for permute, signs in schemes:
            log(f"k'={k_prime} permute={permute} signs={signs}")
            row = evaluate_configuration(
                model, test, sparse, attacker_data, label, k_prime, permute, signs,
                value_bits=value_bits, learned_steps=learned_steps, learned_batch=learned_batch, regression=regression, seed=seed,
            )  # fmt: skip
            rows.append(row | {"meets_target": meets_target(row, floor["psnr"])})
    k_prime_2 = min(2 * k, model.code_dim)
    return {
        "test_faces": len(test),
        "train_faces_for_learned_attack": len(train) if attacker_data is not None else 0,
        "learned_steps": learned_steps,
        "learned_batch": learned_batch,
        "k": k,
        "num_groups": model.num_groups,
        "code_dim": model.code_dim,
        "seed": seed,
        "mean_face": floor,
        "key_holder_fractions": key_holder_fractions(model, test, sparse, k_prime_2, seed),
        "value_bits_cost": value_bits_cost(model, test, sparse, model.code_dim, seed),
        "buggy_decoys": buggy_decoys(model, test, sparse, seed),
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }


def scheme_name(row: dict) -> str:
    """How a row's public code was made, in words."""
    return ("permuted" if row["permute"] else "plain") + (", balanced signs" if row.get("signs") == "balanced" else "")


def attack_cell(s: dict | None) -> str:
    if s is None:
        return "-"
    recovery = "" if s["support_recovery"] is None else f" ({100 * s['support_recovery']:.1f}%)"
    return f"{s['psnr']:.2f} / {s['ssim']:.3f}{recovery}"


def markdown(result: dict) -> str:
    """The privacy table: PSNR dB / SSIM (support recovery, chance) per attack and configuration."""
    cell = lambda s: f"{s['psnr']:.2f} / {s['ssim']:.3f}"  # noqa: E731
    names = list(dict.fromkeys(name for row in result["rows"] for name in row["attacks"]))
    k, floor = result["k"], result["mean_face"]
    lines = [
        f"Test split: {result['test_faces']} CelebA-64 faces, k = {k} per group ({k * result['num_groups']} non-zeros); "
        f"PSNR dB / SSIM, and in brackets the share of the attack's kept entries that are true. "
        f"Learned and regression attacks trained on {result['train_faces_for_learned_attack']} training faces "
        f"(learned: {result['learned_steps']} steps of {result['learned_batch']}).",
        "",
        "| k'/k (k') | scheme | key holder | " + " | ".join(names) + " | best attack | below key holder | target met |",
        "|---|---|---|" + "---|" * len(names) + "---|---|---|",
    ]
    for row in result["rows"]:
        best = row["attacks"][row["best_attack"]]
        attacks = [attack_cell(row["attacks"].get(n)) for n in names]
        lines.append(
            f"| {row['ratio']} ({row['k_prime']}) | {scheme_name(row)} | {cell(row['key_holder'])} | "
            + " | ".join(attacks)
            + f" | {row['best_attack']}: {best['psnr']:.2f} | {row['key_holder']['psnr'] - best['psnr']:.2f} dB | "
            f"{'yes' if row['meets_target'] else 'no'} |"
        )
    chances = {r["k_prime"]: r["chance"] for r in result["rows"]}
    lines += ["", "Chance support recovery is k/k': " + ", ".join(f"k'={kp}: {100 * c:.1f}%" for kp, c in chances.items()) + "."]
    buggy, costs = result["buggy_decoys"], result["value_bits_cost"]
    lines += [
        "",
        f"Report's buggy decoys (m/k-scaled, k' = {buggy['k_prime']}): decode as is {cell(buggy['decode as is'])}; "
        f"keep the k smallest magnitudes {cell(buggy['magnitude (smallest)'])}, "
        f"{100 * buggy['magnitude (smallest)']['support_recovery']:.1f}% of kept entries true (chance {100 * buggy['chance']:.0f}%).",
        "",
        "Key holder by fraction of the key: "
        + ", ".join(f"{fraction}: {cell(s)}" for fraction, s in result["key_holder_fractions"].items())
        + ".",
        "",
        "Stored value width (key holder, k' = code_dim): "
        + ", ".join(f"{bits}-bit {cell(s)} ({s['public_bytes_per_face']} B public code per face)" for bits, s in costs.items())
        + f"; 8-bit costs {costs['16']['psnr'] - costs['8']['psnr']:.3f} dB.",
        "",
        f"Mean face: {cell(floor)}. Target: best attack <= key holder - {MARGIN_DB:g} dB and <= mean face + {MEAN_FACE_SLACK_DB:g} dB "
        f"({floor['psnr'] + MEAN_FACE_SLACK_DB:.2f} dB).",
    ]
    return "\n".join(lines) + "\n"


def chart(result: dict) -> go.Figure:
    """Attack PSNR against k'/k, one panel without and one with the permutation; key holder and mean face as lines."""
    schemes = list(dict.fromkeys(scheme_name(row) for row in result["rows"]))
    figure = make_subplots(rows=1, cols=len(schemes), subplot_titles=schemes, shared_yaxes=True)
    floor = result["mean_face"]["psnr"]
    for col, scheme in enumerate(schemes, start=1):
        rows = [row for row in result["rows"] if scheme_name(row) == scheme]
        x = [f"{row['ratio']} ({row['k_prime']})" for row in rows]
        for name in dict.fromkeys(n for row in rows for n in row["attacks"]):
            y = [row["attacks"][name]["psnr"] if name in row["attacks"] else None for row in rows]
            figure.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=name, showlegend=col == 1, mode="lines+markers"), 1, col)
        holder = float(np.mean([row["key_holder"]["psnr"] for row in rows]))
        lines = ((holder, "key holder", "solid"), (floor, "mean face", "dot"), (floor + MEAN_FACE_SLACK_DB, "target", "dash"))
        for value, text, dash in lines:
            figure.add_hline(y=value, line_dash=dash, annotation_text=text, row=1, col=col)
        figure.update_xaxes(title_text="k'/k (k')", row=1, col=col)
    figure.update_yaxes(title_text="PSNR (dB)", row=1, col=1)
    return figure


def write(result: dict, out: str | Path) -> None:
    write_results(out, "privacy", result, markdown(result), chart(result))


def _ratio(text: str) -> int | str:
    return "full" if text == "full" else int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="assets/model", help="model directory (save_pretrained layout)")
    parser.add_argument("--data", required=True, help="folder of CelebA aligned crops")
    parser.add_argument("--out", default=None, help="where to write the results (default: the model directory)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on the first N test faces only")
    parser.add_argument("--train-limit", type=int, default=2000, help="training faces the learned attack sees")
    parser.add_argument("--learned-steps", type=int, default=300, help="training steps of the learned attack (0: skip it)")
    parser.add_argument("--learned-batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=32, help="true non-zeros per group")
    parser.add_argument("--ratios", nargs="+", type=_ratio, default=list(RATIOS), help="k'/k values; 'full' fills every position")
    parser.add_argument("--value-bits", type=int, choices=(8, 16), default=16)
    parser.add_argument("--no-regression", action="store_true", help="skip the ridge-regression attack")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = SparseAutoencoder.from_pretrained(args.model, strict=True)
    result = run(
        model, args.data, limit=args.limit, train_limit=args.train_limit, k=args.k, ratios=args.ratios,
        value_bits=args.value_bits, regression=not args.no_regression, learned_steps=args.learned_steps,
        learned_batch=args.learned_batch, seed=args.seed, cache_dir=args.cache_dir, log=lambda message: print(message, flush=True),
    )  # fmt: skip
    write(result, args.out or args.model)
    print(markdown(result))
    print(f"evaluated in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
