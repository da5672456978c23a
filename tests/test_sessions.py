"""Each session's latest face (sae.app.sessions): recorded per session with the view drawn with it, None kept as a
reset, unknown sessions and direct calls fall back to the face their request carried, least recently used sessions go
first."""

from __future__ import annotations

import pytest

from sae.app.face_cache import FaceRef
from sae.app.sessions import Drawn, SessionFaces
from sae.app.settings import ShareSettings

A, B, C = (FaceRef(key, False) for key in ("a", "b", "c"))


def test_the_latest_face_of_each_session():
    faces = SessionFaces()
    faces.record("one", A)
    faces.record("two", B)
    faces.record("one", C)
    assert faces.latest("one", A) == C and faces.latest("two", None) == B and len(faces) == 2


def test_a_reset_is_remembered_and_unknown_sessions_keep_what_they_carried():
    faces = SessionFaces()
    faces.record("one", None)
    assert faces.latest("one", A) is None  # the view was reset after the request left the page
    assert faces.latest("stranger", A) == A and faces.latest(None, B) == B
    faces.record(None, C)  # a direct call has no session to remember
    assert len(faces) == 1


def test_the_least_recently_used_session_goes_first():
    faces = SessionFaces(capacity=2)
    faces.record("one", A)
    faces.record("two", B)
    assert faces.latest("one", None) == A  # "one" is now the most recent
    faces.record("three", C)
    assert faces.latest("two", A) == A and faces.latest("one", None) == A and faces.latest("three", None) == C  # "two" is gone
    with pytest.raises(ValueError, match="at least 1"):
        SessionFaces(capacity=0)


def test_the_view_a_face_handler_drew_is_kept_with_its_face():
    faces = SessionFaces()
    drawn = Drawn(A, "model", ShareSettings(k=4))
    faces.record("one", A, drawn)
    assert faces.drawn("one") == Drawn(A, "model", ShareSettings(k=4)) != Drawn(A, "model", ShareSettings(k=5))
    faces.record("one", B)  # a face without a recorded view (a reset, or a direct call's)
    assert faces.drawn("one") is None and faces.latest("one", None) == B
    assert faces.drawn("stranger") is None and faces.drawn(None) is None
