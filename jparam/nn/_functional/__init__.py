"""Implementation of :mod:`jparam.nn.functional`, split by family (re-exported there)."""
