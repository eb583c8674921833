"""Reading samples back out of a text exposition: the one lookup every test uses."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]


def samples(exposition: str | bytes) -> Samples:
    """{sample name: {sorted labels: value}} of every sample in the exposition."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def sample(exposition: str | bytes | Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None when it is absent."""
    found = exposition if isinstance(exposition, dict) else samples(exposition)
    return found.get(name, {}).get(tuple(sorted(labels.items())))


def label_values(exposition: str | bytes | Samples, name: str, label: str) -> set[str]:
    """Every value `label` takes among the samples of `name`."""
    found = exposition if isinstance(exposition, dict) else samples(exposition)
    return {dict(labels)[label] for labels in found.get(name, {}) if label in dict(labels)}
