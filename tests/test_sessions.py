"""Each session's latest face (sae.app.sessions): recorded per session, None kept as a reset, unknown sessions and
direct calls fall back to the face their request carried, least recently used sessions go first."""

from __future__ import annotations

import pytest

from sae.app.face_cache import FaceRef
from sae.app.sessions import SessionFaces

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


def test_a_handler_records_only_over_the_face_it_started_from():
    """A crop toggle or a model switch that read face A records its result only if A is still the latest: an upload
    recorded meanwhile stays the session's face."""
    faces = SessionFaces()
    faces.record("one", A)
    assert faces.record_if("one", A, C) and faces.latest("one", None) == C
    faces.record("one", B)  # an upload landed while a handler that read C was working
    assert not faces.record_if("one", C, A) and faces.latest("one", None) == B
    assert faces.record_if("stranger", A, C) and faces.latest("stranger", None) == C  # unknown: nothing to protect
    assert faces.record_if(None, A, C) and len(faces) == 2  # a direct call: nothing to remember
