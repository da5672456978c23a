"""Evaluate a model on the CelebA-64 test split against the baselines, at equal non-zero counts.

    python -m sae.cli.evaluate --model assets/model --data ../shared/data/celeba10k [--out DIR]

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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from tqdm import tqdm

from sae.core.baselines import PCA, jpeg_at_size, mean_face
from sae.core.data import load_split, to_float
from sae.core.metrics import psnr, ssim
from sae.core.model import SparseAutoencoder
from sae.core.rate import code_bytes

BUDGETS = (160, 320, 640, 1280, 2560)
BATCH = 250


def score(reference: torch.Tensor, estimate: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM over a batch."""
    return {"psnr": float(np.mean(psnr(reference, estimate))), "ssim": float(np.mean(ssim(reference, estimate)))}


def batched(function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    return torch.cat([function(chunk) for chunk in images.split(BATCH)])


@torch.no_grad()
def evaluate_model(model: SparseAutoencoder, images: torch.Tensor, ks: list[int]) -> dict[int, dict[str, float]]:
    """PSNR/SSIM of the model's reconstruction at each k (codes computed once)."""
    model.eval()
    codes = batched(model.encode, images)
    curve = {}
    for k in tqdm(ks, desc="model k-curve", leave=False):
        curve[k] = score(images, torch.cat([model.decode(model.sparsify(c, k)) for c in codes.split(BATCH)]))
    return curve


def fit_pca_cached(train: torch.Tensor, num_components: int | None, cache_dir: str | None) -> PCA:
    """PCA of the training faces; the fit takes minutes on a CPU, so it is cached beside the data cache."""
    path = Path(cache_dir) / f"pca-{len(train)}-{num_components}.pt" if cache_dir else None
    if path is not None and path.exists():
        return PCA(**torch.load(path, weights_only=True))
    pca = PCA.fit(train, num_components=num_components)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"mean": pca.mean, "components": pca.components}, path)
    return pca


def run(
    model: SparseAutoencoder,
    data: str | Path,
    limit: int | None = None,
    cache_dir: str | None = ".cache",
    budgets: tuple[int, ...] = BUDGETS,
    train_limit: int | None = None,
) -> dict:
    """The whole evaluation as a JSON-ready dict (`train_limit` shrinks the PCA/mean-face fit for quick checks)."""
    start = time.perf_counter()
    test = to_float(load_split(data, "test", cache_dir, limit))
    train = to_float(load_split(data, "train", cache_dir, train_limit))
    groups, code_dim = model.num_groups, model.code_dim
    budgets = [b for b in budgets if 1 <= b // groups <= code_dim]

    beyond = sorted({b // groups for b in budgets if b // groups > model.k_max})  # rows past what the app offers
    scores = evaluate_model(model, test, list(range(1, model.k_max + 1)) + beyond)
    curve = {k: v for k, v in scores.items() if k <= model.k_max}
    pca = fit_pca_cached(train, None, cache_dir)  # all components: "largest n" chooses among every coefficient
    rows = []
    for budget in tqdm(budgets, desc="baselines", leave=False):
        k = budget // groups
        size = code_bytes(groups, code_dim, k)
        jpeg, jpeg_sizes = jpeg_at_size(test, size)
        rows.append(
            {
                "budget": budget,
                "k": k,
                "nonzeros": k * groups,
                "code_bytes": size,
                "offered": k <= model.k_max,
                "model": scores[k],
                "pca_first_n": score(test, pca.first_n(test, budget)),
                "pca_largest_n": score(test, pca.largest_n(test, budget)),
                "jpeg": score(test, jpeg) | {"mean_bytes": float(jpeg_sizes.mean())},
            }
        )
    return {
        "test_faces": len(test),
        "num_groups": groups,
        "code_dim": code_dim,
        "k_max": model.k_max,
        "parameters": sum(p.numel() for p in model.parameters()),
        "mean_face": score(test, mean_face(train, len(test))),
        "rows": rows,
        "curve": [{"k": k, "nonzeros": k * groups} | v for k, v in curve.items()],
        "seconds": time.perf_counter() - start,
    }


def markdown(result: dict) -> str:
    """The results table: PSNR dB / SSIM, at equal non-zero counts (JPEG at equal bytes)."""
    cell = lambda s: f"{s['psnr']:.2f} / {s['ssim']:.3f}"  # noqa: E731
    lines = [
        f"Test split: {result['test_faces']} CelebA-64 faces; PSNR dB / SSIM (data_range=1).",
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


def write_results(out: str | Path, stem: str, result: dict, table: str, figure: go.Figure) -> None:
    """STEM.json (everything), STEM.md (the table) and STEM.html (the chart) in `out`: one layout for every report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (out / f"{stem}.md").write_text(table)
    figure.write_html(out / f"{stem}.html", include_plotlyjs="cdn")


def write(result: dict, out: str | Path) -> None:
    write_results(out, "evaluation", result, markdown(result), chart(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="assets/model", help="model directory (save_pretrained layout)")
    parser.add_argument("--data", required=True, help="folder of CelebA aligned crops")
    parser.add_argument("--out", default=None, help="where to write the results (default: the model directory)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate on the first N test faces only")
    parser.add_argument("--train-limit", type=int, default=None, help="fit PCA and the mean face on the first N training faces")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="total non-zeros per image")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--privacy", action="store_true", help="also write the privacy table (sae.cli.privacy_eval; ~25 min on one core)")
    args = parser.parse_args(argv)
    model = SparseAutoencoder.from_pretrained(args.model, strict=True)
    result = run(model, args.data, args.limit, args.cache_dir, tuple(args.budgets), args.train_limit)
    write(result, args.out or args.model)
    print(markdown(result))
    print(f"evaluated in {result['seconds']:.0f} s")
    if args.privacy:
        from sae.cli import privacy_eval

        privacy = privacy_eval.run(model, args.data, limit=args.limit, cache_dir=args.cache_dir)
        privacy_eval.write(privacy, args.out or args.model)
        print(privacy_eval.markdown(privacy))


if __name__ == "__main__":
    main()
