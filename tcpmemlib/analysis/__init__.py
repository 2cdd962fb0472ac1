"""Analyses that answer the operator's three questions; every function returns frames (and a Verdict)."""
