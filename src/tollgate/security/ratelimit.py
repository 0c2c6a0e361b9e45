"""Rate limits (filled in by the security baseline)."""


def reset_all() -> None:
    return None
