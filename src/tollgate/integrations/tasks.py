"""Background entry points for integrations (thin: the logic is in the services)."""

from __future__ import annotations
