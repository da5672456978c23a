"""Errors as one line for a person: what every tool, the loader and the app show instead of a traceback."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """An exception as one line: a missing or unreadable file by its name, else the first line of its text, else its
    class name."""
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"no such file: {error.filename}"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error.__class__.__name__}"
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__
