"""The per-image cache: each upload is read, detected and cropped once; each model encodes it once, when first asked.

A session's `gr.State` holds only a `FaceRef` (a content key and which crop); the crops and codes live here, in a
bounded LRU shared by all sessions, so memory does not grow with the number of visitors. Keys are Gradio's content
hash of the uploaded bytes: two visitors share an entry only when they uploaded identical files, so an entry can never
show one visitor another's photo. An evicted entry is a clear "upload it again", never a different face.

An upload is cropped for every served model's framing and size (a UTKFace model frames a face tighter than a CelebA
one), around the face and as the whole image, when it is read: the file is deleted then (`sae.app.uploads`), and a
model switch must still find the photo. A model's codes are made the first time a session looks at the upload with it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image

from sae.app.models import ServedModel
from sae.app.pipeline import EncodedFace, encode_face
from sae.app.uploads import Uploads, content_key
from sae.core.data import preprocess
from sae.core.faces import PhotoError, centre_square, detect_faces, load_photo, locate_face

Extra = TypeVar("Extra")
FACE_CACHE_SIZE = 256
FAILURES_REMEMBERED = 64  # failed uploads whose reason is kept, for a repeated event of the same upload
GONE = "This upload is no longer on the server (uploads are deleted as soon as they are read): upload it again."


@dataclass
class View:
    """One crop of an upload as one model sees it, and what the face finder said."""

    face: EncodedFace
    message: str


@dataclass
class FaceEntry:
    """An upload's crops, keyed by (framing, size, whole image), what the face finder said of each, and the codes of
    each (model, whole image) made so far."""

    crops: dict[tuple[str, int, bool], tuple[torch.Tensor, str]]
    codes: dict[tuple[str, bool], EncodedFace] = field(default_factory=dict)
    extras: dict[tuple[str, bool], object] = field(default_factory=dict)  # what the app derives from each encoded face
    lock: threading.Lock = field(default_factory=threading.Lock)


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
        self._entries: OrderedDict[str, FaceEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None) -> FaceEntry | None:
        with self._lock:
            entry = self._entries.get(key) if key is not None else None
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: FaceEntry) -> FaceEntry:
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
    """Photos -> cached crops and codes: every upload is read once (its file deleted) and cropped once for all models."""

    def __init__(self, models: Iterable[ServedModel], uploads: Uploads, capacity: int = FACE_CACHE_SIZE):
        self.framings = sorted({(served.crop_style, served.model.image_size) for served in models})
        self.uploads = uploads
        self.cache = FaceCache(capacity)
        self._failures: OrderedDict[str, str] = OrderedDict()  # content key -> why that upload could not be used
        self._failures_lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    def __len__(self) -> int:
        return len(self.cache)

    def crops(self, image: Image.Image) -> FaceEntry:
        """Every framing's crop of a photo, around the face and as the whole image's centre square (one detection)."""
        faces = detect_faces(image)
        crops = {}
        for style, size in self.framings:
            found = locate_face(image, style=style, faces=faces)
            crops[(style, size, False)] = (preprocess(image, found.box, size), found.message)
            whole = locate_face(image, whole_image=True)
            crops[(style, size, True)] = (preprocess(image, centre_square(image.size), size), whole.message)
        return FaceEntry(crops)

    def _store(self, key: str, open_image: Callable[[], Image.Image]) -> str:
        if self.cache.get(key) is None:
            self.cache.put(key, self.crops(open_image()))
        return key

    def add(self, photo: str | Path | Image.Image) -> str:
        """The cache key of a photo path (Gradio's upload, deleted once read) or an image object (scripts and tests)."""
        if not isinstance(photo, str | Path):
            image = load_photo(photo)
            key = "pixels-" + hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()
            return self._store(key, lambda: image)
        try:
            data = Path(photo).read_bytes()
        except FileNotFoundError:
            # The same upload was read (and deleted) by an earlier event: its result is cached under this key, or the
            # reason it failed is remembered (the browser can send one upload's change event twice).
            hint = self.uploads.key_hint(photo)
            with self._failures_lock:
                reason = self._failures.get(hint)
            if reason is not None:
                raise PhotoError(reason) from None
            if self.cache.get(hint) is None:
                raise UploadGone(GONE) from None
            return hint
        key = content_key(data)
        try:
            return self._store(key, lambda: load_photo(io.BytesIO(data)))
        except PhotoError as error:
            with self._failures_lock:
                self._failures[key] = str(error)
                while len(self._failures) > FAILURES_REMEMBERED:
                    self._failures.popitem(last=False)
            raise
        finally:  # also for an unreadable file: nothing uploaded outlives the request
            self.uploads.discard(photo, data)

    def _entry(self, ref: FaceRef) -> FaceEntry:
        upload = self.cache.get(ref.key)
        if upload is None:
            raise UploadGone(
                f"This photo is no longer in the server's memory (it keeps the {self.capacity} most recent uploads): upload it again."
            )
        return upload

    def view(self, ref: FaceRef, served: ServedModel) -> View:
        """The cached crop a session refers to, encoded by `served` (once); UploadGone once its entry was evicted."""
        upload = self._entry(ref)
        pixels, message = upload.crops[(served.crop_style, served.model.image_size, ref.whole)]
        with upload.lock:
            face = upload.codes.get((served.name, ref.whole))
            if face is None:
                face = upload.codes[(served.name, ref.whole)] = encode_face(served.model, pixels)
        return View(face, message)

    def extras(self, ref: FaceRef, served: ServedModel, make: Callable[[View], Extra]) -> Extra:
        """What `make` derives from the view of `ref` under `served` (the app's quality curve and reference picture),
        made once per upload, crop and model, and evicted with the upload."""
        upload = self._entry(ref)
        view = self.view(ref, served)
        with upload.lock:
            made = upload.extras.get((served.name, ref.whole))
            if made is None:
                made = upload.extras[(served.name, ref.whole)] = make(view)
        return made
