"""The per-image cache: each upload is detected, cropped and encoded once, then every control change reuses it.

A session's `gr.State` holds only a `FaceRef` (a content key and which crop); the codes live here, in a bounded LRU
shared by all sessions, so memory does not grow with the number of visitors. Keys are Gradio's content hash of the
uploaded bytes: two visitors share an entry only when they uploaded identical files, so an entry can never show one
visitor another's photo. An evicted entry is a clear "upload it again", never a different face.

`FaceStore` is how entries are made: it reads an upload (deleting the file, `sae.app.uploads`), detects, crops and encodes
both crops once, and hands out the cached views. A photo it cannot use raises `PhotoError` with a message for the user.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sae.app.pipeline import EncodedFace, encode_face
from sae.app.uploads import Uploads, content_key
from sae.core.faces import PhotoError, face_input, load_photo, locate_face
from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS


def entry_bytes(num_groups: int, code_dim: int, image_size: int = 64) -> int:
    """Bytes of tensor data in one cache entry, computed from the shapes (not measured): two crops, each a float32
    (1, 3, S, S) model input and its float32 (1, groups, code_dim) dense codes. Python objects add a few hundred bytes;
    a photo without a face holds one crop twice, so half this."""
    return 2 * 4 * (3 * image_size * image_size + num_groups * code_dim)


# The default preset (the bundled model: 20 groups x 128 codes, 64x64 faces): 2 x (49,152 + 10,240) = 118,784 bytes,
# about 0.12 MB an upload, so 256 uploads hold about 30 MB: a class of 30 can try eight photos each before the oldest is
# evicted.
ENTRY_BYTES = entry_bytes(PRESETS["default"]["num_groups"], PRESETS["default"]["code_dim"], PRESETS["default"].get("image_size", 64))
ENTRY_MB = ENTRY_BYTES / 1e6
FACE_CACHE_SIZE = 256
GONE = "This upload is no longer on the server (uploads are deleted as soon as they are read): upload it again."


@dataclass
class View:
    """One crop of an upload (around the face, or the whole image), its codes, and what the face finder said."""

    face: EncodedFace
    message: str


@dataclass
class Upload:
    """Both crops of one upload, so the whole-image toggle never needs the (deleted) file again."""

    views: dict[bool, View] = field(default_factory=dict)  # whole_image -> View


@dataclass(frozen=True)
class FaceRef:
    """What a session's state holds: the cache key of its upload and which crop it is looking at."""

    key: str
    whole: bool


class FaceCache:
    """A thread-safe LRU of uploads (Gradio runs handlers in worker threads), at most `capacity` entries."""

    def __init__(self, capacity: int = FACE_CACHE_SIZE):
        if capacity < 1:
            raise ValueError(f"the face cache needs room for at least one upload, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None) -> Upload | None:
        with self._lock:
            entry = self._entries.get(key) if key is not None else None
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: Upload) -> Upload:
        """Store `entry` (or keep the one a racing request stored first) and evict the least recently used beyond capacity."""
        with self._lock:
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class UploadGone(PhotoError):
    """The upload's file was already read and deleted, or its codes were evicted from the cache: upload it again."""


class FaceStore:
    """Photos -> cached crops and codes: every upload is read once (its file deleted), detected, cropped and encoded once."""

    def __init__(self, model: SparseAutoencoder, uploads: Uploads, capacity: int = FACE_CACHE_SIZE):
        self.model = model
        self.uploads = uploads
        self.cache = FaceCache(capacity)

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    def __len__(self) -> int:
        return len(self.cache)

    def get(self, key: str | None) -> Upload | None:
        return self.cache.get(key)

    def crops(self, image: Image.Image) -> Upload:
        """Both crops of a photo (around the face, and the whole image's centre square), each encoded once."""
        found, whole = locate_face(image), locate_face(image, whole_image=True)
        face = encode_face(self.model, face_input(image, found.box))
        same = whole.box == found.box  # no face found: both are the centre square
        whole_face = face if same else encode_face(self.model, face_input(image, whole.box))
        return Upload({False: View(face, found.message), True: View(whole_face, whole.message)})

    def _store(self, key: str, open_image: Callable[[], Image.Image]) -> str:
        if self.cache.get(key) is None:
            self.cache.put(key, self.crops(open_image()))
        return key

    def add(self, photo) -> str:
        """The cache key of a photo path (Gradio's upload, deleted once read) or an image object (scripts and tests)."""
        if not isinstance(photo, str | Path):
            image = load_photo(photo)
            key = "pixels-" + hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()
            return self._store(key, lambda: image)
        try:
            data = Path(photo).read_bytes()
        except FileNotFoundError:
            # An identical upload by someone else was read (and deleted) first: its result is cached under this key.
            hint = self.uploads.key_hint(photo)
            if self.cache.get(hint) is None:
                raise UploadGone(GONE) from None
            return hint
        try:
            return self._store(content_key(data), lambda: load_photo(io.BytesIO(data)))
        finally:  # also for an unreadable file: nothing uploaded outlives the request
            self.uploads.discard(photo, data)

    def view(self, ref: FaceRef) -> View:
        """The cached crop a session refers to; UploadGone once its entry was evicted."""
        upload = self.cache.get(ref.key)
        if upload is None:
            raise UploadGone(
                f"This photo is no longer in the server's memory (it keeps the {self.capacity} most recent uploads): upload it again."
            )
        return upload.views[ref.whole]
