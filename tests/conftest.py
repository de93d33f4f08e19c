"""Shared test settings and fixtures.

* Hypothesis: no deadline (the first call into torch can be slow), and on CI
  (``CI`` set) a derandomized profile so that runs are reproducible.
  ``HYPOTHESIS_PROFILE=thorough`` runs ten times more examples locally.
* ``float_dtype``: parametrizes a test over float32 and float64.
* ``tol``: ``tol(dtype)`` gives the ``rtol``/``atol`` keyword arguments for
  :func:`torch.testing.assert_close` when comparing two computations of the same
  quantity done in a different order (ours and torch's).
* ``torch_seed``: request it to start a test from ``torch.manual_seed(0)``.
* ``single_thread``: run a test with ``torch.set_num_threads(1)``. Tests on tiny tensors
  run about 3x faster that way on a busy 2-core machine (the intra-op thread pool costs
  more than it gains); use it with
  ``pytestmark = pytest.mark.usefixtures("single_thread")``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
    database=None,
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)

#: The floating dtypes every numerical test covers.
FLOAT_DTYPES = (torch.float32, torch.float64)

_TOLERANCES = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
}


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """rtol/atol for comparing two orderings of the same float computation."""
    return dict(_TOLERANCES[dtype])


@pytest.fixture(params=FLOAT_DTYPES, ids=["float32", "float64"])
def float_dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """float32 and float64."""
    dtype: torch.dtype = request.param
    return dtype


@pytest.fixture(scope="session")
def tol() -> Callable[[torch.dtype], dict[str, float]]:
    """``tol(dtype)`` -> ``{"rtol": ..., "atol": ...}`` for ``assert_close``.

    Session-scoped so that it can be used in Hypothesis tests.
    """
    return tolerance


@pytest.fixture
def torch_seed() -> int:
    """Seed torch's global generator with 0 (and return the seed)."""
    torch.manual_seed(0)
    return 0


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run the test with one intra-op thread, then restore the previous setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
