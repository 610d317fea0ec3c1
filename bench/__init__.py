"""Benchmarks that print figures (ratios against baselines measured in the same run).

Run them all with ``python -m bench`` (``--quick`` for a smoke run with tiny sizes).
They are not pass/fail tests.
"""
