"""Verification: metrics and thresholds, the comparator (runners x inputs -> report), and the
statistics of accuracy on labelled images."""
