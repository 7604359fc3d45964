"""The notification corpus as test data: every notification, ready to decode.

Shared by the converter, oracle and daemon tests. The corpus lives outside
the project (``$PANKO_COLLECTOR_DATA`` or ``../shared/data``); its folders
hold three layouts, which :func:`notifications` flattens:

- a file with one notification (nova, watcher, designate);
- a JSON array whose element 0 is notigen's generator metadata (no
  ``event_type``), the rest notifications (stacktach-notigen);
- a JSON object ``{name: notification}`` (searchlight).

Nova's versioned samples point at shared fragments with
``{"$ref": "common_payloads/X.json#", ...}``; sibling keys override the
fragment recursively, as nova's own test helper does. They are resolved here.

``UNSAMPLED`` adds hand-written notifications of services the corpus has no
sample of, each with the traits the project's own definitions must give it.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: The sources whose notifications are legacy (unversioned) ones, as the
#: shipped Ceilometer definitions expect them.
LEGACY_SOURCES = ("stacktach-notigen", "designate", "searchlight", "watcher-legacy-2018")


def data_dir() -> Path:
    """The corpus folder: $PANKO_COLLECTOR_DATA or ../shared/data (may not exist)."""
    return Path(os.environ.get("PANKO_COLLECTOR_DATA", REPO.parent / "shared" / "data"))


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def resolve_refs(obj: Any, base: Path, _cache: dict[Path, Any] | None = None) -> Any:
    """Return ``obj`` with every ``{"$ref": "file#", ...overrides}`` replaced.

    A reference is relative to the folder of the file that holds it; the
    keys beside ``$ref`` are merged into the referenced object recursively.
    """
    cache = {} if _cache is None else _cache
    if isinstance(obj, list):
        return [resolve_refs(item, base, cache) for item in obj]
    if not isinstance(obj, dict):
        return obj
    if "$ref" not in obj:
        return {key: resolve_refs(value, base, cache) for key, value in obj.items()}
    ref = obj["$ref"]
    file_part, _, pointer = ref.partition("#")
    if pointer:
        raise ValueError(f"JSON pointers in $ref are not supported: {ref!r}")
    target = (base / file_part).resolve()
    if target not in cache:
        cache[target] = json.loads(target.read_text(encoding="utf-8"))
    resolved = resolve_refs(copy.deepcopy(cache[target]), target.parent, cache)
    overrides = resolve_refs({k: v for k, v in obj.items() if k != "$ref"}, base, cache)
    _merge(resolved, overrides)
    return resolved


def _is_notification(obj: Any) -> bool:
    return isinstance(obj, dict) and "event_type" in obj


def _from_file(path: Path, root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    rel = path.relative_to(root).as_posix()
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, list):
        for index, item in enumerate(doc):
            if _is_notification(item):  # element 0 of notigen is metadata
                yield f"{rel}[{index}]", item
    elif _is_notification(doc):
        yield rel, resolve_refs(doc, path.parent)
    elif isinstance(doc, dict):
        for name, item in doc.items():
            if _is_notification(item):
                yield f"{rel}#{name}", item


def notifications(
    sources: Iterable[str] | None = None, root: Path | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(label, notification)`` for every notification of the corpus.

    ``label`` is the file path relative to ``notifications/``, followed by
    ``[index]`` (arrays) or ``#name`` (objects). ``sources`` limits the walk
    to those top folders (e.g. :data:`LEGACY_SOURCES`). Each notification is
    a fresh dict in the shape of its file (flat with ``_context_*`` keys,
    listener with ``ctxt``/``metadata``, or bare); notigen placeholders such
    as ``[[[[UUID_0]]]]`` are left as they are.
    """
    base = (root or data_dir()) / "notifications"
    wanted = None if sources is None else set(sources)
    for path in sorted(base.rglob("*.json")):
        rel = path.relative_to(base)
        if rel.parts[0] == "nova" and "common_payloads" in rel.parts:
            continue
        if wanted is not None and rel.parts[0] not in wanted:
            continue
        yield from _from_file(path, base)


def definitions_file(root: Path | None = None) -> Path:
    """Ceilometer's shipped event_definitions.yaml, as copied into the corpus."""
    return (root or data_dir()) / "event_definitions.yaml"


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
