"""An independent reader of Accord's calendar feeds: Python's `icalendar` (PyPI),
which many calendar tools build on, parses a feed and says what it understood.

Usage: ical_check.py URL|FILE
Prints one JSON object: the calendar's properties and, per VEVENT in feed order,
uid, summary, description, location, status, sequence, class, dtstart and dtend
(as UTC ISO 8601 strings) and the TZID their local times were written in (null for
UTC). Exits non-zero if the feed does not parse.
"""
import json
import sys
import urllib.request
from datetime import datetime, timezone

import icalendar


def read(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=20) as response:
            return response.read()
    with open(source, "rb") as f:
        return f.read()


def text(component, name: str):
    value = component.get(name)
    return None if value is None else str(value)


def instant(component, name: str):
    prop = component.get(name)
    if prop is None:
        return None, None
    value = prop.dt
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} {value!r} is not a date-time with a zone")
    tzid = prop.params.get("TZID")
    utc = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc, tzid


def main() -> None:
    calendar = icalendar.Calendar.from_ical(read(sys.argv[1]))
    events = []
    for event in calendar.walk("VEVENT"):
        start, start_tz = instant(event, "DTSTART")
        end, end_tz = instant(event, "DTEND")
        events.append(
            {
                "uid": text(event, "UID"),
                "summary": text(event, "SUMMARY"),
                "description": text(event, "DESCRIPTION"),
                "location": text(event, "LOCATION"),
                "status": text(event, "STATUS"),
                "sequence": int(event.get("SEQUENCE", 0)),
                "class": text(event, "CLASS"),
                "dtstart": start,
                "dtend": end,
                "tzid": start_tz,
                "end_tzid": end_tz,
            }
        )
    out = {
        "version": text(calendar, "VERSION"),
        "name": text(calendar, "X-WR-CALNAME"),
        "timezones": [str(tz.get("TZID")) for tz in calendar.walk("VTIMEZONE")],
        "events": events,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
