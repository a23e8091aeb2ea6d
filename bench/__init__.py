"""Benchmarks of airflow-provider-dataqc against the alternatives (``make bench``, ``python -m bench``).

Benchmarks, not tests: they measure and report, and never fail on a figure. See ``bench/results.md``.
"""
