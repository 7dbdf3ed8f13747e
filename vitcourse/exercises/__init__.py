"""Student copies of the chapters (`student`), grading of submitted notebooks (`grade`), and the
notebook parsing both share (`notebook`).

Kept light on import: a student copy's top-level stubs do ``from vitcourse.exercises import
unanswered``, which must not pull in nbformat or nbclient.
"""
from ..checks._core import Unanswered, unanswered

__all__ = ["Unanswered", "unanswered"]
