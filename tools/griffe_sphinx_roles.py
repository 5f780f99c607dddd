"""A Griffe extension for the documentation site (mkdocs.yml): the docstrings write names as
Sphinx roles (:class:`Net`, :func:`run_packets`), which MkDocs would show as they are; this
turns each into a code span (`Net`) before mkdocstrings renders the docstring."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj|const):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(r"`\1`", obj.docstring.value)
