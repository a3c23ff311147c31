#!/usr/bin/env python3
"""Generate crates/core/data/bank-holidays.json from the PyPI `holidays` package.

Usage (from the repository root, in an environment with `holidays` installed):

    python3 tools/gen-bank-holidays.py [--first 2024] [--last 2030] [--output PATH|-]

The table is read by accord-core's deadline module (include_str!). It lists,
for each calendar that UK election law uses, every public holiday the package
gives for the subdivisions of GB: ENG and WLS (which must agree: they form the
England and Wales calendar), SCT and NIR. Substitute ("observed") days are
included; so are holidays that fall on a weekend, which do no harm because
weekends are never working days. Christmas Eve is not a bank holiday and is not
listed: the deadline rules exclude it themselves.
"""

import argparse
import json
import sys
from pathlib import Path

import holidays

CALENDARS = {
    # calendar name in the JSON -> subdivisions of GB that must all agree
    "england-and-wales": ["ENG", "WLS"],
    "scotland": ["SCT"],
    "northern-ireland": ["NIR"],
}

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "crates/core/data/bank-holidays.json"


def calendar(subdiv, years):
    table = holidays.country_holidays("GB", subdiv=subdiv, years=years, observed=True)
    return [{"date": d.isoformat(), "name": name} for d, name in sorted(table.items())]


def build(first, last):
    years = range(first, last + 1)
    out = {
        "source": {
            "package": "holidays",
            "version": holidays.__version__,
            "generator": "tools/gen-bank-holidays.py",
            "rules": (
                "public holidays of country GB for subdivisions ENG and WLS "
                "(england-and-wales, which must agree), SCT (scotland) and NIR "
                "(northern-ireland), observed=True: substitute days are listed, "
                "as are holidays falling on a weekend; Christmas Eve is not a bank "
                "holiday and is not listed"
            ),
        },
        "years": {"first": first, "last": last},
        "calendars": {},
    }
    for name, subdivs in CALENDARS.items():
        tables = [calendar(s, years) for s in subdivs]
        for s, t in zip(subdivs[1:], tables[1:]):
            if t != tables[0]:
                sys.exit(f"subdivisions {subdivs[0]} and {s} disagree; {name} cannot be one calendar")
        for y in years:
            if not any(e["date"].startswith(f"{y}-") for e in tables[0]):
                sys.exit(f"no holidays for {name} in {y}")
        out["calendars"][name] = tables[0]
    return out


def render(table):
    """JSON with one holiday per line, so that a regenerated table diffs well."""
    lines = ["{"]
    lines.append(f'  "source": {json.dumps(table["source"], ensure_ascii=False)},')
    lines.append(f'  "years": {json.dumps(table["years"])},')
    lines.append('  "calendars": {')
    names = list(table["calendars"])
    for i, name in enumerate(names):
        lines.append(f"    {json.dumps(name)}: [")
        entries = table["calendars"][name]
        for j, entry in enumerate(entries):
            comma = "," if j + 1 < len(entries) else ""
            lines.append(f"      {json.dumps(entry, ensure_ascii=False)}{comma}")
        lines.append("    ]" + ("," if i + 1 < len(names) else ""))
    lines.append("  }")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == table
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=2024)
    parser.add_argument("--last", type=int, default=2030)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="path, or - for stdout")
    args = parser.parse_args()
    if args.first > args.last:
        sys.exit("--first must not be after --last")
    text = render(build(args.first, args.last))
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
