"""Imports deferred until used: start-up time a learner's `course check` would wait for.

jsonschema (imported by nbformat) imports the IRI grammar `rfc3987_syntax` eagerly, and
building that grammar costs over a second; it is used only to validate the JSON-schema
formats "iri" and "iri-reference", which a notebook's schema never asks for. A stub that
imports the real module on first use keeps jsonschema's behaviour and saves the second.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

IRI_GRAMMAR = "rfc3987_syntax"


def defer_iri_grammar() -> None:
    """Register a stub for `rfc3987_syntax` that loads the real module when first used."""
    if IRI_GRAMMAR in sys.modules or "jsonschema._format" in sys.modules:
        return  # too late (or already done): nothing to gain
    try:
        if importlib.util.find_spec(IRI_GRAMMAR) is None:
            return  # not installed: jsonschema skips the format as it always did
    except (ImportError, ValueError):
        return
    stub = types.ModuleType(IRI_GRAMMAR, "stands in for rfc3987_syntax until it is used")

    def real():
        """The real module, imported now and put in the stub's place."""
        if sys.modules.get(IRI_GRAMMAR) is stub:
            del sys.modules[IRI_GRAMMAR]
        return importlib.import_module(IRI_GRAMMAR)

    def is_valid_syntax(*args, **kwargs):
        return real().is_valid_syntax(*args, **kwargs)

    def other(name):
        """PEP 562: any other public name loads the module (import's own probes do not)."""
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(real(), name)

    stub.is_valid_syntax, stub.__getattr__ = is_valid_syntax, other
    sys.modules[IRI_GRAMMAR] = stub
