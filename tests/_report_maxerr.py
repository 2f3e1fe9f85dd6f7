"""pytest plugin: ``PYTHONPATH=tests python -m pytest -n0 -p _report_maxerr ...`` prints the largest
relative mismatch vs torch per layer family (the numbers quoted in docs/layers.md and
docs/layers_attention_rnn.md).

The numbers are collected in the process that runs the tests, so the plugin needs ``-n0``
(pyproject's ``-n auto`` would run them in xdist workers and print an empty table)."""
import sys

import pytest


def pytest_configure(config):
    if (config.getoption("numprocesses", None) or 0) != 0:
        raise pytest.UsageError("-p _report_maxerr needs -n0: under xdist the mismatches are "
                                "recorded in the worker processes, not here")


def _report(title, max_err):
    print(f"\n{title}: largest relative mismatch vs torch (max|a-b| / max|b|) per family:")
    for k in sorted(max_err):
        print(f"  {k:14s} {max_err[k]:.2e}")


def pytest_sessionfinish(session, exitstatus):
    from _fcompare import MAX_ERR

    if MAX_ERR:
        _report("layers (tests/_fcompare.py)", MAX_ERR)
    attention = sys.modules.get("test_attention")
    if attention is not None and attention.MAX_ERR:
        _report("attention / RNN / transformer (tests/test_attention.py)", attention.MAX_ERR)
