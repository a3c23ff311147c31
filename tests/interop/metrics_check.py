"""An independent reader of a node's /metrics: Prometheus's own Python client
(`prometheus_client`, PyPI) parses the text twice, with its Prometheus text-format
parser and with its strict OpenMetrics parser, and says what it understood.

Usage: metrics_check.py URL
Prints one JSON object: "content_type", "families" (name -> {"type", "help"}, as the OpenMetrics parser
reads them: the text-format parser, which predates OpenMetrics, takes a counter's
`_total` series for an untyped family of its own) and "samples" (a list of [name,
labels, value]). Exits non-zero if either parser
refuses the text, or the two read different samples.
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families


def samples(families):
    out = []
    for family in families:
        for s in family.samples:
            out.append([s.name, dict(s.labels), float(s.value)])
    return out


def main() -> None:
    with urllib.request.urlopen(sys.argv[1], timeout=20) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode("utf-8")
    families = list(text_string_to_metric_families(text))
    strict = list(openmetrics_families(text))
    plain = samples(families)
    key = lambda s: (s[0], sorted(s[1].items()), s[2])
    if sorted(map(key, plain)) != sorted(map(key, samples(strict))):
        sys.exit("the text-format and OpenMetrics parsers read different samples")
    json.dump(
        {
            "content_type": content_type,
            "families": {
                f.name: {"type": f.type, "help": f.documentation} for f in strict
            },
            "samples": plain,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
