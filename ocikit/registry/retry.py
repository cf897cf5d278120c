"""When and how long to wait before retrying a registry request.

Retried: connection errors and timeouts, 408, 429 and 5xx. Never retried: other 4xx —
a wrong digest or a missing manifest will not fix itself. Delays grow exponentially from
``base_delay``, are capped at ``max_delay`` and jittered (half fixed, half random) so that
many pods starting together do not retry in lockstep. ``Retry-After`` (seconds or an HTTP
date) is honoured up to ``max_retry_after``.
"""

from __future__ import annotations

import email.utils
import random
import time

from ..options import RetryPolicy

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def should_retry_status(status: int) -> bool:
    return status in RETRY_STATUSES


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: str | None = None) -> float:
    """Seconds to sleep before retry number ``attempt`` (1 for the first retry)."""
    if retry_after:
        seconds = parse_retry_after(retry_after)
        if seconds is not None:
            return min(max(seconds, 0.0), policy.max_retry_after)
    delay = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
