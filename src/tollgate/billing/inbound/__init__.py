"""Inbound gateway events: the inbox (verify, store once, process in the worker), the webhook view,
and the registry of each gateway's handlers (``handlers.py``)."""
