"""Reliability and safety, one module per part of ``docs/reliability.md`` (which names these tests).

A package, so its module names cannot clash with the top-level test files' (``test_secrets``
there, for one) and its shared helpers import as ``.support``.
"""
