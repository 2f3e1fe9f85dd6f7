"""pytest plugin: ``PYTHONPATH=tests python -m pytest -p _report_maxerr ...`` prints the largest
relative mismatch vs torch per layer family (the numbers quoted in docs/layers.md)."""


def pytest_sessionfinish(session, exitstatus):
    from _fcompare import MAX_ERR

    print("\nlargest relative mismatch vs torch (max|a-b| / max|b|) per family:")
    for k in sorted(MAX_ERR):
        print(f"  {k:14s} {MAX_ERR[k]:.2e}")
