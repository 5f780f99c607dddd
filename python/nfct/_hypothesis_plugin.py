"""Hypothesis's entry point for nfct (``[project.entry-points.hypothesis]`` in pyproject.toml):
``st.from_type(nfct.Tuple)`` draws :func:`nfct.strategies.tuples`.

Hypothesis calls the hook while it is itself being imported, possibly because
:mod:`nfct.strategies` is being imported: so this module imports neither at load time, and the
strategy is looked up only when ``from_type`` first needs it."""

from __future__ import annotations

from typing import Any


def _tuples(_: type) -> Any:
    from nfct.strategies import tuples

    return tuples()


def _hypothesis_setup_hook() -> None:
    from hypothesis import strategies as st

    from nfct import Tuple

    st.register_type_strategy(Tuple, _tuples)
