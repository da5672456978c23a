"""Evaluate a model on its dataset's test split against the baselines, at equal non-zero counts.

    python -m sae.cli.evaluate --model assets/models/celeba64 --data ../shared/data/celeba10k [--out DIR]
    python -m sae.cli.evaluate --model assets/models/utkface128 --data ../shared/data/utkface200
    python -m sae.cli.evaluate --model assets/models/celeba64 --data ../shared/data/utkface200 --size 128 --out DIR

Baselines at the model's size on the same faces: PCA of the training split keeping the first n coefficients or
each face's n largest, JPEG at the code's size, the mean face. `--size` evaluates at another size than the model's:
faces go in at the model's size and its reconstructions are scaled (bicubic) to `--size`, the way a 64x64 model's
output is shown larger; the baselines are then fitted at `--size`.

`--baselines FILE` takes the baseline cells (PCA, JPEG, mean face) from an earlier `evaluation.json` (or a model
directory holding one) instead of refitting them: they do not depend on the model, and the PCA of 128x128 faces needs
more memory (over 13 GB) and time than the model's rows. They are reused only if measured on the same test faces (their
digest), at the same size, with as many training faces, and at the same code sizes; the new JSON names the file.

Writes `evaluation.json`, `evaluation.md` (the table the model card carries) and `evaluation.html`
(plotly: PSNR and SSIM against the number of non-zeros). Budgets are total non-zeros per image;
the model uses k = budget // num_groups per group. A budget past the model's k_max (up to code_dim)
still gets a row, marked: the app cannot share such a code privately (no entries are left for decoys),
but the row shows the fidelity the architecture reaches and compares with the report's 2560 row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots
from tqdm import tqdm

from sae.cli.results import cell, write_results
from sae.core.baselines import PCA, jpeg_at_size, mean_face
from sae.core.data import as_float, dataset_for, dataset_title, load_split, split_paths, to_float
from sae.core.fingerprint import tensor_digest
from sae.core.inference import decode_batched, encode_batched
from sae.core.metrics import score
from sae.core.model import SparseAutoencoder
from sae.core.rate import code_bytes
from sae.zoo import files

BUDGETS = (160, 320, 640, 1280, 2560)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, size, size), bicubic with antialiasing, clamped to [0, 1] (identity at the same size)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


@torch.no_grad()
def evaluate_model(model: SparseAutoencoder, images: torch.Tensor, ks: list[int], reference: torch.Tensor | None = None) -> dict:
    """PSNR/SSIM of the model's reconstruction at each k (codes computed once), against `reference` (default: the
    input itself; another size compares the reconstructions scaled to it)."""
    model.eval()
    reference = images if reference is None else reference
    codes = encode_batched(model, images)
    return {
        k: score(reference, resize(decode_batched(model, model.sparsify(codes, k)), reference.shape[-1]))
        for k in tqdm(ks, desc="model k-curve", leave=False)
    }


def fit_pca_cached(train: torch.Tensor, num_components: int | None, cache_dir: str | None, name: str = "celeba64") -> PCA:
    """PCA of the training faces (uint8 or float); the fit takes minutes on a CPU, so it is cached beside the data cache."""
    stem = f"pca-{len(train)}-{num_components}" if name == "celeba64" else f"pca-{name}-{len(train)}-{num_components}"
    path = Path(cache_dir) / f"{stem}.pt" if cache_dir else None
    if path is not None and path.exists():
        return PCA(**torch.load(path, weights_only=True))
    pca = PCA.fit(as_float(train), num_components=num_components)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"mean": pca.mean, "components": pca.components}, path)
    return pca


BASELINE_CELLS = ("pca_first_n", "pca_largest_n", "jpeg")


def fitted_baselines(test: torch.Tensor, train: torch.Tensor, budgets: list[int], nbytes: dict[int, int], pca: PCA) -> dict:
    """The baseline cells of each budget (PCA first n and largest n, JPEG at the code's bytes) and the mean face."""
    cells = {}
    for budget in tqdm(budgets, desc="baselines", leave=False):
        jpeg, jpeg_sizes = jpeg_at_size(test, nbytes[budget])
        cells[budget] = {
            "pca_first_n": score(test, pca.first_n(test, budget)),
            "pca_largest_n": score(test, pca.largest_n(test, budget)),
            "jpeg": score(test, jpeg) | {"mean_bytes": float(jpeg_sizes.mean())},
        }
    return {"rows": cells, "mean_face": score(test, mean_face(train, len(test)))}


def reused_baselines(earlier: dict, faces: dict, nbytes: dict[int, int]) -> dict:
    """The baseline cells of an earlier evaluation.json, after checking they were measured on the same `faces` (dataset,
    size, the test faces' digest, the number of training faces the PCA and mean face were fitted on) and, budget by
    budget, at the same code size (JPEG's byte budget); ValueError naming what differs."""
    missing = [key for key in faces if key not in earlier]
    if missing:
        raise ValueError(f"the baselines file does not record {', '.join(missing)} (it predates --baselines): evaluate without it")
    theirs = {key: earlier[key] for key in faces}
    if theirs != faces:
        differ = ", ".join(f"{key} {theirs[key]} against {faces[key]}" for key in faces if theirs[key] != faces[key])
        raise ValueError(f"the baselines file was measured on other faces: {differ}")
    rows = {row["budget"]: row for row in earlier["rows"]}
    for budget, size_bytes in nbytes.items():
        if budget not in rows or rows[budget]["code_bytes"] != size_bytes:
            found = rows[budget]["code_bytes"] if budget in rows else "no row"
            raise ValueError(f"the baselines file has no row for {budget} non-zeros at {size_bytes} code bytes ({found})")
    return {"rows": {b: {cell: rows[b][cell] for cell in BASELINE_CELLS} for b in nbytes}, "mean_face": earlier["mean_face"]}


def run(
    model: SparseAutoencoder,
    data: str | Path,
    limit: int | None = None,
    cache_dir: str | None = ".cache",
    budgets: tuple[int, ...] = BUDGETS,
    train_limit: int | None = None,
    size: int | None = None,
    curve_step: int = 1,
    baselines: str | Path | None = None,
) -> dict:
    """The whole evaluation as a JSON-ready dict (`train_limit` shrinks the PCA/mean-face fit for quick checks; the
    curve scores every `curve_step`-th k, plus the budgets' k and k_max; `baselines` names an earlier evaluation.json
    whose baseline cells are reused)."""
    start = time.perf_counter()
    size = size or model.image_size
    test = to_float(load_split(data, "test", cache_dir, limit, size))
    inputs = test if size == model.image_size else to_float(load_split(data, "test", cache_dir, limit, model.image_size))
    groups, code_dim = model.num_groups, model.code_dim
    budgets = [b for b in budgets if 1 <= b // groups <= code_dim]
    nbytes = {budget: code_bytes(groups, code_dim, budget // groups) for budget in budgets}
    dataset = dataset_for(data).name
    faces = {
        "dataset": dataset,
        "image_size": size,
        "test_faces": len(test),
        "faces_digest": tensor_digest(test),
        "train_faces": len(split_paths(data, "train")[:train_limit]),
    }
    if baselines is not None:  # checked before the model's rows, which take minutes
        baselines = Path(baselines) / "evaluation.json" if Path(baselines).is_dir() else Path(baselines)
        cells = reused_baselines(json.loads(baselines.read_text()), faces, nbytes)

    offered = set(range(1, model.k_max + 1, curve_step)) | {model.k_max} | {b // groups for b in budgets if b // groups <= model.k_max}
    beyond = sorted({b // groups for b in budgets if b // groups > model.k_max})  # rows past what the app offers
    scores = evaluate_model(model, inputs, sorted(offered) + beyond, test)
    curve = {k: v for k, v in scores.items() if k <= model.k_max}
    if baselines is None:
        train = load_split(data, "train", cache_dir, train_limit, size)  # uint8: as floats a large split takes gigabytes
        pca = fit_pca_cached(train, None, cache_dir, f"{dataset}{size}")  # all components: "largest n" chooses among all
        cells = fitted_baselines(test, train, budgets, nbytes, pca)
    rows = [
        {
            "budget": budget,
            "k": budget // groups,
            "nonzeros": budget // groups * groups,
            "code_bytes": nbytes[budget],
            "offered": budget // groups <= model.k_max,
            "model": scores[budget // groups],
        }
        | cells["rows"][budget]
        for budget in budgets
    ]
    return (
        faces
        | {
            "model_image_size": model.image_size,
            "num_groups": groups,
            "code_dim": code_dim,
            "k_max": model.k_max,
            "parameters": sum(p.numel() for p in model.parameters()),
            "mean_face": cells["mean_face"],
            "rows": rows,
            "curve": [{"k": k, "nonzeros": k * groups} | v for k, v in curve.items()],
            "seconds": time.perf_counter() - start,
        }
        | ({"baselines_from": str(baselines)} if baselines is not None else {})
    )


def markdown(result: dict) -> str:
    """The results table: PSNR dB / SSIM, at equal non-zero counts (JPEG at equal bytes)."""
    lines = [
        f"Test split: {result['test_faces']} {dataset_title(result.get('dataset', 'celeba'))} faces at {result.get('image_size', 64)}x"
        f"{result.get('image_size', 64)}{_scaled(result)}; PSNR dB / SSIM (data_range=1).",
        "",
        "| non-zeros (k per group) | ours | PCA first n | PCA largest n | JPEG at the code's size "
        "| ours - PCA first n | ours - PCA largest n |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        gap = row["model"]["psnr"] - row["pca_first_n"]["psnr"]
        gap_largest = row["model"]["psnr"] - row["pca_largest_n"]["psnr"]
        mark = "" if row.get("offered", True) else "*"
        lines.append(
            f"| {row['nonzeros']} ({row['k']}){mark} | {cell(row['model'])} | {cell(row['pca_first_n'])} | "
            f"{cell(row['pca_largest_n'])} | {cell(row['jpeg'])} ({row['jpeg']['mean_bytes']:.0f} B of {row['code_bytes']} B) | "
            f"{gap:+.2f} dB | {gap_largest:+.2f} dB |"
        )
    lines += ["", f"Mean face: {cell(result['mean_face'])}."]
    if not all(row.get("offered", True) for row in result["rows"]):
        lines += [
            "",
            f"\\* Past the model's k_max ({result['k_max']} of {result['code_dim']} entries per group): the app does not offer it, "
            f"as the denser a code, the fewer entries are left to hide it among decoys (at k = {result['code_dim']}, none); "
            "shown for the fidelity the architecture reaches.",
        ]
    return "\n".join(lines) + "\n"


def _scaled(result: dict) -> str:
    size, native = result.get("image_size", 64), result.get("model_image_size", result.get("image_size", 64))
    return "" if size == native else f" (the model works at {native}x{native}; its reconstructions scaled up, bicubic)"


def chart(result: dict) -> go.Figure:
    """PSNR and SSIM against non-zeros: the model's full k-curve and the baselines' points."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("PSNR (dB)", "SSIM"))
    x = [p["nonzeros"] for p in result["curve"]]
    for col, metric in enumerate(("psnr", "ssim"), start=1):
        figure.add_trace(
            go.Scatter(x=x, y=[p[metric] for p in result["curve"]], name="ours", legendgroup="ours", showlegend=col == 1), 1, col
        )
        beyond = [r for r in result["rows"] if not r.get("offered", True)]
        if beyond:
            figure.add_trace(
                go.Scatter(
                    x=[r["nonzeros"] for r in beyond],
                    y=[r["model"][metric] for r in beyond],
                    name="ours past k_max (not offered)",
                    legendgroup="beyond",
                    showlegend=col == 1,
                    mode="markers",
                ),
                1,
                col,
            )
        for name in ("pca_first_n", "pca_largest_n", "jpeg"):
            figure.add_trace(
                go.Scatter(
                    x=[r["nonzeros"] for r in result["rows"]],
                    y=[r[name][metric] for r in result["rows"]],
                    name=name.replace("_", " "),
                    legendgroup=name,
                    showlegend=col == 1,
                    mode="lines+markers",
                ),
                1,
                col,
            )
        figure.update_xaxes(title_text="non-zeros per image", type="log", row=1, col=col)
    return figure


def write(result: dict, out: str | Path) -> None:
    """Write evaluation.json, .md and .html into `out`."""
    write_results(out, "evaluation", result, markdown(result), chart(result))


def main(argv: list[str] | None = None) -> None:
    """Command line: evaluate a model and write its result files."""
    parser = argparse.ArgumentParser(
        prog="python -m sae.cli.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(files.default_model()), help="model directory (save_pretrained layout)")
    parser.add_argument("--data", required=True, help="a CelebA or UTKFace folder (its test split is evaluated)")
    parser.add_argument("--out", default=None, help="where to write the results (default: the model directory)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on the first N test faces only")
    parser.add_argument("--train-limit", type=int, default=None, help="fit PCA and the mean face on the first N training faces")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="total non-zeros per image")
    parser.add_argument("--size", type=int, default=None, help="evaluate at this size (default: the model's)")
    parser.add_argument("--curve-step", type=int, default=1, help="score every Nth k for the curve (the budgets' k always)")
    parser.add_argument(
        "--baselines", default=None, help="an earlier evaluation.json (or its folder) on the same faces and code sizes: reuse its baselines"
    )
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args(argv)
    model = SparseAutoencoder.from_pretrained(args.model, strict=True)
    result = run(
        model, args.data, args.limit, args.cache_dir, tuple(args.budgets), args.train_limit, args.size, args.curve_step, args.baselines
    )
    write(result, args.out or args.model)
    print(markdown(result))
    print(f"evaluated in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
