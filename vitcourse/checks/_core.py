"""What every exercise check is built from: a decorator that names the exercise and turns the
student's `NotImplementedError` into a pointer to it, and comparisons that say in plain words what
is wrong (which quantity, expected vs got, where and by how much)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch


class ExerciseError(AssertionError):
    """The student's answer is wrong; the message says how."""


def exercise(exercise_id: str, title: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a check function as the check of exercise `exercise_id` ("01.2").

    The wrapped check raises `ExerciseError` (wrong answer) or `NotImplementedError` (the stub is
    still there), and prints a one-line confirmation when the answer is right.
    """
    def decorate(check: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(check)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                check(*args, **kwargs)
            except NotImplementedError as exc:
                detail = str(exc) or "the function still raises NotImplementedError"
                raise NotImplementedError(
                    f"Exercise {exercise_id} ({title}) is not implemented yet: {detail}") from None
            except ExerciseError as exc:
                raise ExerciseError(f"Exercise {exercise_id} ({title}): {exc}") from None
            print(f"Exercise {exercise_id} passed: {title}.")
        run.exercise_id = exercise_id  # type: ignore[attr-defined]
        run.title = title  # type: ignore[attr-defined]
        return run
    return decorate


def _as_tensor(what: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except Exception:
        raise ExerciseError(f"{what} should be a tensor, got {type(value).__name__}") from None


def expect_shape(what: str, got: Any, expected: tuple[int, ...]) -> None:
    """`got` (a tensor) has shape `expected`."""
    t = _as_tensor(what, got)
    if tuple(t.shape) != tuple(expected):
        raise ExerciseError(f"{what} has the wrong shape: expected {tuple(expected)}, got {tuple(t.shape)}")


def expect_close(what: str, got: Any, expected: torch.Tensor, atol: float = 1e-5,
                 rtol: float = 1e-4) -> None:
    """`got` has `expected`'s shape and values within tolerance; says where and by how much if not."""
    t = _as_tensor(what, got)
    expect_shape(what, t, tuple(expected.shape))
    t = t.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ExerciseError(f"{what} contains NaN or inf (first at index {tuple(bad)})")
    diff = (t - e).abs()
    bad = diff > atol + rtol * e.abs()
    if bad.any():
        first = tuple(bad.nonzero()[0].tolist())
        hint = ""
        if t.dim() >= 2 and t.shape[-1] == t.shape[-2] and torch.allclose(t.transpose(-1, -2), e,
                                                                         atol=atol, rtol=rtol):
            hint = " (it equals the transpose of the expected value: are two axes swapped?)"
        raise ExerciseError(
            f"{what} has wrong values at {int(bad.sum())} of {bad.numel()} positions; first at index "
            f"{first}: expected {e[first].item():.6g}, got {t[first].item():.6g}; largest difference "
            f"{diff.max().item():.3g}{hint}")


def expect_equal(what: str, got: Any, expected: Any) -> None:
    """`got == expected` for plain values (ints, strings, tuples)."""
    if got != expected:
        raise ExerciseError(f"{what} is wrong: expected {expected!r}, got {got!r}")


def expect_true(condition: bool, message: str) -> None:
    """Fail with `message` unless `condition` holds."""
    if not condition:
        raise ExerciseError(message)
