"""The project's own etc/panko-collector/event_definitions.yaml, on the whole corpus.

The file is what operators get by default, so every kind of notification
in the corpus must come out with the traits that describe its resource (its
id, state, sizes, times), not only the five default traits that any
unmatched notification gets.
"""

from __future__ import annotations

import datetime
import fnmatch
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.corpus import UNSAMPLED

OWN_DEFINITIONS = REPO / "etc" / "panko-collector" / "event_definitions.yaml"

#: The traits every definition gets, matched or not.
DEFAULT_TRAITS = frozenset({"service", "request_id", "project_id", "user_id", "tenant_id"})

#: Event types that name no single resource, so have no resource_id: errors
#: that are about the service itself, and a port being created (no id yet).
WITHOUT_RESOURCE = ("compute.exception", "libvirt.connect.error", "port.create.start")

TEXT, INT, FLOAT, DATETIME = 1, 2, 3, 4

#: For the families operators query most: the traits each event of the
#: family must have, with their types. Patterns are fnmatch globs; an event
#: must satisfy every pattern it matches.
EXPECTED: list[tuple[str, dict[str, int]]] = [
    ("compute.instance.*", {"resource_id": TEXT, "instance_id": TEXT, "state": TEXT}),
    ("compute.instance.create.*", {"memory_mb": INT, "vcpus": INT, "root_gb": INT,
                                   "instance_type": TEXT, "host": TEXT}),
    ("instance.*", {"resource_id": TEXT, "instance_id": TEXT, "state": TEXT,
                    "power_state": TEXT, "display_name": TEXT, "instance_flavor_id": TEXT,
                    "memory_mb": INT, "vcpus": INT, "created_at": DATETIME}),
    ("instance.create.end", {"launched_at": DATETIME, "host": TEXT, "image_id": TEXT}),
    ("instance.exists", {"audit_period_beginning": DATETIME, "audit_period_ending": DATETIME}),
    # (old_state is null in some samples: an update that changed no state)
    ("instance.update", {"audit_period_beginning": DATETIME, "audit_period_ending": DATETIME}),
    ("instance.snapshot.*", {"snapshot_image_id": TEXT}),
    ("instance.volume_attach.*", {"volume_id": TEXT}),
    ("instance.volume_swap.*", {"old_volume_id": TEXT, "new_volume_id": TEXT}),
    ("instance.resize_prep.*", {"new_instance_flavor_id": TEXT}),
    ("instance.*.error", {"fault_exception": TEXT, "fault_message": TEXT}),
    ("volume.*.end", {"resource_id": TEXT, "volume_id": TEXT, "size": INT, "status": TEXT,
                      "created_at": DATETIME}),
    ("snapshot.*", {"resource_id": TEXT, "volume_id": TEXT, "size": INT, "status": TEXT}),
    ("volume.usage", {"volume_id": TEXT, "instance_id": TEXT, "read_bytes": INT}),
    ("image.create", {"resource_id": TEXT, "name": TEXT, "status": TEXT, "size": INT}),
    ("image.update", {"resource_id": TEXT, "name": TEXT, "status": TEXT, "size": INT}),
    ("image.delete", {"resource_id": TEXT, "status": TEXT, "deleted_at": DATETIME}),
    ("image.member.*", {"resource_id": TEXT, "member_id": TEXT, "status": TEXT}),
    ("network.create.end", {"resource_id": TEXT, "name": TEXT, "status": TEXT, "mtu": INT}),
    ("subnet.create.end", {"resource_id": TEXT, "cidr": TEXT, "network_id": TEXT,
                           "ip_version": INT}),
    ("port.create.end", {"resource_id": TEXT, "network_id": TEXT, "device_id": TEXT,
                         "fixed_ip": TEXT}),
    ("router.create.end", {"resource_id": TEXT, "name": TEXT, "status": TEXT}),
    ("router.interface.*", {"resource_id": TEXT, "port_id": TEXT, "subnet_id": TEXT}),
    ("floatingip.*", {"resource_id": TEXT}),
    ("floatingip.create.end", {"floating_ip_address": TEXT, "status": TEXT}),
    ("security_group.create.end", {"resource_id": TEXT, "name": TEXT}),
    ("security_group_rule.create.end", {"resource_id": TEXT, "security_group_id": TEXT,
                                        "direction": TEXT, "port_range_min": INT}),
    ("*.delete.end", {"resource_id": TEXT}),
    ("dns.zone.*", {"resource_id": TEXT, "name": TEXT, "status": TEXT, "serial": INT,
                    "ttl": INT, "created_at": DATETIME}),
    ("dns.recordset.*", {"resource_id": TEXT, "zone_id": TEXT, "name": TEXT, "type": TEXT}),
    ("dns.record.*", {"resource_id": TEXT, "recordset_id": TEXT, "data": TEXT}),
    ("flavor.*", {"resource_id": TEXT, "name": TEXT, "memory_mb": INT, "vcpus": INT,
                  "rxtx_factor": FLOAT}),
    ("aggregate.*", {"resource_id": TEXT, "name": TEXT}),
    ("keypair.*", {"resource_id": TEXT, "name": TEXT, "type": TEXT}),
    ("server_group.*", {"resource_id": TEXT, "name": TEXT, "policy": TEXT}),
    ("service.*", {"resource_id": TEXT, "host": TEXT, "binary": TEXT, "version": INT}),
    ("capacity.pool", {"resource_id": TEXT, "total_gb": FLOAT, "free_gb": FLOAT}),
    ("network.floating_ip.*", {"resource_id": TEXT, "floating_ip": TEXT}),
    ("scheduler.run_instance.*", {"resource_id": TEXT, "instance_type": TEXT}),
    ("compute_task.*", {"resource_id": TEXT, "fault_exception": TEXT}),
]

#: A reception time for notifications that carry none (bare samples).
RECEIVED = datetime.datetime(2026, 1, 2, 3, 4, 5)


def _load() -> Any:
    from panko_collector.conversion.definitions import load_definitions

    return load_definitions(OWN_DEFINITIONS)


def test_the_file_loads_cleanly() -> None:
    raw = yaml.safe_load(OWN_DEFINITIONS.read_text(encoding="utf-8"))
    assert isinstance(raw, list) and raw
    for definition in raw:
        assert set(definition) == {"event_type", "traits"}, definition
        assert definition["traits"], definition["event_type"]
    definitions = _load()
    assert len(definitions) == len(raw)


@pytest.fixture(scope="module")
def events(corpus_dir: Path) -> list[tuple[str, Any]]:
    """Every corpus notification converted with the project's own definitions."""
    from panko_collector.conversion import decoder
    from panko_collector.conversion.converter import Converter
    from tests.corpus import notifications

    converter = Converter(_load())
    converted = []
    for name, raw in notifications(root=corpus_dir):
        event = converter.convert(decoder.decode_object(raw), received=RECEIVED)
        assert event is not None, f"{name}: no event"
        converted.append((name, event))
    assert len(converted) > 500
    return converted


def test_every_event_type_gets_traits_beyond_the_defaults(
        events: list[tuple[str, Any]]) -> None:
    bare = sorted({f"{event.event_type} ({name})" for name, event in events
                   if not {t.name for t in event.traits} - DEFAULT_TRAITS})
    assert not bare, f"{len(bare)} notifications got only the default traits:\n" + "\n".join(bare)


def test_every_resource_event_names_its_resource(events: list[tuple[str, Any]]) -> None:
    missing = sorted({f"{event.event_type} ({name})" for name, event in events
                      if event.event_type not in WITHOUT_RESOURCE
                      and not any(t.name == "resource_id" and t.value for t in event.traits)})
    assert not missing, (f"{len(missing)} notifications have no resource_id:\n"
                         + "\n".join(missing))


def test_key_families_get_their_specific_traits(events: list[tuple[str, Any]]) -> None:
    problems: dict[str, set[str]] = defaultdict(set)
    checked = 0
    for name, event in events:
        types = {t.name: t.dtype for t in event.traits}
        for pattern, expected in EXPECTED:
            if not fnmatch.fnmatchcase(event.event_type, pattern):
                continue
            checked += 1
            for trait, dtype in expected.items():
                if trait not in types:
                    problems[f"{event.event_type} ({name})"].add(f"no {trait}")
                elif types[trait] != dtype:
                    problems[f"{event.event_type} ({name})"].add(
                        f"{trait} is type {types[trait]}, not {dtype}")
    # Every pattern of the table must have met at least one event, or the
    # table is testing nothing for it.
    unused = [p for p, _ in EXPECTED
              if not any(fnmatch.fnmatchcase(e.event_type, p) for _, e in events)]
    assert not unused, f"patterns that match no corpus event: {unused}"
    assert checked > 300
    report = "\n".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(problems.items()))
    assert not problems, f"{len(problems)} events lack expected traits:\n{report}"


@pytest.mark.parametrize(("notification", "expected"), UNSAMPLED,
                         ids=[n["event_type"] for n, _ in UNSAMPLED])
def test_services_without_samples_get_their_traits(
        notification: dict[str, Any], expected: dict[str, Any]) -> None:
    from panko_collector.conversion import decoder
    from panko_collector.conversion.converter import Converter

    event = Converter(_load()).convert(decoder.decode_object(notification))
    assert event is not None
    values = {t.name: t.value for t in event.traits}
    assert {k: values.get(k) for k in expected} == expected
