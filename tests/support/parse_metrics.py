"""Parses Prometheus text (format 0.0.4) from stdin with the Prometheus project's own Python
client parser, and prints every sample as JSON: {"families": {name: type}, "samples":
[[name, labels, value], ...]}. A malformed exposition makes the parser raise: exit status 1."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value])
json.dump({"families": families, "samples": samples}, sys.stdout)
