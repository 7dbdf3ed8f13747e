"""Helpers shared by the test modules (pytest puts tests/ on sys.path: `from helpers import fails`)."""
from __future__ import annotations

import pytest

from vitcourse.checks import ExerciseError


def fails(check, answer, *fragments: str) -> str:
    """Run `check(answer)`, expect an ExerciseError whose message holds every fragment."""
    with pytest.raises(ExerciseError) as info:
        check(answer)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message
