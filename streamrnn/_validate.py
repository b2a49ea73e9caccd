"""Checks of flat keyword configuration: one message per rule (private).

Public through :mod:`streamrnn.utils`. Every check returns the value (as the plain type
it promises) or raises ``ValueError(f"{name} must be ..., got {value!r}")``: a wrong
type is a ``ValueError`` too, so a caller catches one kind of error for bad settings.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_nonneg_int",
    "check_number",
    "check_positive_float",
    "check_positive_int",
]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _or_none(none_ok: bool) -> str:
    return " or None" if none_ok else ""


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None,
              none_ok: bool = False) -> int | None:
    """``value`` as an int if it is an integer (not a bool) in ``[minimum, maximum]``.

    The rule reads "a positive int" for ``minimum=1``, "an int >= 0" for ``minimum=0``,
    else "an int in [a, b]", "an int >= a" or "an int <= b".

    Examples
    --------
    >>> check_int("layers", 2, minimum=1)
    2
    >>> check_int("layers", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: layers must be a positive int, got 0
    >>> check_int("n_fft", 2**30, minimum=1, maximum=2**16)
    Traceback (most recent call last):
    ...
    ValueError: n_fft must be an int in [1, 65536], got 1073741824
    """
    if value is None and none_ok:
        return None
    ok = _is_int(value) and (minimum is None or value >= minimum) and (
        maximum is None or value <= maximum)
    if not ok:
        if maximum is not None:
            rule = f"an int in [{minimum}, {maximum}]" if minimum is not None else \
                f"an int <= {maximum}"
        elif minimum == 1:
            rule = "a positive int"
        elif minimum is not None:
            rule = f"an int >= {minimum}"
        else:
            rule = "an int"
        raise ValueError(f"{name} must be {rule}{_or_none(none_ok)}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value, *, maximum: int | None = None,
                       none_ok: bool = False) -> int | None:
    """``value`` if it is an int >= 1 (see :func:`check_int`).

    Examples
    --------
    >>> check_positive_int("batch", True)
    Traceback (most recent call last):
    ...
    ValueError: batch must be a positive int, got True
    """
    return check_int(name, value, minimum=1, maximum=maximum, none_ok=none_ok)


def check_nonneg_int(name: str, value, *, maximum: int | None = None,
                     none_ok: bool = False) -> int | None:
    """``value`` if it is an int >= 0 (see :func:`check_int`).

    Examples
    --------
    >>> check_nonneg_int("lookahead", -1)
    Traceback (most recent call last):
    ...
    ValueError: lookahead must be an int >= 0, got -1
    """
    return check_int(name, value, minimum=0, maximum=maximum, none_ok=none_ok)


def check_number(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, allow_inf: bool = False,
                 none_ok: bool = False) -> float | None:
    """``value`` as a float if it is a real number (not a bool, not NaN) within bounds.

    Infinities only with ``allow_inf``. The rule names the bounds: "a finite number > 0",
    "a number in [0, 1)", ...

    Examples
    --------
    >>> check_number("holdout", 0.1, low=0.0, high=1.0, high_open=True)
    0.1
    >>> check_number("holdout", 1, low=0.0, high=1.0, high_open=True)
    Traceback (most recent call last):
    ...
    ValueError: holdout must be a number in [0.0, 1.0), got 1
    """
    if value is None and none_ok:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = not math.isnan(v) and (allow_inf or not math.isinf(v))
        ok = ok and (low is None or (v > low if low_open else v >= low))
        ok = ok and (high is None or (v < high if high_open else v <= high))
    if ok:
        return v
    finite = "" if allow_inf else "finite "
    if low is not None and high is not None:
        rule = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        rule = f"a {finite}number {'>' if low_open else '>='} {low}"
    elif high is not None:
        rule = f"a {finite}number {'<' if high_open else '<='} {high}"
    else:
        rule = f"a {finite}number"
    raise ValueError(f"{name} must be {rule}{_or_none(none_ok)}, got {value!r}")


def check_positive_float(name: str, value, *, none_ok: bool = False) -> float | None:
    """``value`` as a float if it is a finite number > 0.

    Examples
    --------
    >>> check_positive_float("lr", 3e-3)
    0.003
    >>> check_positive_float("lr", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: lr must be a positive finite number, got inf
    """
    if value is None and none_ok:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        if math.isfinite(v) and v > 0:
            return v
    raise ValueError(f"{name} must be a positive finite number{_or_none(none_ok)}, "
                     f"got {value!r}")


def check_bool(name: str, value) -> bool:
    """``value`` if it is a bool (``True`` / ``False``, not 0 / 1).

    Examples
    --------
    >>> check_bool("normalize", 1)
    Traceback (most recent call last):
    ...
    ValueError: normalize must be a bool, got 1
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def _same(value, choice) -> bool:
    """Equal, and of the same kind: ``True`` is not ``1``, ``1`` is not ``"1"``."""
    if isinstance(value, bool) != isinstance(choice, bool):
        return False
    if isinstance(value, str) != isinstance(choice, str):
        return False
    try:
        return bool(value == choice)
    except (TypeError, ValueError):  # e.g. an array
        return False


def check_choice(name: str, value, choices, *, none_ok: bool = False):
    """``value`` if it is one of ``choices`` (equal, and a str / bool only to a str / bool).

    Examples
    --------
    >>> check_choice("on_error", "skip", ("raise", "skip"))
    'skip'
    >>> check_choice("on_error", "ignore", ("raise", "skip"))
    Traceback (most recent call last):
    ...
    ValueError: on_error must be one of 'raise' | 'skip', got 'ignore'
    """
    if value is None and none_ok:
        return None
    choices = tuple(choices)
    # equal and of the same kind: True is not 1, 1.0 is not "1"
    if not any(_same(value, c) for c in choices):
        listed = " | ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}{_or_none(none_ok)}, got {value!r}")
    return value
