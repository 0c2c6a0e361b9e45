"""Tollgate: a self-hostable subscription portal."""

__version__ = "0.1.0"
