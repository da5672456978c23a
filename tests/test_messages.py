"""Errors as one line for a person (sae.core.messages.one_line)."""

from __future__ import annotations

import errno

import pytest

from sae.core.messages import one_line


def test_a_missing_file_is_named():
    error = FileNotFoundError(errno.ENOENT, "No such file or directory", "/tmp/nowhere/key")
    assert one_line(error) == "no such file: /tmp/nowhere/key"


def test_another_os_error_with_a_file_gives_the_file_and_the_reason():
    assert one_line(PermissionError(errno.EACCES, "Permission denied", "/root/key")) == "/root/key: Permission denied"
    assert one_line(IsADirectoryError(errno.EISDIR, "", "some/dir")) == "some/dir: IsADirectoryError"


def test_a_real_missing_file(tmp_path):
    with pytest.raises(OSError) as caught:
        (tmp_path / "absent").read_bytes()
    assert one_line(caught.value) == f"no such file: {tmp_path / 'absent'}"


def test_os_errors_without_a_file_and_other_errors_give_their_first_line():
    assert one_line(OSError("disk full")) == "disk full"
    assert one_line(FileNotFoundError("gone")) == "gone"  # no filename: its text
    assert one_line(ValueError("first line\nsecond line\nthird")) == "first line"
    assert one_line(RuntimeError("\n  padded text  \n")) == "padded text"


@pytest.mark.parametrize("error", [ValueError(), RuntimeError(""), KeyboardInterrupt(), OSError()])
def test_an_empty_message_gives_the_class_name(error):
    assert one_line(error) == error.__class__.__name__


def test_always_a_single_line():
    for error in (ValueError("a\nb"), OSError("a\nb"), KeyError("x\ny"), Exception("\n\nlate text\nmore")):
        assert "\n" not in one_line(error)
