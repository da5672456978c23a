"""The Markdown file a benchmark writes with `--out`: a title, the command that made it and when, what it measures
(the module's docstring past its usage lines), then its table; and the words its rows use for a target met or missed."""

from __future__ import annotations

import shlex
import time


def command_line(module: str, argv: list[str] | None) -> str:
    """`python -m module` with its arguments, quoted as a shell would need them: how a result file names its command."""
    return " ".join([f"python -m {module}", shlex.join(argv or [])]).rstrip()


def document(title: str, module: str, docstring: str, table: str, argv: list[str]) -> str:
    """The file's text: `docstring`'s third paragraph on (its first line and usage come before) as one paragraph."""
    how = " ".join(docstring.split("\n\n", 2)[2].split())
    stamp = time.strftime("%Y-%m-%dT%H:%M%z")
    return f"# {title}\n\nWritten by `{command_line(module, argv)}` ({stamp}).\n\n{how}\n\n{table}"


def verdict(ratio: float, target: float) -> str:
    """A ratio against its target in words, "met" or "missed", so that rounding to two places never hides a miss."""
    return "met" if ratio <= target else "missed"
