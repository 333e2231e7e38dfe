"""What people send (form fields, API arguments), checked before it reaches a query.

Gradio passes API arguments through as JSON gives them, so a number may arrive as 3.7, `true`
or a string, and text as a list; each is refused here with a message for the sender.
"""
import re


class InputError(ValueError):
    """Refused input; its message is written for whoever sent it, and nothing was stored."""


SQLITE_MAX = 2**63 - 1


def whole_number(name: str, value, low: int = -SQLITE_MAX - 1, high: int = SQLITE_MAX) -> int:
    """An id, seed or score from a form or an API client. `int()` alone would take 3.7 as 3 and
    True as 1 (a bool is an int to Python), and SQLite cannot store more than 64 bits."""
    number = None
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,30}\s*", value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not low <= number <= high:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
        bounds = f"from {low} to {high}" if high < SQLITE_MAX else f"of at least {low}"
        raise InputError(f"{name} must be a whole number {bounds}, not {shown}")
    return number


def checked_text(name: str, value, max_chars: int) -> str:
    """Free text from a form or an API client, stripped; None is empty, anything else not text
    or over `max_chars` is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text")
    value = value.strip()
    if len(value) > max_chars:
        raise InputError(f"{name} is longer than {max_chars} characters")
    return value
