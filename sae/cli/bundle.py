r"""Turn a training run's best checkpoint into a bundled model directory.

    python -m sae.cli.bundle --run runs/utk128log --stage1 runs/utk128 --data ../shared/data/utkface200 \
        --out assets/models/utkface128 --description "..." --licence "..." [--half]

Relabels each group's code coordinates by how much the training faces use them (`sae.core.ordering`; no
reconstruction changes, and a keyed restricted key's coordinate prefix then holds what matters most), optionally
stores the weights in float16 (halves the file; the evaluation then scores exactly the stored weights), and copies the
run's `train_config.json` and `history.csv` (and the first run's, prefixed `stage1_`) beside them with the data note
(`data.json`). Then run `sae.cli.evaluate`, `sae.cli.fit_attacks`, `sae.cli.privacy_eval` and `sae.cli.card` on it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from sae.core.data import dataset_for, load_split, to_float
from sae.core.model import SparseAutoencoder
from sae.core.ordering import order_codes_by_importance
from sae.privacy.scheme import default_k
from sae.zoo import files
from sae.zoo.files import DataNote


def bundle(
    run: Path, out: Path, data: Path, note: DataNote, stage1: Path | None = None, half: bool = False, limit: int | None = 4000
) -> Path:
    """Write the bundled directory `out` from `run`/best; returns `out`."""
    model = SparseAutoencoder.from_pretrained(run / "best", strict=True).eval()
    faces = to_float(load_split(data, "train", ".cache", limit, model.image_size))
    order_codes_by_importance(model, faces, default_k(model.k_max))
    out.mkdir(parents=True, exist_ok=True)
    (model.half() if half else model).save_pretrained(out)
    for name in (files.TRAIN_CONFIG, files.HISTORY):
        shutil.copy(run / name, out / name)
        if stage1 is not None:
            shutil.copy(stage1 / name, out / f"{files.STAGE1}{name}")
    note.write(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: bundle a run's best checkpoint."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m sae.cli.bundle", description=__doc__, formatter_class=formatter)
    parser.add_argument("--run", type=Path, required=True, help="the training run whose best/ checkpoint is bundled")
    parser.add_argument("--stage1", type=Path, default=None, help="the run it fine-tuned, if any (its config and history are copied too)")
    parser.add_argument("--data", type=Path, required=True, help="the training data (its train split orders the coordinates)")
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")
    parser.add_argument("--description", required=True, help="the data note's one-line description of the training data")
    parser.add_argument("--licence", required=True, help="the licence the weights inherit")
    parser.add_argument("--half", action="store_true", help="store the weights in float16")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    note = DataNote(dataset_for(args.data).name, args.description, args.licence)
    out = bundle(args.run, args.out, args.data, note, args.stage1, args.half)
    size = (out / files.WEIGHTS).stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB of weights{', float16' if args.half else ''})")


if __name__ == "__main__":
    main()
