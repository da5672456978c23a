"""Each visitor session's latest face, as the handlers that load a face left it.

Gradio reads a session's `gr.State` when a request arrives, before the handler waits for a free worker
(`sae.app.gate`): a slider move sent while an upload is being read would draw the previous face, and its answer could
reach the page after the upload's. The upload, whole-image and model handlers record the reference they return here,
and a control change draws the session's latest one instead of the one its request carried. A crop toggle or a model
switch works on the face it read when it started, so it records only if that is still the latest (`record_if`): an
upload that landed meanwhile stays the session's face. Bounded: a session pushed out (least recently used first)
falls back to its request's reference.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sae.app.face_cache import FaceRef

SESSIONS_KEPT = 1024  # far more visitors than a class; each entry is a session id and a FaceRef
_UNKNOWN = object()


class SessionFaces:
    """Session id -> its latest FaceRef (None: the session's view was reset), least recently used out first."""

    def __init__(self, capacity: int = SESSIONS_KEPT):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._refs: OrderedDict[str, FaceRef | None] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, session: str | None, ref: FaceRef | None) -> None:
        """The face a handler just gave `session` (no session: a direct call, nothing to remember)."""
        if session is None:
            return
        with self._lock:
            self._store(session, ref)

    def record_if(self, session: str | None, read: FaceRef | None, ref: FaceRef | None) -> bool:
        """Record `ref` only if the session's latest face is still `read` (what the handler started from) or the
        session is unknown; False when a newer face was recorded meanwhile (nothing changes then)."""
        if session is None:
            return True
        with self._lock:
            if self._refs.get(session, read) != read:
                return False
            self._store(session, ref)
            return True

    def _store(self, session: str, ref: FaceRef | None) -> None:
        self._refs[session] = ref
        self._refs.move_to_end(session)
        while len(self._refs) > self.capacity:
            self._refs.popitem(last=False)

    def latest(self, session: str | None, carried: FaceRef | None) -> FaceRef | None:
        """The session's latest face; `carried` (its request's) when the session is unknown."""
        if session is None:
            return carried
        with self._lock:
            ref = self._refs.get(session, _UNKNOWN)
            if ref is _UNKNOWN:
                return carried
            self._refs.move_to_end(session)
            return ref  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._refs)
