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
"""

from __future__ import annotations

import copy
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
