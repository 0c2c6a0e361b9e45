#!/usr/bin/env python
"""Django's command-line utility for Tollgate (same as ``python -m tollgate``)."""

from tollgate.__main__ import main

if __name__ == "__main__":
    main()
