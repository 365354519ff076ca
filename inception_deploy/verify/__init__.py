"""Verification: metrics and thresholds, the comparator (runners x inputs -> report), and the
layer-by-layer comparison. The confidence intervals they report live in ``statistics``."""
