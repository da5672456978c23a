"""Uploaded files live only as long as the request that reads them.

Gradio writes every upload into its cache folder (`GRADIO_TEMP_DIR`, default `<tmp>/gradio`) as
`<folder>/<content hash>/<name>` and keeps it until `delete_cache` sweeps the folder, minutes later. The handlers
read an upload into memory and then `discard` it, so a visitor's photo or key is gone from disk when the request
returns. Gradio caches the bundled example photos at the same kind of path and serves them to every visitor, so
files with an example's content are kept; so is anything outside the upload folder (a path a test or script passes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from gradio.processing_utils import hash_bytes
from gradio.utils import get_upload_folder


def content_key(data: bytes) -> str:
    """Gradio's own name for the folder an upload of these bytes lands in (sha256 of its install seed and the bytes)."""
    return hash_bytes(data)


class Uploads:
    """Reads uploads and removes them from Gradio's upload folder once read."""

    def __init__(self, folder: str | Path | None = None, keep: Iterable[Path] = ()):
        self.folder = Path(folder or get_upload_folder()).resolve()
        self.keep = {content_key(Path(path).read_bytes()) for path in keep}

    def owns(self, path: str | Path) -> bool:
        """Whether `path` lies inside the upload folder (only such files are ever deleted)."""
        return Path(path).resolve().is_relative_to(self.folder)

    def key_hint(self, path: str | Path) -> str | None:
        """For an upload already read and deleted: the content key its folder name claims, else None.

        Two visitors uploading identical bytes share one path; whichever request runs second finds the file gone. The
        folder name is Gradio's content hash, so a cache entry under that key holds exactly these bytes' result. Were
        Gradio to name folders otherwise, no key would match and the visitor is asked to upload again.
        """
        return Path(path).resolve().parent.name if self.owns(path) else None

    def take(self, path: str | Path) -> bytes | None:
        """Read an uploaded file and delete it (unless kept); None when it is already gone."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return None
        self.discard(path, data)
        return data

    def discard(self, path: str | Path, data: bytes) -> bool:
        """Delete an upload that has been read (and its folder once empty); True when something was deleted."""
        file = Path(path).resolve()
        if not self.owns(file) or content_key(data) in self.keep:
            return False
        existed = file.exists()
        file.unlink(missing_ok=True)
        if file.parent != self.folder:
            with contextlib.suppress(OSError):  # not empty (another upload with the same content) or already gone
                file.parent.rmdir()
        return existed
