"""Publish a model directory to the Hugging Face Hub, then pin the commit it prints.

python -m sae.cli.push --repo-id OWNER/NAME [--model assets/models/utkface128] [--private]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sae.zoo import files
from sae.zoo.hub import ModelLoadError, push


def main(argv: list[str] | None = None) -> None:
    """Command line: upload a model directory to the Hub."""
    parser = argparse.ArgumentParser(
        prog="python -m sae.cli.push", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    parser.add_argument("--model", type=Path, default=files.default_model(), help="model directory")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    args = parser.parse_args(argv)
    try:
        commit = push(args.repo_id, args.model, args.private)
    except ModelLoadError as error:
        sys.exit(f"sae.cli.push: {error}")
    print(f"pushed {args.repo_id} at commit {commit}; pin it with SAE_MODEL={args.repo_id}@{commit}")


if __name__ == "__main__":
    main()
