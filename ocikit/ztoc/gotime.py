"""Go's ``time.Time.MarshalText`` for Unix times, as SOCI stores ``mod_time``.

SOCI writes each entry's modification time with Go's RFC 3339 text form
(``2006-01-02T15:04:05.999999999Z07:00``: fraction only when non-zero, trailing zeros
trimmed). The vectors were built in UTC, so ocikit always writes the ``Z`` zone. Go's
``MarshalText`` fails outside years 0–9999 and SOCI ignores that error, storing an empty
string; so does this function. Python's ``datetime`` stops at year 1, hence the small
civil-calendar conversion below.
"""

from __future__ import annotations

import re

_SECONDS_PER_DAY = 86400


def unix_to_rfc3339(seconds: int, nanos: int = 0) -> str:
    """``seconds``/``nanos`` since the epoch as Go's ``MarshalText`` in UTC ('' if out of range)."""
    seconds += nanos // 1_000_000_000
    nanos %= 1_000_000_000
    days, rest = divmod(seconds, _SECONDS_PER_DAY)
    year, month, day = _civil_from_days(days)
    if not 0 <= year <= 9999:
        return ""
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    # Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, exact for any int).
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def rfc3339_to_unix(text: str) -> tuple[int, int]:
    """The inverse of :func:`unix_to_rfc3339` for the texts zTOCs hold: (seconds, nanoseconds).

    Any zone offset is honoured; "" (a time Go could not format) and malformed text give (0, 0).
    """
    match = re.fullmatch(r"(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return 0, 0
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    nanos = int((match.group(7) or "").ljust(9, "0") or 0)
    zone = match.group(8)
    offset = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    days = _days_from_civil(year, month, day)
    return days * _SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset, nanos


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Howard Hinnant's civil-to-days algorithm, the inverse of _civil_from_days.
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
