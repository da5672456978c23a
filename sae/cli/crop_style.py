"""Measure how a dataset frames a face relative to OpenCV's Haar detection: what `sae.core.faces.CROP_STYLES` holds.

    python -m sae.cli.crop_style --data ../shared/data/celeba10k [--limit 400]
    python -m sae.cli.crop_style --data ../shared/data/utkface200 [--limit 600]

Runs the detector on the dataset's own training crops (upscaled 2x, as small faces need) and prints the medians of the
crop's side in detection sides (scale) and of the crop centre's offset from the detection centre in detection sides
(shift; negative: the crop centre lies above). Applying the inverse to any photo's detection frames its face the way the
dataset's crops do, which is what a model trained on them expects.
"""

from __future__ import annotations

import argparse
import statistics

from PIL import Image

from sae.core.data import dataset_for, split_paths
from sae.core.faces import detect_faces


def measure(data: str, limit: int) -> dict[str, float]:
    """Median scale and shift over the first `limit` training crops with a detection, and how many had one."""
    dataset = dataset_for(data)
    scales, shifts, tried = [], [], 0
    for path in split_paths(data, "train")[:limit]:
        tried += 1
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        box = dataset.crop_box(image.size) or (0, 0, image.width, image.height)
        big = image.resize((2 * image.width, 2 * image.height), Image.Resampling.BICUBIC)
        faces = detect_faces(big)
        if not faces:
            continue
        x, y, w, h = (value / 2 for value in faces[0])
        side = max(w, h)
        scales.append((box[2] - box[0]) / side)
        shifts.append(((box[1] + box[3]) / 2 - (y + h / 2)) / side)
    if not scales:
        raise SystemExit("sae.cli.crop_style: no face was detected in the crops")
    return {"scale": statistics.median(scales), "shift": statistics.median(shifts), "detected": len(scales), "tried": tried}


def main(argv: list[str] | None = None) -> None:
    """Command line: measure a dataset's crop style and print it."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m sae.cli.crop_style", description=__doc__, formatter_class=formatter)
    parser.add_argument("--data", required=True, help="a CelebA or UTKFace folder")
    parser.add_argument("--limit", type=int, default=400, help="training crops to try")
    args = parser.parse_args(argv)
    result = measure(args.data, args.limit)
    print(
        f"{dataset_for(args.data).name}: scale {result['scale']:.2f}, shift {result['shift']:+.2f} "
        f"(medians over {result['detected']} detections in {result['tried']} crops)"
    )


if __name__ == "__main__":
    main()
