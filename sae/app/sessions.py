"""Each visitor session's latest face, as the handlers that load a face left it, and the view they drew with it.

Gradio reads a session's `gr.State` when a request arrives, before the handler waits for a free worker
(`sae.app.gate`): a slider move sent while an upload is being read would draw the previous face, and its answer could
reach the page after the upload's. The upload, whole-image and model handlers record the reference they return here,
and a control change draws the session's latest one instead of the one its request carried. Bounded: a session pushed
out (least recently used first) falls back to its request's reference.

The page redraws once a face handler's answer has landed, with the controls it shows then; that redraw has nothing to do
when they are the ones the face handler drew with, so the handler records that view too (`Drawn`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from sae.app.face_cache import FaceRef
from sae.app.settings import ShareSettings

SESSIONS_KEPT = 1024  # far more visitors than a class; each entry is a session id and a FaceRef


@dataclass(frozen=True)
class Drawn:
    """The whole view a face handler answered with: which face, under which model, at which settings."""

    ref: FaceRef
    model: str
    settings: ShareSettings


class SessionFaces:
    """Session id -> its latest FaceRef (None: the session's view was reset) and the view drawn with it, least
    recently used out first."""

    def __init__(self, capacity: int = SESSIONS_KEPT):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._refs: OrderedDict[str, tuple[FaceRef | None, Drawn | None]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, session: str | None, ref: FaceRef | None, drawn: Drawn | None = None) -> None:
        """The face a handler just gave `session` and the view it drew (no session: a direct call, nothing to
        remember)."""
        if session is None:
            return
        with self._lock:
            self._refs[session] = (ref, drawn)
            self._refs.move_to_end(session)
            while len(self._refs) > self.capacity:
                self._refs.popitem(last=False)

    def latest(self, session: str | None, carried: FaceRef | None) -> FaceRef | None:
        """The session's latest face; `carried` (its request's) when the session is unknown."""
        if session is None:
            return carried
        with self._lock:
            entry = self._refs.get(session)
            if entry is None:
                return carried
            self._refs.move_to_end(session)
            return entry[0]

    def drawn(self, session: str | None) -> Drawn | None:
        """The view the session's latest face handler drew (None: unknown, or no face)."""
        with self._lock:
            entry = None if session is None else self._refs.get(session)
            return None if entry is None else entry[1]

    def __len__(self) -> int:
        return len(self._refs)
