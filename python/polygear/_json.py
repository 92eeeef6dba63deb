"""JSON payloads: the one encoding every polygear language uses (UTF-8 JSON text).

The native module calls these too (``Client.submit_json``, ``Job.json``), so the
encoding is written once.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["decode", "encode"]


def encode(value: Any, what: str = "value") -> bytes:
    """``value`` as compact UTF-8 JSON (``None`` is ``null``). A value JSON cannot
    hold raises ``TypeError`` naming ``what`` and the type (``ValueError`` for a
    circular reference or NaN/Infinity, which JSON has no literal for)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"{what} cannot be encoded as JSON: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{what} cannot be encoded as JSON: {exc}") from exc
    return text.encode("utf-8")


def decode(data: bytes) -> Any:
    """Parses UTF-8 JSON; raises ``ValueError`` (``json.JSONDecodeError`` or
    ``UnicodeDecodeError``) if ``data`` is not (an empty payload is not JSON)."""
    return json.loads(data.decode("utf-8"))
