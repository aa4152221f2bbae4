#!/usr/bin/python3
"""Parses Prometheus text exposition from stdin with the reference parser
(Debian's python3-prometheus-client) and prints one sample per line:
`name{k=v,...} value`, labels sorted. Exit 1, with the parser's message, if
the text is not valid exposition."""
import sys

from prometheus_client.parser import text_string_to_metric_families

try:
    for family in text_string_to_metric_families(sys.stdin.read()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            print(f"{s.name}{{{labels}}} {s.value!r}")
except Exception as e:  # the parser raises ValueError and others
    print(f"not valid exposition: {e}", file=sys.stderr)
    sys.exit(1)
