"""What every exercise check is built from: a decorator that names the exercise and turns the
student's `NotImplementedError` into a pointer to it, and comparisons that say in plain words what
is wrong (which quantity, expected vs got, where and by how much). The messages come in the
chapter's language (`vitcourse.i18n`): each is an English template translated before its fields
are filled."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..i18n import PASSED, _


class ExerciseError(AssertionError):
    """The student's answer is wrong; the message says how."""


DIFFICULTIES = ("easy", "medium", "hard")
_ID_PATTERN = re.compile(r"^\d\d\.\d+$")


@dataclass(frozen=True)
class ExerciseInfo:
    """What the instructors' table lists about one exercise (see `registered_exercises`)."""

    exercise_id: str  # "01.2": chapter 01, exercise 2
    title: str  # what the student writes, in a few words
    difficulty: str | None  # "easy" | "medium" | "hard"; None when the checker does not say
    minutes: int | None  # expected time for a student, in minutes; None when not given
    check: str  # the check function, "module.qualname"


# Every `@exercise` adds its exercise here when its module is imported (the instructors' table and
# the notebook checks read it); the same id from a different function is a mistake.
_REGISTRY: dict[str, ExerciseInfo] = {}


def registered_exercises() -> dict[str, ExerciseInfo]:
    """The exercises of every check module imported so far, by id (a copy)."""
    return dict(_REGISTRY)


class Unanswered:
    """Stands for an answer the student has not written yet, where a stub cannot simply raise.

    Student copies bind a top-level (or class-level) solution's names to one of these, so the
    cell still runs and the chapter after it keeps working; any *use* of the value (calling it,
    arithmetic, comparison, indexing, attribute access, conversion) raises NotImplementedError
    with the exercise's message, and a check that receives it reports the exercise as open.
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        object.__setattr__(self, "message", str(message))

    def _not_implemented(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(object.__getattribute__(self, "message"))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_repr_") or name.startswith("_ipython") or name in {"__wrapped__"}:
            raise AttributeError(name)  # let Jupyter's display machinery fall back to repr
        raise NotImplementedError(object.__getattribute__(self, "message"))

    def __setattr__(self, name: str, value: Any) -> None:
        raise NotImplementedError(self.message)

    def __repr__(self) -> str:
        return f"<unanswered: {self.message}>"

    __str__ = __repr__
    __call__ = __getitem__ = __setitem__ = __iter__ = __len__ = __contains__ = _not_implemented
    __bool__ = __int__ = __float__ = __index__ = __complex__ = _not_implemented
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _not_implemented  # type: ignore
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _not_implemented
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _not_implemented
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __pos__ = __abs__ = _not_implemented
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = __invert__ = _not_implemented
    __lshift__ = __rshift__ = __round__ = __array__ = _not_implemented


def unanswered(message: str) -> Unanswered:
    """A placeholder for an answer not written yet (what student copies put in a top-level stub)."""
    return Unanswered(message)


def _first_unanswered(args: tuple, kwargs: dict) -> Unanswered | None:
    """An `Unanswered` among the arguments, one level into tuples, lists and dicts."""
    values: list[Any] = [*args, *kwargs.values()]
    for value in list(values):
        if isinstance(value, (tuple, list)):
            values.extend(value)
        elif isinstance(value, dict):
            values.extend(value.values())
    for value in values:
        if isinstance(value, Unanswered):
            return value
    return None


def _strip_exercise_prefix(detail: str, exercise_id: str) -> str:
    # Stubs say "Exercise 01.2: ..." themselves; do not repeat the id in the check's message.
    prefix = f"Exercise {exercise_id}:"
    return detail[len(prefix):].strip() if detail.startswith(prefix) else detail


def exercise(exercise_id: str, title: str, *, difficulty: str | None = None,
             minutes: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a check function as the check of exercise `exercise_id` ("01.2").

    The wrapped check raises `ExerciseError` (wrong answer) or `NotImplementedError` (the stub is
    still there, or an `Unanswered` placeholder was passed), and prints a one-line confirmation,
    "Exercise 01.2 passed: <title>.", when the answer is right (the grader looks for that line).

    Args:
        exercise_id: "NN.K": two-digit chapter number, a dot, the exercise's number in the chapter.
        title: what the student writes, in a few words (shown in messages and in the exercise table).
        difficulty: "easy", "medium" or "hard", for the instructors' table.
        minutes: the time a student is expected to need, for the instructors' table.
    """
    if not isinstance(exercise_id, str) or not _ID_PATTERN.match(exercise_id):
        raise ValueError(f"exercise_id must look like '01.2' (two-digit chapter, dot, number), "
                         f"got {exercise_id!r}")
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES} or None, got {difficulty!r}")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int)
                                or minutes <= 0):
        raise ValueError(f"minutes must be a positive int or None, got {minutes!r}")

    def decorate(check: Callable[..., Any]) -> Callable[..., Any]:
        where = f"{check.__module__}.{check.__qualname__}"
        known = _REGISTRY.get(exercise_id)
        if known is not None and known.check != where:
            raise ValueError(f"exercise_id {exercise_id!r} is already checked by {known.check}; "
                             f"{where} needs another id")
        _REGISTRY[exercise_id] = ExerciseInfo(exercise_id, title, difficulty, minutes, where)

        @functools.wraps(check)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                placeholder = _first_unanswered(args, kwargs)
                if placeholder is not None:
                    raise NotImplementedError(placeholder.message)
                check(*args, **kwargs)
            except NotImplementedError as exc:
                detail = _strip_exercise_prefix(str(exc), exercise_id)
                detail = detail or _("the function still raises NotImplementedError")
                raise NotImplementedError(
                    _("Exercise {exercise_id} ({title}) is not implemented yet: {detail}").format(
                        exercise_id=exercise_id, title=_(title), detail=detail)) from None
            except ExerciseError as exc:
                raise ExerciseError(_("Exercise {exercise_id} ({title}): {detail}").format(
                    exercise_id=exercise_id, title=_(title), detail=exc)) from None
            print(_(PASSED).format(exercise_id=exercise_id, title=_(title)))
        run.exercise_id = exercise_id  # type: ignore[attr-defined]
        run.title = title  # type: ignore[attr-defined]
        run.difficulty = difficulty  # type: ignore[attr-defined]
        run.minutes = minutes  # type: ignore[attr-defined]
        return run
    return decorate


def _as_tensor(what: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except Exception:
        raise ExerciseError(_("{what} should be a tensor, got {got}").format(
            what=what, got=type(value).__name__)) from None


def expect_shape(what: str, got: Any, expected: tuple[int, ...]) -> None:
    """`got` (a tensor) has shape `expected`."""
    t = _as_tensor(what, got)
    got_shape, expected = tuple(t.shape), tuple(expected)
    if got_shape != expected:
        hint = ""
        if len(got_shape) >= 2 and got_shape == expected[:-2] + (expected[-1], expected[-2]):
            hint = _(" (the last two axes are swapped: a missing or extra transpose?)")
        elif sorted(got_shape) == sorted(expected):
            hint = _(" (the right sizes in another order: are axes permuted?)")
        raise ExerciseError(_("{what} has the wrong shape: expected {expected}, got {got}{hint}").format(
            what=what, expected=expected, got=got_shape, hint=hint))


def expect_close(what: str, got: Any, expected: torch.Tensor, atol: float = 1e-5,
                 rtol: float = 1e-4) -> None:
    """`got` has `expected`'s shape and values within tolerance; says where and by how much if not."""
    t = _as_tensor(what, got)
    expect_shape(what, t, tuple(expected.shape))
    t = t.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ExerciseError(_("{what} contains NaN or inf (first at index {index})").format(
            what=what, index=tuple(bad)))
    diff = (t - e).abs()
    bad = diff > atol + rtol * e.abs()
    if bad.any():
        first = tuple(bad.nonzero()[0].tolist())
        hint = ""
        if t.dim() >= 2 and t.shape[-1] == t.shape[-2] and torch.allclose(t.transpose(-1, -2), e,
                                                                         atol=atol, rtol=rtol):
            hint = _(" (it equals the transpose of the expected value: are two axes swapped?)")
        raise ExerciseError(_(
            "{what} has wrong values at {wrong} of {total} positions; first at index {first}: "
            "expected {expected:.6g}, got {got:.6g}; largest difference {largest:.3g}{hint}").format(
            what=what, wrong=int(bad.sum()), total=bad.numel(), first=first,
            expected=e[first].item(), got=t[first].item(), largest=diff.max().item(), hint=hint))


def expect_equal(what: str, got: Any, expected: Any) -> None:
    """`got == expected` for plain values (ints, strings, tuples)."""
    if got != expected:
        raise ExerciseError(_("{what} is wrong: expected {expected!r}, got {got!r}").format(
            what=what, expected=expected, got=got))


def expect_true(condition: bool, message: str) -> None:
    """Fail with `message` unless `condition` holds."""
    if not condition:
        raise ExerciseError(message)


def call_student(what: str, student: Callable[..., Any], *args: Any) -> Any:
    """`student(*args)`; a shape error inside the student's code becomes a hint naming `what`,
    not a traceback from inside torch. A stub's NotImplementedError (a subclass of RuntimeError)
    passes through unchanged, so the grader reports the exercise as open."""
    try:
        return student(*args)
    except NotImplementedError:
        raise
    except RuntimeError as exc:  # e.g. "mat1 and mat2 shapes cannot be multiplied"
        raise ExerciseError(_("{what} raised {error}: {detail}; check which axis each step works "
                              "on").format(what=what, error=type(exc).__name__,
                                           detail=str(exc).splitlines()[0])) from None
