r"""Measure both sharing schemes on a model's test split: what the key holder sees, what each attack rebuilds, and
whether a public code can be linked to its photo, to another photo of the person, to a second share, or to attributes.

    python -m sae.cli.privacy_eval --model assets/models/celeba64 --data ../shared/data/celeba10k \
        --identities ../shared/data/celeba10k-identity.txt --labels ../shared/data/utkface200

The attacker knows the model and the scheme and holds faces of their own (the model's training split, never a test
face); every learned attack is trained on public codes the attacker makes of those faces under fresh keys. For each
scheme at the shipped setting (k = DEFAULT_K per group, k' = every position, permuted, 8-bit values):
- reconstruction: the key holder, every attack of `sae.privacy.catalogue` (the inversion MLP included), the mean face;
- linkage (a): the attacker holds the photo (or a JPEG q75 copy of it): level matching and nearest-value distance
  rank the right public code among all test codes;
- identity (b): a different photo of the person (CelebA identities; probes are training photos of people with a test
  photo): Fisherfaces on inverted codes, or sorted values of the attacker's own share of the probe, against the
  ceiling of the true faces and of the key holder's reconstructions under the same method, and chance;
- two shares (c): a second share of each face under a new key, linked back by sorted values; an inversion trained on
  pairs (their common values) against the single-share one;
- attributes (d): coarse image statistics of the inverted faces against the truth (Pearson r), and UTKFace labels
  read off public codes by a linear probe, against the majority rate (and a probe on the true codes as the ceiling);
- the owner's fidelity knob: the key holder at half and a quarter of the key, and what the half-key holder rebuilds
  when it tries to upgrade.
The paper's scheme is also swept over k'/k and its variants (plain, permuted, balanced signs), with the report's broken
decoys for contrast. Writes privacy.json, privacy.md and privacy.html beside the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL
import plotly.graph_objects as go
import torch

from sae.cli.parts import Parts, source_digest
from sae.cli.results import cell, percent, write_results
from sae.core.baselines import decode_jpeg, jpeg_bytes, mean_face
from sae.core.data import dataset_for, dataset_title, load_split, split_paths, to_float, to_uint8, utk_labels
from sae.core.fingerprint import model_id, tensor_digest, weights_digest
from sae.core.inference import decode_batched, sparse_codes
from sae.core.metrics import score
from sae.core.model import SparseAutoencoder
from sae.privacy import catalogue
from sae.privacy.attacks import chance_level, decoy_attack, keep_by_score, magnitude_attack, support_recovery
from sae.privacy.formats import Key, PublicCode, key_nbytes, max_level, public_nbytes
from sae.privacy.learned import fit_inversion, fit_learned_attack, fit_linear_probe, fit_regression_attack, inversion_features
from sae.privacy.linkage import (
    STATISTICS,
    chance_interval,
    coarse_statistics,
    correlations,
    fit_identity_space,
    level_matches,
    majority_rate,
    nearest_distance,
    sorted_distance,
    top_rates,
)
from sae.privacy.scheme import (
    SCHEMES,
    Scheme,
    ambiguate,
    default_k,
    k_prime_for,
    model_positions,
    open_values,
    restrict,
    reveal,
    true_support,
)
from sae.zoo import files

FRACTIONS = (1.0, 0.5, 0.25)
AGE_GROUPS = ((0, 17), (18, 39), (40, 59), (60, 200))
TARGETS = {  # what the keyed default must reach (docs/privacy.md: the targets)
    "linkage_top1": 0.005,
    "attack_over_mean_face_db": 0.5,
    "attribute_r": 0.1,
    "label_points": 2.0,
    "key_holder_db": 0.05,
    "public_extra_bytes": 32,
    "key_extra_bytes": 64,
}
SWEEP = ((2.0, "plain"), (2.0, "permuted"), (2.0, "balanced"), (None, "plain"), (None, "permuted"), (None, "balanced"))
VARIANTS = {"plain": dict(permute=False, signs="anchor"), "permuted": dict(permute=True, signs="anchor"), "balanced": {}}


@dataclass
class Budget:
    """How hard the attacker trains (the defaults are the published table's; tests shrink them)."""

    scorer_steps: int = 300
    scorer_batch: int = 64
    regression_faces: int = 2000  # the ridge regression's dual form is N x N
    inversion_steps: int = 2000
    inversion_batch: int = 128
    inversion_hidden: int = 1024
    probe_faces: int = 8000  # labelled faces the attribute probes train on


@dataclass
class Faces:
    """The test faces, the attacker's own faces, and their k-sparse codes."""

    test: torch.Tensor
    test_sparse: torch.Tensor
    train: torch.Tensor
    train_sparse: torch.Tensor
    mean_face: dict[str, float]
    test_ids: list[int] = field(default_factory=list)  # CelebA identities, when given
    train_ids: list[int] = field(default_factory=list)


# What the figures depend on: a part saved by a run of other code in these is computed again. Read once, when the
# module is imported, so that an edit made while a run is going does not label its parts as the edited code's.
SOURCES = [Path(__file__).parents[1] / "core", Path(__file__).parents[1] / "privacy", Path(__file__)]
SOURCE_DIGEST = source_digest(SOURCES)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _true_values(sparse: torch.Tensor, k: int) -> torch.Tensor:
    return sparse.gather(-1, true_support(sparse, k))


def jpeg_copies(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Each image re-saved as a Pillow JPEG at `quality`: the attacker's copy of a photo that travelled."""
    pixels = to_uint8(images).permute(0, 2, 3, 1).numpy()
    decoded = np.stack([decode_jpeg(jpeg_bytes(image, quality)) for image in pixels])
    return to_float(torch.from_numpy(decoded).permute(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------------
# One scheme at the shipped setting
# ---------------------------------------------------------------------------------------------------


def _attacks(model, faces: Faces, public, key, k: int, fitted: dict, seed: int) -> dict[str, dict]:
    """Every catalogue attack that has what it needs: PSNR/SSIM and, for codes, the share of kept entries that are true."""
    results = {}
    context = catalogue.AttackContext(public, k, model, _generator(seed), fitted, target=faces.test)
    for name, attack in catalogue.ATTACKS.items():
        if not attack.available(fitted):
            continue
        made = attack.run(context)
        if attack.makes == catalogue.CODE:
            results[name] = score(faces.test, decode_batched(model, made)) | {
                "support_recovery": float(support_recovery(made, public, key).mean())
            }
        else:
            results[name] = score(faces.test, made) | {"support_recovery": None}
    return results


def _linkage(model, faces: Faces, public, k: int) -> dict[str, dict]:
    """(a): the attacker holds the photo, or a JPEG q75 copy of it, and ranks every test code."""
    correct = torch.eye(len(faces.test), dtype=torch.bool)
    copies = {"same photo": faces.test_sparse, "JPEG q75 copy": sparse_codes(model, jpeg_copies(faces.test), k)}
    rows = {}
    for copy, sparse in copies.items():
        values = _true_values(sparse, k)
        rows[f"{copy}, level matching"] = top_rates(level_matches(values, public).float(), correct)
        rows[f"{copy}, nearest values"] = top_rates(-nearest_distance(values, public), correct)
    return rows


def _identity(model, faces: Faces, public, scheme_options: dict, k: int, k_prime: int, key_holder: torch.Tensor, inverted, seed: int):
    """(b): probes are training photos of people who also have a test photo; the gallery is every test face's code."""
    test_ids, train_ids = torch.tensor(faces.test_ids), torch.tensor(faces.train_ids)
    wanted = set(faces.test_ids)
    probe_rows = []
    seen = set()
    for row, person in enumerate(faces.train_ids):
        if person in wanted and person not in seen:
            seen.add(person)
            probe_rows.append(row)
    probes = torch.tensor(probe_rows)
    correct = train_ids[probes][:, None] == test_ids[None, :]
    space = fit_identity_space(faces.train, train_ids)
    probe_embedding = space.embed(faces.train[probes])

    def rates(gallery_images: torch.Tensor) -> dict[str, float]:
        return top_rates(probe_embedding @ space.embed(gallery_images).T, correct)

    probe_public, _ = ambiguate(faces.train_sparse[probes], k_prime, _generator(seed + 40), **scheme_options)
    attacks = {
        "inverted code vs probe photo (Fisherfaces)": rates(inverted),
        "own share of the probe (sorted values)": top_rates(-sorted_distance(probe_public, public), correct),
    }
    chance = float(correct.float().mean(1).mean())
    best = max(attacks, key=lambda name: attacks[name]["top1"])
    return {
        "probes": len(probes),
        "chance_top1": chance,
        "chance_interval": chance_interval(chance, len(probes)),
        "ceiling_true_faces": rates(faces.test),
        "ceiling_key_holder": rates(key_holder),
        "attacks": attacks,
        "best_attack": best,
    }


def _attributes(model, inverted: torch.Tensor, faces: Faces, labels: dict | None, scheme_options: dict, k: int, k_prime: int, seed: int):
    """(d): coarse statistics of the inverted faces, and labels read off public codes by a linear probe."""
    result = {"statistics": dict(zip(STATISTICS, correlations(coarse_statistics(inverted), coarse_statistics(faces.test)), strict=True))}
    if labels is None:
        return result
    train_sparse, test_sparse = labels["train_sparse"], labels["test_sparse"]
    train_public, _ = ambiguate(train_sparse, k_prime, _generator(seed + 50), **scheme_options)
    test_public, _ = ambiguate(test_sparse, k_prime, _generator(seed + 51), **scheme_options)
    scale = float(train_public.values.abs().median().clamp_min(1e-6))
    tasks = {}
    for task, (train_labels, test_labels) in labels["tasks"].items():
        probe = fit_linear_probe(inversion_features(train_public, scale), train_labels, _generator(seed + 52))
        ceiling = fit_linear_probe(train_sparse.flatten(1), train_labels, _generator(seed + 53))
        tasks[task] = {
            "accuracy": float((probe.predict(inversion_features(test_public, scale)) == test_labels).float().mean()),
            "ceiling_true_codes": float((ceiling.predict(test_sparse.flatten(1)) == test_labels).float().mean()),
            "majority": majority_rate(train_labels, test_labels),
            "probe_prior": probe.decay is None,  # no fit beat always answering the most common label on held-out faces
            "classes": int(max(int(train_labels.max()), int(test_labels.max())) + 1),
        }
    result["labels"] = tasks
    result["label_faces"] = {"train": len(train_sparse), "test": len(test_sparse)}
    return result


def _seen_by(public: PublicCode, key: Key) -> tuple[PublicCode, torch.Tensor]:
    """The public code as a holder of `key` sees it: in model coordinates (it holds the permutation secret), with the
    values it can read (a keyed code's other entries stay ciphertext: their levels at the scale it can read), as a
    plain code; and its granted entries in that order."""
    values = public.values
    if public.keyed:
        opened, readable = open_values(public, key)
        values = torch.where(readable, opened, public.values * opened.abs().amax(-1, keepdim=True) / max_level(public.value_bits))
    positions, order = torch.sort(model_positions(public, key), dim=-1)
    seen = PublicCode(positions, values.gather(-1, order), public.code_dim, 32, None, False)
    return seen, key.true_mask.gather(-1, order)


def _fractions(model, faces: Faces, public, key, k: int, scorer_plain, seed: int) -> dict:
    """The owner's knob: key holder at each fraction, and a half-key holder's best try at rebuilding more."""
    rows = {}
    for fraction in FRACTIONS:
        granted = key if fraction == 1.0 else restrict(public, key, fraction)
        rows[f"{fraction:g}"] = score(faces.test, decode_batched(model, reveal(public, granted))) | {
            "granted_per_face": granted.granted / len(faces.test)
        }
    half = restrict(public, key, 0.5)
    seen, granted = _seen_by(public, half)
    tries = {"what it grants": score(faces.test, decode_batched(model, reveal(public, half)))}
    random_scores = torch.rand(seen.positions.shape, generator=_generator(seed)).masked_fill(granted, 2.0)
    tries["granted + random others"] = score(faces.test, decode_batched(model, keep_by_score(seen, random_scores, k)))
    if scorer_plain is not None:
        with torch.no_grad():
            logits = scorer_plain(seen).masked_fill(granted, 1e9)
        tries["granted + learned pick of the others"] = score(faces.test, decode_batched(model, keep_by_score(seen, logits, k)))
    best = max((name for name in tries if name != "what it grants"), key=lambda name: tries[name]["psnr"])
    return {"fractions": rows, "half_key_upgrade": tries, "best_upgrade": best}


def evaluate_scheme(
    model: SparseAutoencoder,
    faces: Faces,
    scheme: Scheme,
    k: int,
    budget: Budget,
    labels: dict | None,
    seed: int,
    log: Callable[[str], None],
) -> dict:
    """Everything about one scheme at the shipped setting (k' = every position)."""
    k_prime = k_prime_for(k, model.code_dim)
    options = scheme.options() | {"k": k}
    public, key = ambiguate(faces.test_sparse, k_prime, _generator(seed), model_id=model_id(model), **options)
    holder_images = decode_batched(model, reveal(public, key))
    log(f"{scheme.name}: fitting the learned attacks")
    attacker = faces.train_sparse
    fitted = {
        catalogue.SCORER: fit_learned_attack(
            attacker, k_prime, budget.scorer_steps, _generator(seed + 1), batch_size=budget.scorer_batch, **options
        ),
        catalogue.REGRESSION: fit_regression_attack(
            attacker[: budget.regression_faces], faces.train[: budget.regression_faces], k_prime, _generator(seed + 2), **options
        ),
    }
    inversion_log = []
    fitted[catalogue.INVERSION] = fit_inversion(
        attacker,
        faces.train,
        k_prime,
        budget.inversion_steps,
        _generator(seed + 3),
        batch_size=budget.inversion_batch,
        hidden=budget.inversion_hidden,
        log=lambda step, loss, held: inversion_log.append((step, loss, held)),
        **options,
    )
    log(f"{scheme.name}: attacks")
    attacks = _attacks(model, faces, public, key, k, fitted, seed + 4)
    inverted = fitted[catalogue.INVERSION].predict(public)
    log(f"{scheme.name}: linkage")
    linkage = _linkage(model, faces, public, k)
    second, _ = ambiguate(faces.test_sparse, k_prime, _generator(seed + 5), model_id=model_id(model), **options)
    pair = fit_inversion(
        attacker,
        faces.train,
        k_prime,
        budget.inversion_steps,
        _generator(seed + 6),
        pair=True,
        batch_size=budget.inversion_batch,
        hidden=budget.inversion_hidden,
        **options,
    )
    two_shares = {
        "link": top_rates(-sorted_distance(second, public), torch.eye(len(faces.test), dtype=torch.bool)),
        "pair inversion": score(faces.test, pair.predict(public, second)),
        "single inversion": attacks["inversion"],
    }
    identity = None
    if faces.test_ids:
        log(f"{scheme.name}: identity")
        identity = _identity(model, faces, public, options, k, k_prime, holder_images, inverted, seed + 7)
    log(f"{scheme.name}: attributes and the key fractions")
    attributes = _attributes(model, inverted, faces, labels, options, k, k_prime, seed + 8)
    scorer_plain = None
    if not scheme.keyed:
        plain = options | {"permute": False}
        scorer_plain = fit_learned_attack(
            attacker, k_prime, budget.scorer_steps, _generator(seed + 9), batch_size=budget.scorer_batch, **plain
        )
    fractions = _fractions(model, faces, public, key, k, scorer_plain, seed + 10)
    best = max(attacks, key=lambda name: attacks[name]["psnr"])
    return {
        "scheme": scheme.name,
        "title": scheme.title,
        "k": k,
        "k_prime": k_prime,
        "public_bytes_per_face": public_nbytes(1, model.num_groups, model.code_dim, k_prime, scheme.value_bits, scheme.keyed),
        "key_bytes_per_face": len(_one_face_key(faces, k_prime, options).to_bytes()),
        "key_holder": score(faces.test, holder_images),
        "attacks": attacks,
        "best_attack": best,
        "inversion_training": inversion_log,
        "linkage": linkage,
        "two_shares": two_shares,
        "identity": identity,
        "attributes": attributes,
        **fractions,
    }


def _one_face_key(faces: Faces, k_prime: int, options: dict):
    return ambiguate(faces.test_sparse[:1], k_prime, _generator(0), **options)[1]


# ---------------------------------------------------------------------------------------------------
# The paper's scheme swept over k'/k and its variants, and the report's broken decoys
# ---------------------------------------------------------------------------------------------------


def sweep_row(model: SparseAutoencoder, faces: Faces, ratio: float | None, variant: str, k: int, budget: Budget, seed: int) -> dict:
    """One row of the paper scheme's sweep: the key holder and every attack at k'/k = `ratio` with `variant`'s options."""
    k_prime = k_prime_for(k, model.code_dim, ratio)
    options = SCHEMES["paper"].options() | VARIANTS[variant] | {"k": k}
    public, key = ambiguate(faces.test_sparse, k_prime, _generator(seed), **options)
    fitted = {
        catalogue.SCORER: fit_learned_attack(
            faces.train_sparse, k_prime, budget.scorer_steps, _generator(seed + 1), batch_size=budget.scorer_batch, **options
        ),
        catalogue.REGRESSION: fit_regression_attack(
            faces.train_sparse[: budget.regression_faces], faces.train[: budget.regression_faces], k_prime, _generator(seed + 2), **options
        ),
    }
    attacks = _attacks(model, faces, public, key, k, fitted, seed + 3)
    return {
        "ratio": "full" if ratio is None else f"{ratio:g}",
        "variant": variant,
        "k_prime": k_prime,
        "chance": chance_level(k, k_prime),
        "key_holder": score(faces.test, decode_batched(model, reveal(public, key))),
        "attacks": attacks,
        "best_attack": max(attacks, key=lambda name: attacks[name]["psnr"]),
    }


def buggy_decoys(model: SparseAutoencoder, faces: Faces, k: int, seed: int) -> dict:
    """The report's m/k-scaled decoys at k' = 2k: decode as is, and the one-line smallest-magnitude break."""
    k_prime = min(2 * k, model.code_dim)
    public, key = ambiguate(faces.test_sparse, k_prime, _generator(seed), decoy_values="reference", k=k)
    codes = {"decode as is": decoy_attack(public), "magnitude (smallest)": magnitude_attack(public, k, "smallest")}
    return {"k_prime": k_prime, "chance": chance_level(k, k_prime)} | {
        name: score(faces.test, decode_batched(model, code)) | {"support_recovery": float(support_recovery(code, public, key).mean())}
        for name, code in codes.items()
    }


# ---------------------------------------------------------------------------------------------------
# The whole evaluation
# ---------------------------------------------------------------------------------------------------


def read_identities(path: str | Path) -> dict[str, int]:
    """CelebA identity labels: file name -> person (`000001.jpg 2880` a line)."""
    table = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            table[parts[0]] = int(parts[1])
    return table


def _labelled_faces(model, root: str | Path, k: int, limit: int, cache_dir) -> dict:
    """UTKFace faces at the model's size, their k-sparse codes, and the gender / race / age-group tasks."""

    def labels_of(split: str, count: int | None):
        rows = [utk_labels(path) for path in split_paths(root, split)[:count]]
        age = torch.tensor([next(i for i, (low, high) in enumerate(AGE_GROUPS) if low <= r.age <= high) for r in rows])
        return {"gender": torch.tensor([r.gender for r in rows]), "race": torch.tensor([r.race for r in rows]), "age group": age}

    size = model.image_size
    train = to_float(load_split(root, "train", cache_dir, limit, size))
    test = to_float(load_split(root, "test", cache_dir, None, size))
    train_labels, test_labels = labels_of("train", limit), labels_of("test", None)
    return {
        "train_sparse": sparse_codes(model, train, k),
        "test_sparse": sparse_codes(model, test, k),
        "tasks": {task: (train_labels[task], test_labels[task]) for task in train_labels},
    }


def run_key(model: SparseAutoencoder, faces: Faces, labelled: dict | None, result: dict) -> dict:
    """Whatever decides a run's figures, for `Parts`: the faces, identities and labels as loaded, the model's weights,
    k, budget and seed, the source files (`SOURCE_DIGEST`), the libraries and the thread count."""
    labels = None
    if labelled is not None:
        tasks = labelled["tasks"]
        answers = [answer for name in sorted(tasks) for answer in tasks[name]]
        labels = [sorted(tasks), tensor_digest(labelled["train_sparse"], labelled["test_sparse"], *answers)]
    return {key: result[key] for key in ("dataset", "k", "seed", "budget")} | {
        "model": weights_digest(model),
        "faces": tensor_digest(faces.test, faces.train),
        "identities": hashlib.sha256(json.dumps([faces.test_ids, faces.train_ids]).encode()).hexdigest(),
        "labels": labels,
        "source": SOURCE_DIGEST,
        "libraries": {"torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def run(
    model: SparseAutoencoder,
    data: str | Path,
    *,
    identities: str | Path | None = None,
    labels: str | Path | None = None,
    schemes: tuple[str, ...] = ("keyed", "paper"),
    sweep: bool = True,
    limit: int | None = None,
    train_limit: int | None = None,
    k: int | None = None,
    budget: Budget | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = ".cache",
    log: Callable[[str], None] | None = None,
    fresh: bool = False,
) -> dict:
    """The whole privacy evaluation as a JSON-ready dict. With a `cache_dir`, each part is saved there as it finishes
    and read back by a rerun of the same run (`run_key`) unless `fresh`."""
    start = time.perf_counter()
    log = log or (lambda message: None)
    budget = budget or Budget()
    model.eval()
    k = default_k(model.k_max) if k is None else k
    if not 1 <= k <= model.k_max:
        raise ValueError(f"k must be in [1, k_max={model.k_max}], got {k}")
    size = model.image_size
    test_paths, train_paths = split_paths(data, "test")[:limit], split_paths(data, "train")[:train_limit]
    test = to_float(load_split(data, "test", cache_dir, limit, size))
    train = to_float(load_split(data, "train", cache_dir, train_limit, size))
    faces = Faces(test, sparse_codes(model, test, k), train, sparse_codes(model, train, k), score(test, mean_face(train, len(test))))
    if identities is not None:
        table = read_identities(identities)
        faces.test_ids = [table[path.name] for path in test_paths]
        faces.train_ids = [table[path.name] for path in train_paths]
    labelled = _labelled_faces(model, labels, k, budget.probe_faces, cache_dir) if labels is not None else None
    result = {
        "dataset": dataset_for(data).name,
        "test_faces": len(test),
        "attacker_faces": len(train),
        "k": k,
        "num_groups": model.num_groups,
        "code_dim": model.code_dim,
        "seed": seed,
        "budget": budget.__dict__,
        "mean_face": faces.mean_face,
        "schemes": {},
        "version1_bytes": {
            "public": public_nbytes(1, model.num_groups, model.code_dim, model.code_dim, 8, version=1),
            "key": key_nbytes(1, model.num_groups, k, model.code_dim, permuted=True),
        },
    }
    parts = Parts(Path(cache_dir) / "privacy-parts", run_key(model, faces, labelled, result), fresh) if cache_dir else None

    def part(name: str, compute: Callable[[], dict]) -> dict:
        """One part of the run, read back from `parts` when an earlier run of the same code finished it."""
        log(name)
        if parts is None:
            return json.loads(json.dumps(compute()))  # the same JSON types as a part read back
        done = parts.get(name, compute)
        if parts.reused[-1:] == [name]:
            log(f"{name}: finished by an earlier run, read from {parts.folder}")
        return done

    for name in schemes:
        scheme = SCHEMES[name]
        result["schemes"][name] = part(f"scheme-{name}", lambda s=scheme: evaluate_scheme(model, faces, s, k, budget, labelled, seed, log))
    if sweep:
        result["sweep"] = [
            part(f"sweep-{ratio or 'full'}-{variant}", lambda r=ratio, v=variant: sweep_row(model, faces, r, v, k, budget, seed + 100))
            for ratio, variant in SWEEP
        ]
        result["buggy_decoys"] = part("buggy-decoys", lambda: buggy_decoys(model, faces, k, seed))
    if "keyed" in result["schemes"]:
        result["targets"] = check_targets(result)
    result["seconds"] = time.perf_counter() - start + (parts.reused_seconds if parts else 0.0)
    if parts is not None and parts.reused:
        result["resumed_parts"] = parts.reused  # their seconds are the earlier runs' and count in "seconds"
    return result


def attack_cell(scores: dict | None) -> str:
    """An attack's PSNR / SSIM cell, with the share of true entries it kept where it keeps entries; "-" if not run."""
    if scores is None:
        return "-"
    recovery = "" if scores["support_recovery"] is None else f" ({percent(scores['support_recovery'])})"
    return cell(scores) + recovery


def check_targets(result: dict) -> dict[str, bool]:
    """Whether the keyed scheme meets each target of `TARGETS` (against the paper's scheme where relative)."""
    keyed, floor = result["schemes"]["keyed"], result["mean_face"]["psnr"]
    paper = result["schemes"].get("paper")
    link, over, r = TARGETS["linkage_top1"], TARGETS["attack_over_mean_face_db"], TARGETS["attribute_r"]
    public_extra, key_extra = TARGETS["public_extra_bytes"], TARGETS["key_extra_bytes"]
    checks = {
        f"linkage top-1 <= {link:.1%} (every method and copy)": all(row["top1"] <= link for row in keyed["linkage"].values()),
        f"every attack <= mean face + {over:g} dB": all(a["psnr"] <= floor + over for a in keyed["attacks"].values()),
        f"two shares: link top-1 <= {link:.1%}": keyed["two_shares"]["link"]["top1"] <= link,
        "two shares decode no better than one": keyed["two_shares"]["pair inversion"]["psnr"] <= floor + over,
        f"attribute |r| <= {r:g}": all(abs(value) <= r for value in keyed["attributes"]["statistics"].values()),
        f"public code <= {public_extra} bytes over version 1": keyed["public_bytes_per_face"]
        <= result["version1_bytes"]["public"] + public_extra,
        f"key <= {key_extra} bytes over version 1": keyed["key_bytes_per_face"] <= result["version1_bytes"]["key"] + key_extra,
        "half-key holder cannot upgrade": keyed["half_key_upgrade"][keyed["best_upgrade"]]["psnr"]
        <= keyed["half_key_upgrade"]["what it grants"]["psnr"],
    }
    if keyed["identity"] is not None:
        low, high = keyed["identity"]["chance_interval"]
        checks["identity top-1 within chance's 95% interval"] = all(low <= a["top1"] <= high for a in keyed["identity"]["attacks"].values())
    if "labels" in keyed["attributes"]:
        checks[f"labels within {TARGETS['label_points']:g} points of the majority rate"] = all(
            abs(t["accuracy"] - t["majority"]) * 100 <= TARGETS["label_points"] for t in keyed["attributes"]["labels"].values()
        )
    if paper is not None:
        checks[f"key holder within {TARGETS['key_holder_db']:g} dB of the paper's"] = (
            abs(keyed["key_holder"]["psnr"] - paper["key_holder"]["psnr"]) <= TARGETS["key_holder_db"]
        )
    return checks


# ---------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------


def _rates(r: dict[str, float]) -> str:
    return f"{percent(r['top1'])} / {percent(r['top5'])}"


def markdown(result: dict) -> str:
    """The privacy tables: both schemes side by side, then the sweep of the paper's scheme."""
    schemes = result["schemes"]
    names = list(schemes)
    floor = result["mean_face"]
    header = "| | " + " | ".join(schemes[n]["title"] for n in names) + " |\n|---|" + "---|" * len(names)
    lines = [
        f"Test split: {result['test_faces']} {dataset_title(result['dataset'])} faces at k = {result['k']} per group "
        f"({result['k'] * result['num_groups']} non-zeros), k' = every position ({result['code_dim']}), permuted, 8-bit values. "
        f"The attacker trains on {result['attacker_faces']} faces of the training split under fresh keys. "
        f"Mean face: {cell(floor)}.",
        "",
        "**Reconstruction** (PSNR dB / SSIM; in brackets the share of an attack's kept entries that are true, chance "
        f"{percent(chance_level(result['k'], result['code_dim']))})",
        "",
        header,
        "| key holder | " + " | ".join(cell(schemes[n]["key_holder"]) for n in names) + " |",
    ]
    attack_names = list(dict.fromkeys(a for n in names for a in schemes[n]["attacks"]))
    for attack in attack_names:
        row = []
        for n in names:
            row.append(attack_cell(schemes[n]["attacks"].get(attack)))
        lines.append(f"| {attack} | " + " | ".join(row) + " |")
    lines.append(
        "| best attack - mean face | "
        + " | ".join(
            f"{schemes[n]['attacks'][schemes[n]['best_attack']]['psnr'] - floor['psnr']:+.2f} dB ({schemes[n]['best_attack']})"
            for n in names
        )
        + " |"
    )
    lines += [
        "",
        "**Linkage** (top-1 / top-5 among all test codes; chance "
        f"{percent(1 / result['test_faces'])} / {percent(5 / result['test_faces'])})",
        "",
        header,
    ]
    for row in schemes[names[0]]["linkage"]:
        lines.append(f"| {row} | " + " | ".join(_rates(schemes[n]["linkage"][row]) for n in names) + " |")
    lines.append(
        "| second share of the same face, sorted values | " + " | ".join(_rates(schemes[n]["two_shares"]["link"]) for n in names) + " |"
    )
    lines += ["", "**Two shares of one face** (PSNR dB / SSIM of the inversion)", "", header]
    for row in ("single inversion", "pair inversion"):
        lines.append(f"| {row} | " + " | ".join(cell(schemes[n]["two_shares"][row]) for n in names) + " |")
    if schemes[names[0]]["identity"] is not None:
        first = schemes[names[0]]["identity"]
        low, high = first["chance_interval"]
        lines += [
            "",
            f"**Identity** ({first['probes']} probes: a training photo of a person with a test photo; top-1 / top-5 among the test "
            f"codes; chance {percent(first['chance_top1'])}, its 95% interval {percent(low)}-{percent(high)})",
            "",
            header,
            "| ceiling: the true faces | " + " | ".join(_rates(schemes[n]["identity"]["ceiling_true_faces"]) for n in names) + " |",
            "| ceiling: key holder's faces | " + " | ".join(_rates(schemes[n]["identity"]["ceiling_key_holder"]) for n in names) + " |",
        ]
        for attack in first["attacks"]:
            lines.append(f"| {attack} | " + " | ".join(_rates(schemes[n]["identity"]["attacks"][attack]) for n in names) + " |")
    lines += ["", "**Attributes** (Pearson r of the inverted face's statistic with the truth; label accuracy vs majority rate)", "", header]
    for stat in STATISTICS:
        lines.append(f"| {stat} (r) | " + " | ".join(f"{schemes[n]['attributes']['statistics'][stat]:+.3f}" for n in names) + " |")
    if "labels" in schemes[names[0]]["attributes"]:
        for task in schemes[names[0]]["attributes"]["labels"]:
            cells = []
            for n in names:
                t = schemes[n]["attributes"]["labels"][task]
                prior = "; no fit beat the prior" if t.get("probe_prior") else ""  # older tables did not record it
                ceiling = percent(t["ceiling_true_codes"])
                cells.append(f"{percent(t['accuracy'])} (majority {percent(t['majority'])}{prior}; true codes {ceiling})")
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "**The owner's fidelity knob** (PSNR dB / SSIM; non-zeros granted per face)", "", header]
    for fraction in schemes[names[0]]["fractions"]:
        lines.append(
            f"| key fraction {fraction} | "
            + " | ".join(
                f"{cell(schemes[n]['fractions'][fraction])} ({schemes[n]['fractions'][fraction]['granted_per_face']:.0f})" for n in names
            )
            + " |"
        )
    tries = list(dict.fromkeys(t for n in names for t in schemes[n]["half_key_upgrade"]))
    for attempt in tries:
        lines.append(f"| half key: {attempt} | " + " | ".join(cell(schemes[n]["half_key_upgrade"].get(attempt)) for n in names) + " |")
    lines += [
        "",
        f"**Files** (bytes per face; version 1: public {result['version1_bytes']['public']}, key {result['version1_bytes']['key']})",
        "",
        header,
        "| public code | " + " | ".join(str(schemes[n]["public_bytes_per_face"]) for n in names) + " |",
        "| key | " + " | ".join(str(schemes[n]["key_bytes_per_face"]) for n in names) + " |",
    ]
    if "targets" in result:
        lines += [
            "",
            "**Targets for the keyed scheme**: "
            + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in result["targets"].items())
            + ".",
        ]
    if "sweep" in result:
        lines += _sweep_markdown(result)
    return "\n".join(lines) + "\n"


def _sweep_markdown(result: dict) -> list[str]:
    names = list(dict.fromkeys(a for row in result["sweep"] for a in row["attacks"]))
    lines = [
        "",
        "**The paper's scheme, swept** (values in the clear; PSNR dB / SSIM, in brackets the share of kept entries that are true)",
        "",
        "| k'/k (k') | variant | key holder | " + " | ".join(names) + " | best attack |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for row in result["sweep"]:
        cells = []
        for name in names:
            cells.append(attack_cell(row["attacks"].get(name)))
        best = row["attacks"][row["best_attack"]]
        lines.append(
            f"| {row['ratio']} ({row['k_prime']}) | {row['variant']} | {cell(row['key_holder'])} | "
            + " | ".join(cells)
            + f" | {row['best_attack']}: {best['psnr']:.2f} |"
        )
    buggy = result["buggy_decoys"]
    lines += [
        "",
        f"The report's decoys (m/k-scaled, k' = {buggy['k_prime']}): decode as is {cell(buggy['decode as is'])}; keep the k smallest "
        f"magnitudes {cell(buggy['magnitude (smallest)'])}, {percent(buggy['magnitude (smallest)']['support_recovery'])} of kept entries "
        f"true (chance {percent(buggy['chance'])}).",
    ]
    return lines


def chart(result: dict) -> go.Figure:
    """Best attack, key holder and mean face per scheme; the inversion's held-out loss during training."""
    figure = go.Figure()
    names = list(result["schemes"])
    for measure in ("key holder", "best attack"):
        y = [
            result["schemes"][n]["key_holder"]["psnr"]
            if measure == "key holder"
            else result["schemes"][n]["attacks"][result["schemes"][n]["best_attack"]]["psnr"]
            for n in names
        ]
        figure.add_trace(go.Bar(x=[result["schemes"][n]["title"] for n in names], y=y, name=measure))
    figure.add_hline(y=result["mean_face"]["psnr"], line_dash="dot", annotation_text="mean face")
    figure.update_layout(yaxis_title="PSNR (dB)", barmode="group")
    return figure


def write(result: dict, out: str | Path) -> None:
    """Write privacy.json, .md and .html into `out`."""
    write_results(out, "privacy", result, markdown(result), chart(result))


def main(argv: list[str] | None = None) -> None:
    """Command line: run the privacy evaluation and write its result files."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m sae.cli.privacy_eval", description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", default=str(files.default_model()), help="model directory (save_pretrained layout)")
    parser.add_argument("--data", required=True, help="the model's dataset folder (CelebA or UTKFace)")
    parser.add_argument("--identities", default=None, help="CelebA identity labels (celeba10k-identity.txt) for the identity rows")
    parser.add_argument("--labels", default=None, help="UTKFace folder: gender, race and age labels for the attribute probes")
    parser.add_argument("--out", default=None, help="where to write the results (default: the model directory)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on the first N test faces only")
    parser.add_argument("--train-limit", type=int, default=None, help="attacker's training faces (default: the whole split)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep of the paper's scheme")
    parser.add_argument("--scorer-steps", type=int, default=Budget.scorer_steps)
    parser.add_argument("--inversion-steps", type=int, default=Budget.inversion_steps)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache-dir", default=".cache", help="decoded faces, and each finished part of a run (a rerun of the same run resumes)"
    )
    parser.add_argument("--fresh", action="store_true", help="compute every part again, even one an earlier run saved")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = SparseAutoencoder.from_pretrained(args.model, strict=True)
    budget = Budget(scorer_steps=args.scorer_steps, inversion_steps=args.inversion_steps)
    result = run(
        model,
        args.data,
        identities=args.identities,
        labels=args.labels,
        sweep=not args.no_sweep,
        limit=args.limit,
        train_limit=args.train_limit,
        budget=budget,
        seed=args.seed,
        cache_dir=args.cache_dir,
        log=lambda message: print(message, flush=True),
        fresh=args.fresh,
    )
    write(result, args.out or args.model)
    print(markdown(result))
    print(f"evaluated in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
