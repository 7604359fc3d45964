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


#: Services the corpus has no sample of, written from their documented
#: payloads: keystone's CADF notifications and heat's stack notifications.
UNSAMPLED = [
    ({"event_type": "identity.project.created", "priority": "INFO",
      "publisher_id": "identity.host1", "message_id": "b6a1c8cc-4f4a-4b1e-9d2b-0b1f6f4e9a01",
      "timestamp": "2013-08-29 19:03:45.960280",
      "payload": {"typeURI": "http://schemas.dmtf.org/cloud/audit/1.0/event",
                  "id": "openstack:f5352d7b-bee6-4c22-8213-450e7b646e9f",
                  "eventType": "activity", "eventTime": "2013-08-29T19:36:02.120000+0000",
                  "action": "created.project", "outcome": "success",
                  "initiator": {"typeURI": "service/security/account/user",
                                "id": "c9f76d3c31e142af9291de2935bde98a",
                                "project_id": "3d4a50a92b59438bbf19c231f9c7625a",
                                "host": {"agent": "curl/7.22.0", "address": "127.0.0.1"}},
                  "target": {"typeURI": "data/security/project",
                             "id": "openstack:1c2fc591-facb-4479-a327-520dade1ea15"},
                  "observer": {"typeURI": "service/security",
                               "id": "openstack:3d4a50a9-2b59-438b-bf19-c231f9c7625a"},
                  "resource_info": "671da331c47d4e29bb6ea1d270154ec3"}},
     {"resource_id": "671da331c47d4e29bb6ea1d270154ec3", "action": "created.project",
      "outcome": "success", "initiator_id": "c9f76d3c31e142af9291de2935bde98a",
      "project_id": "3d4a50a92b59438bbf19c231f9c7625a",
      "eventTime": datetime.datetime(2013, 8, 29, 19, 36, 2, 120000)}),
    ({"event_type": "identity.role_assignment.created", "priority": "INFO",
      "publisher_id": "identity.host1", "message_id": "f1f0e1a2-7f63-4c5e-a8a8-8f6b0f8a8a02",
      "timestamp": "2013-08-29 19:03:45.960280",
      "payload": {"typeURI": "http://schemas.dmtf.org/cloud/audit/1.0/event",
                  "eventType": "activity", "action": "created.role_assignment",
                  "outcome": "success", "role": "0e6b990380154a2599ce6b6e91548a68",
                  "project": "24bdcff1aab8474895dbaac509793de1",
                  "user": "02c06a8a6c4a4e7c8bbf2b4f1c0a8b90",
                  "inherited_to_projects": False,
                  "initiator": {"id": "c9f76d3c31e142af9291de2935bde98a"}}},
     {"resource_id": "02c06a8a6c4a4e7c8bbf2b4f1c0a8b90",
      "role": "0e6b990380154a2599ce6b6e91548a68",
      "project": "24bdcff1aab8474895dbaac509793de1", "user": "02c06a8a6c4a4e7c8bbf2b4f1c0a8b90"}),
    ({"event_type": "orchestration.stack.create.end", "priority": "INFO",
      "publisher_id": "orchestration.host1", "message_id": "2c4e8f0a-5f0b-4a8e-9f41-7b3e9a6c1d03",
      "timestamp": "2016-01-01 00:00:05.000001", "_context_user_id": "5a8b2c0d9e7f4a1b",
      "payload": {"stack_identity": "0f3a8b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
                  "stack_name": "web", "state": "CREATE_COMPLETE",
                  "state_reason": "Stack CREATE completed successfully",
                  "tenant_id": "24bdcff1aab8474895dbaac509793de1", "user_id": "demo",
                  "user_identity": "5a8b2c0d9e7f4a1b", "username": "demo",
                  "create_at": "2016-01-01T00:00:00Z", "updated_at": None, "tags": None}},
     {"resource_id": "0f3a8b2c-4d5e-4f60-8a7b-9c0d1e2f3a4b", "name": "web",
      "state": "CREATE_COMPLETE", "project_id": "24bdcff1aab8474895dbaac509793de1",
      "user_id": "5a8b2c0d9e7f4a1b", "user_name": "demo",
      "created_at": datetime.datetime(2016, 1, 1, 0, 0)}),
]


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
