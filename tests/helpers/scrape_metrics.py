#!/usr/bin/env python3
"""Scrapes a metrics endpoint and parses it with the Prometheus project's
own Python client (`pip install prometheus-client`), for tests/metrics.rs.

    scrape_metrics.py URL

GETs URL and parses the body with prometheus_client's OpenMetrics parser
(the format the driver serves; the parser refuses anything that is not
valid OpenMetrics: a missing `# EOF`, a counter sample without `_total`,
histogram buckets out of order or without `+Inf`...). Prints one JSON
object: the status, the Content-Type, and every family with its type, unit,
help and samples. Exits 1 with the parser's message when the body is not
valid.
"""

import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

TIMEOUT_SECONDS = 20


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        status = response.status
        content_type = response.headers.get("Content-Type", "")
        body = response.read().decode("utf-8")
    try:
        families = [
            {
                "name": family.name,
                "type": family.type,
                "unit": family.unit,
                "help": family.documentation,
                "samples": [
                    {"name": s.name, "labels": s.labels, "value": s.value}
                    for s in family.samples
                ],
            }
            for family in text_string_to_metric_families(body)
        ]
    except ValueError as e:
        print(f"not valid OpenMetrics: {e}\n{body}", file=sys.stderr)
        return 1
    print(json.dumps({"status": status, "content_type": content_type, "families": families}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
