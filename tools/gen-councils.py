#!/usr/bin/env python3
"""Generate crates/core/data/councils.json from mySociety's UK local authorities table.

Usage (from the repository root; Python 3 standard library only):

    python3 tools/gen-councils.py [--input ../shared/data/uk-local-authorities.csv] [--output PATH|-]

The input is mySociety's "UK Local Authorities (including future)" (dataset
uk_la_future, CC BY 4.0, attribution: mySociety), trimmed to the columns of its
header. The output lists every council, current and past, with its nation, ONS GSS
code, names, dates, and the slugs a Democracy Club ballot id may use for it: the
slug of `nice-name`, of `official-name`, `gov-uk-slug`, and the slugs of each of
`alt-names`, each marked with where it came from. accord-core's council module
compiles the file in (include_str!) and resolves a slug that several councils share
by that origin (nice-name, then official-name, then gov-uk-slug, then alt-names),
then by which of them was in office on polling day, then current before past, then
code. The same input always gives the same bytes.
"""

import argparse
import csv
import json
import re
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT.parent / "shared/data/uk-local-authorities.csv"
DEFAULT_OUTPUT = ROOT / "crates/core/data/councils.json"

NATIONS = {
    "England": "england",
    "Wales": "wales",
    "Scotland": "scotland",
    "Northern Ireland": "northern-ireland",
}

# Where a slug came from, most authoritative first (the order the core prefers).
ORIGINS = ["nice-name", "official-name", "gov-uk-slug", "alt-name"]

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def slugify(text):
    """Django's slugify (which Democracy Club's slugs come from), with `&` read as
    `and`: ASCII-fold, lowercase, drop what is not a letter, digit, space or hyphen,
    and join the words with single hyphens."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = text.lower().replace("&", " and ").replace("_", " ")
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text).strip("-")


def alt_names(field):
    """`alt-names` separates names with a comma not followed by a space: a comma
    followed by a space is part of a name ("Bristol, City of")."""
    return [n for n in re.split(r",(?! )", field) if n.strip()]


def council(row):
    nation = NATIONS.get(row["nation"])
    if nation is None:
        sys.exit(f"{row['local-authority-code']}: unknown nation {row['nation']!r}")
    candidates = [
        ("nice-name", row["nice-name"]),
        ("official-name", row["official-name"]),
        ("gov-uk-slug", row["gov-uk-slug"]),
    ] + [("alt-name", n) for n in alt_names(row["alt-names"])]
    slugs = {}
    for origin, name in candidates:
        slug = slugify(name)
        if SLUG.match(slug) and slug not in slugs:
            slugs[slug] = origin
    return {
        "code": row["local-authority-code"],
        "name": row["nice-name"].strip(),
        "official_name": row["official-name"].strip(),
        "gss": row["gss-code"] or None,
        "nation": nation,
        "type": row["local-authority-type-name"],
        "start": row["start-date"] or None,
        "end": row["end-date"] or None,
        "slugs": slugs,
    }


def build(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    councils = sorted((council(r) for r in rows), key=lambda c: c["code"])
    counts = {}
    for c in councils:
        counts[c["nation"]] = counts.get(c["nation"], 0) + 1
    return {
        "source": {
            "dataset": "mySociety, UK Local Authorities (including future), uk_la_future 1.7.3",
            "url": "https://github.com/mysociety/uk_local_authority_names_and_codes",
            "licence": "CC BY 4.0 (attribution: mySociety)",
            "generator": "tools/gen-councils.py",
            "slug_origins": ORIGINS,
        },
        "counts": dict(sorted(counts.items())),
        "councils": councils,
    }


def render(table):
    # One council per line: diffs stay readable and the file stays small.
    lines = ["{"]
    lines.append(f'  "source": {json.dumps(table["source"], ensure_ascii=False)},')
    lines.append(f'  "counts": {json.dumps(table["counts"])},')
    lines.append('  "councils": [')
    body = [f"    {json.dumps(c, ensure_ascii=False)}" for c in table["councils"]]
    lines.append(",\n".join(body))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input", default=str(DEFAULT_INPUT))
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="path, or - for stdout")
    args = p.parse_args()
    text = render(build(args.input))
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
