"""Small validation helpers that turn bad input into clear errors.

Every public function of attnlens checks its arguments up front, so that a mistake
is reported as, for example::

    attnlens._checks.InputValueError: key_padding_mask: expected shape (N, S) = (2, 5), got (2, 4)

and never as a bare shape error from deep inside torch. The helpers here build those
messages: the argument's name first, then what was expected, then what was given.

Shapes are given as a sequence of sizes in which ``None`` means "any size"; in the
message a free size is filled in from the given tensor when the ranks agree (so the
expected and the given shape can be compared side by side) and shown as ``*``
otherwise.

**Exception classes.** The helpers raise :class:`InputValueError` (a bad shape, size,
device or value) and :class:`InputTypeError` (not a tensor, a wrong dtype). The first is
a :class:`ValueError`, the second a :class:`TypeError`, as the messages promise; both are
*also* an :class:`AssertionError` and a :class:`RuntimeError`, the classes that torch
raises for the same mistakes (``F.multi_head_attention_forward`` checks its arguments
with ``AssertionError``, its kernels fail with ``RuntimeError``). Code written around
torch's functions, ``except (AssertionError, RuntimeError)``, therefore still catches
attnlens's errors when attnlens stands in for torch, and new code can catch
``ValueError``/``TypeError``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch

__all__ = [
    "InputTypeError",
    "InputValueError",
    "ShapeSpec",
    "broadcast_shape",
    "check_dtype",
    "check_floating",
    "check_ndim",
    "check_positive_int",
    "check_probability",
    "check_same_device",
    "check_same_dtype",
    "check_shape",
    "check_tensor",
    "format_shape",
]


class InputValueError(ValueError, AssertionError, RuntimeError):
    """A bad shape, size, device or value: a :class:`ValueError`.

    Also an :class:`AssertionError` and a :class:`RuntimeError`, so that code catching
    what :func:`torch.nn.functional.multi_head_attention_forward` raises for the same
    mistake catches it too.
    """


class InputTypeError(TypeError, AssertionError, RuntimeError):
    """Not a tensor, or a dtype that does not fit: a :class:`TypeError`.

    Also an :class:`AssertionError` and a :class:`RuntimeError`, so that code catching
    what :func:`torch.nn.functional.multi_head_attention_forward` raises for the same
    mistake catches it too.
    """


#: One allowed shape: the names of its axes, e.g. ``"N, S"``, and their sizes,
#: e.g. ``(2, 5)``; ``None`` stands for any size.
ShapeSpec = tuple[str, Sequence[int | None]]


def format_shape(shape: Sequence[int | None]) -> str:
    """Write a shape as ``(2, 5)``; a free size (``None``) is written ``*``.

    Parameters
    ----------
    shape : sequence of int or None
        The sizes.

    Returns
    -------
    str
        The shape in parentheses, with a trailing comma for one axis like Python's tuples.

    Examples
    --------
    >>> format_shape((2, 5))
    '(2, 5)'
    >>> format_shape((3,))
    '(3,)'
    >>> format_shape((None, 4))
    '(*, 4)'
    """
    sizes = ["*" if size is None else str(size) for size in shape]
    if len(sizes) == 1:
        return f"({sizes[0]},)"
    return "(" + ", ".join(sizes) + ")"


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """The shape the given shapes broadcast to, or None if they do not broadcast.

    Examples
    --------
    >>> broadcast_shape((2, 1, 5), (3, 1))
    (2, 3, 5)
    >>> broadcast_shape((2, 4), (3,)) is None
    True
    """
    try:
        shape = torch.broadcast_shapes(*shapes)  # type: ignore[no-untyped-call]
    except RuntimeError:
        return None
    return tuple(shape)


def _type_name(x: object) -> str:
    return type(x).__qualname__


def check_tensor(
    name: str,
    x: object,
    *,
    ndim: int | Collection[int] | None = None,
    dtype: torch.dtype | Collection[torch.dtype] | None = None,
    floating: bool = False,
) -> torch.Tensor:
    """Check that ``x`` is a tensor (optionally of a given rank and dtype) and return it.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    x : object
        The value to check.
    ndim : int or collection of int, optional
        The allowed numbers of dimensions.
    dtype : torch.dtype or collection of torch.dtype, optional
        The allowed dtypes.
    floating : bool, default False
        Require a floating-point dtype.

    Returns
    -------
    torch.Tensor
        ``x`` itself, typed as a tensor.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor, or has a dtype that is not allowed.
    ValueError
        If ``x`` has a number of dimensions that is not allowed.

    Examples
    --------
    >>> check_tensor("query", [1.0, 2.0])
    Traceback (most recent call last):
    ...
    attnlens._checks.InputTypeError: query: expected a torch.Tensor, got list
    """
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"{name}: expected a torch.Tensor, got {_type_name(x)}")
    if ndim is not None:
        check_ndim(name, x, ndim)
    if dtype is not None:
        check_dtype(name, x, dtype)
    if floating:
        check_floating(name, x)
    return x


def check_ndim(name: str, x: torch.Tensor, ndim: int | Collection[int], what: str = "") -> None:
    """Check the number of dimensions of ``x``.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    x : torch.Tensor
        The tensor to check.
    ndim : int or collection of int
        The allowed numbers of dimensions.
    what : str, optional
        A description of the allowed shapes added to the message, e.g.
        ``"(L, E) unbatched or (L, N, E) batched"``.

    Raises
    ------
    ValueError
        If ``x.dim()`` is not allowed.

    Examples
    --------
    >>> check_ndim("x", torch.zeros(2, 3, 4, 5), (2, 3), "(L, E) or (N, L, E)")
    Traceback (most recent call last):
    ...
    attnlens._checks.InputValueError: x: expected 2 or 3 dimensions, (L, E) or (N, L, E), got 4 dimensions, shape (2, 3, 4, 5)
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(sorted(ndim))
    if x.dim() in allowed:
        return
    numbers = " or ".join(str(n) for n in allowed)
    unit = "dimension" if allowed == (1,) else "dimensions"
    detail = f", {what}" if what else ""
    raise InputValueError(
        f"{name}: expected {numbers} {unit}{detail}, "
        f"got {x.dim()} dimensions, shape {format_shape(x.shape)}"
    )


def _matches(shape: Sequence[int], expected: Sequence[int | None]) -> bool:
    return len(shape) == len(expected) and all(
        want is None or want == got for want, got in zip(expected, shape, strict=True)
    )


def _describe(spec: ShapeSpec, given: Sequence[int]) -> str:
    dims, expected = spec
    if len(expected) == len(given):
        # Fill free sizes from the given shape so that the two can be compared at a glance.
        expected = [
            got if want is None else want for want, got in zip(expected, given, strict=True)
        ]
    if len(expected) == 1:
        return f"({dims},) = {format_shape(expected)}"
    return f"({dims}) = {format_shape(expected)}"


def check_shape(name: str, x: torch.Tensor, *specs: ShapeSpec, note: str = "") -> int:
    """Check that ``x`` has one of the allowed shapes and say which.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    x : torch.Tensor
        The tensor to check.
    *specs : tuple of (str, sequence of int or None)
        The allowed shapes, each as axis names and sizes, e.g. ``("N, S", (2, 5))``;
        ``None`` is any size.
    note : str, optional
        Added to the message, e.g. where the expected sizes come from.

    Returns
    -------
    int
        The index of the first spec that matches.

    Raises
    ------
    ValueError
        If no spec matches. The message names the argument, every allowed shape
        and the given one.

    Examples
    --------
    >>> check_shape("key_padding_mask", torch.zeros(2, 4), ("N, S", (2, 5)))
    Traceback (most recent call last):
    ...
    attnlens._checks.InputValueError: key_padding_mask: expected shape (N, S) = (2, 5), got (2, 4)
    >>> check_shape("attn_mask", torch.zeros(4, 3, 5), ("L, S", (3, 5)), ("N*H, L, S", (4, 3, 5)))
    1
    """
    for index, (_, expected) in enumerate(specs):
        if _matches(x.shape, expected):
            return index
    options = " or ".join(_describe(spec, x.shape) for spec in specs)
    extra = f" ({note})" if note else ""
    raise InputValueError(f"{name}: expected shape {options}, got {format_shape(x.shape)}{extra}")


def _dtype_list(dtypes: Collection[torch.dtype]) -> str:
    return " or ".join(str(dtype) for dtype in dtypes)


def check_dtype(
    name: str, x: torch.Tensor, dtype: torch.dtype | Collection[torch.dtype], note: str = ""
) -> None:
    """Check that ``x`` has one of the allowed dtypes.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    x : torch.Tensor
        The tensor to check.
    dtype : torch.dtype or collection of torch.dtype
        The allowed dtypes.
    note : str, optional
        Added to the message, e.g. ``"the query's dtype"``.

    Raises
    ------
    TypeError
        If ``x.dtype`` is not allowed.

    Examples
    --------
    >>> check_dtype("attn_mask", torch.zeros(2, dtype=torch.int64), (torch.bool, torch.float32))
    Traceback (most recent call last):
    ...
    attnlens._checks.InputTypeError: attn_mask: expected dtype torch.bool or torch.float32, got torch.int64
    """
    allowed = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
    if x.dtype in allowed:
        return
    extra = f" ({note})" if note else ""
    raise InputTypeError(f"{name}: expected dtype {_dtype_list(allowed)}{extra}, got {x.dtype}")


def check_floating(name: str, x: torch.Tensor) -> None:
    """Check that ``x`` has a floating-point dtype.

    Raises
    ------
    TypeError
        If it has not.
    """
    if not x.is_floating_point():
        raise InputTypeError(f"{name}: expected a floating-point dtype, got {x.dtype}")


def check_same_dtype(name: str, x: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    """Check that ``x`` has the dtype of ``other``.

    Raises
    ------
    TypeError
        If the dtypes differ; the message names both arguments.

    Examples
    --------
    >>> check_same_dtype("key", torch.zeros(1).double(), "query", torch.zeros(1))
    Traceback (most recent call last):
    ...
    attnlens._checks.InputTypeError: key: expected dtype torch.float32 (the dtype of query), got torch.float64
    """
    if x.dtype != other.dtype:
        raise InputTypeError(
            f"{name}: expected dtype {other.dtype} (the dtype of {other_name}), got {x.dtype}"
        )


def check_same_device(name: str, x: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    """Check that ``x`` is on the device of ``other``.

    Raises
    ------
    ValueError
        If the devices differ; the message names both arguments.
    """
    if x.device != other.device:
        raise InputValueError(
            f"{name}: expected device {other.device} (the device of {other_name}), got {x.device}"
        )


def check_positive_int(name: str, value: object) -> int:
    """Check that ``value`` is an int greater than zero and return it.

    ``bool`` is refused although it is a subclass of ``int``.

    Raises
    ------
    TypeError
        If ``value`` is not an int.
    ValueError
        If ``value <= 0``.

    Examples
    --------
    >>> check_positive_int("num_heads", 0)
    Traceback (most recent call last):
    ...
    attnlens._checks.InputValueError: num_heads: expected an int > 0, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name}: expected an int > 0, got {_type_name(value)} {value!r}")
    if value <= 0:
        raise InputValueError(f"{name}: expected an int > 0, got {value}")
    return value


def check_probability(name: str, value: object) -> float:
    """Check that ``value`` is a real number in [0, 1] and return it as a float.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it lies outside [0, 1] (or is NaN).

    Examples
    --------
    >>> check_probability("dropout_p", 1.5)
    Traceback (most recent call last):
    ...
    attnlens._checks.InputValueError: dropout_p: expected a probability in [0, 1], got 1.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(
            f"{name}: expected a float in [0, 1], got {_type_name(value)} {value!r}"
        )
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InputValueError(f"{name}: expected a probability in [0, 1], got {value}")
    return float(value)
