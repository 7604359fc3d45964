"""Differential test: our converter against Ceilometer 27's, over the whole corpus.

Ceilometer is the oracle, never a dependency: a session fixture installs
``ceilometer==27.0.0`` with ``--no-deps``, plus the handful of libraries its
event converter imports (tests/oracle/requirements.txt), into a virtual
environment of its own, cached between runs. One process of
tests/oracle/ceilometer_convert.py converts every notification of the corpus
with Ceilometer's ``NotificationEventsConverter`` and its shipped
``event_definitions.yaml``, and the test compares event by event with
``panko_collector.conversion.converter.Converter`` on the same definitions.

Both sides get the same input: the corpus notification is decoded by our
decoder, and the listener body it gives is what Ceilometer converts. Bare
samples carry no message_id (the decoder derives one) and no timestamp, nor
do notigen's placeholders parse as one: those get the same fixed reception
time on both sides, as the daemon would use its clock.

Where Ceilometer drops a whole notification because one trait fails to
convert, panko-collector keeps the event without that trait (a deliberate
difference): the oracle then reports, trait by trait, what Ceilometer would
have produced, and ours must be exactly that. Likewise, a trait value that no
database column can hold (an int beyond 64 bits, NaN or Infinity), which
Ceilometer passes on to fail the whole event at storage, costs us only that
trait.

A second test does the same over the corpus with leaf values swapped for
tricky ones at a fixed seed (numbers as strings, odd dates, containers, long
text), where the plain corpus has too few values that do not convert.

Needs the corpus and PyPI (once, to build the cached environment): skipped
without them, failed under CI=true.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, missing
from tests.functional.side_venv import SideVenv, cache_dir, fingerprint, tail

CEILOMETER_VERSION = "27.0.0"
ORACLE_DIR = REPO / "tests" / "oracle"
ORACLE_SCRIPT = ORACLE_DIR / "ceilometer_convert.py"
ORACLE_REQUIREMENTS = ORACLE_DIR / "requirements.txt"
#: How many mismatches the failure message spells out in full.
SHOWN_DIFFS = 5

pytestmark = pytest.mark.slow


# --- the oracle's virtual environment ------------------------------------------------------

def _install(venv: SideVenv) -> None:
    # Ceilometer itself first: if PyPI cannot be reached, this is where it shows,
    # and that is an absent service (skip locally, fail in CI), not a bug.
    proc = venv.pip("--no-deps", f"ceilometer=={CEILOMETER_VERSION}")
    if proc.returncode != 0:
        missing(f"ceilometer=={CEILOMETER_VERSION} from PyPI for the oracle "
                f"(pip failed:\n{tail(proc)})")
    # Its full dependency list would pull in half of OpenStack; the converter
    # needs only these, pinned so that the oracle does not drift.
    proc = venv.pip("--no-deps", "-r", str(ORACLE_REQUIREMENTS))
    if proc.returncode != 0:
        missing(f"the oracle's libraries from PyPI ({ORACLE_REQUIREMENTS.name}; "
                f"pip failed:\n{tail(proc)})")


@pytest.fixture(scope="session")
def ceilometer_python() -> Path:
    """The interpreter of a virtual environment holding Ceilometer's converter."""
    venv = SideVenv(
        path=cache_dir(f"ceilometer-{CEILOMETER_VERSION}", "PANKO_COLLECTOR_ORACLE_VENV"),
        stamp=fingerprint(CEILOMETER_VERSION, ORACLE_REQUIREMENTS.read_bytes()),
        probe="import ceilometer.event.converter, ceilometer.event.trait_plugins, stevedore")
    built, seconds = venv.ensure(_install)
    if built:
        print(f"\noracle venv {venv.path} created in {seconds:.1f} s")
    return venv.python


def run_oracle(python: Path, definitions: Path, items: list[dict[str, Any]],
               **options: Any) -> list[Any]:
    """Convert ``[{"priority", "body"}]`` with Ceilometer in one process.

    ``options``: ``drop_unmatched_notifications`` and ``store_raw``, as in
    Ceilometer's ``[event]`` section (default: its defaults).
    """
    request = {"definitions": str(definitions), "notifications": items, **options}
    proc = subprocess.run([str(python), str(ORACLE_SCRIPT)], input=json.dumps(request),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"the oracle failed:\n{proc.stderr[-3000:]}"
    answer = json.loads(proc.stdout)
    assert answer["ceilometer"] == CEILOMETER_VERSION
    results: list[Any] = answer["results"]
    assert len(results) == len(items)
    return results


# --- the corpus, as both sides see it ---------------------------------------------------------

#: The reception time given to notifications without a usable timestamp.
RECEIVED = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901)

_DT_PLACEHOLDER = re.compile(r"\[\[\[\[DT_(\d+)\]\]\]\]")
_NOTIGEN_EPOCH = datetime.datetime(2015, 4, 27, 10, 0, 0)


def _fill_datetimes(value: Any) -> Any:
    """notigen's templates hold ``[[[[DT_n]]]]`` where a date belongs; give it one.

    With the placeholders, every datetime trait of the 301 notigen
    notifications fails in Ceilometer; filled, the same notifications test
    the datetime traits too.
    """
    if isinstance(value, str):
        return _DT_PLACEHOLDER.sub(
            lambda m: str(_NOTIGEN_EPOCH + datetime.timedelta(
                seconds=37 * int(m.group(1)), microseconds=1013 * int(m.group(1)))),
            value)
    if isinstance(value, dict):
        return {k: _fill_datetimes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_datetimes(v) for v in value]
    return value


def _corpus_cases(corpus_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    from tests.corpus import notifications

    cases = list(notifications(root=corpus_dir))
    filled = [(f"{name} [dates filled]", _fill_datetimes(notification))
              for name, notification in cases
              if _DT_PLACEHOLDER.search(json.dumps(notification))]
    return cases + filled


# --- comparison --------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def _ours(event: Any) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "event_type": event.event_type,
        "generated": _plain(event.generated),
        "traits": {t.name: (t.dtype, _plain(t.value)) for t in event.traits},
        # As Ceilometer's side went through JSON, so must ours to compare.
        "raw": json.loads(json.dumps(event.raw)),
    }


def _theirs(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "message_id": event["message_id"],
        "event_type": event["event_type"],
        "generated": event["generated"],
        "traits": {t["name"]: (t["type"], t["value"]) for t in event["traits"]},
        "raw": event["raw"],
    }


def _same(a: tuple[int, Any], b: tuple[int, Any]) -> bool:
    """Same trait type and value, and the value's Python type too.

    1 == 1.0 == True would otherwise hide a difference the database sees;
    NaN (a float trait may hold one) equals itself here.
    """
    if a[0] != b[0] or type(a[1]) is not type(b[1]):
        return False
    if isinstance(a[1], float) and math.isnan(a[1]):
        return math.isnan(b[1])
    return bool(a[1] == b[1])


def _unstorable(trait: tuple[int, Any]) -> bool:
    """An int beyond 64 bits or a NaN/Infinity float: no database column holds
    it, so Ceilometer's event would fail whole at storage; we drop the trait."""
    value = trait[1]
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**63
    return isinstance(value, float) and not math.isfinite(value)


def _diff(ceilometer: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """What differs between two events, field by field and trait by trait."""
    diff: dict[str, Any] = {}
    for key in ("message_id", "event_type", "generated", "raw"):
        if ceilometer[key] != ours[key]:
            diff[key] = {"ceilometer": ceilometer[key], "ours": ours[key]}
    theirs_t, ours_t = ceilometer["traits"], ours["traits"]
    for name in sorted(theirs_t.keys() | ours_t.keys()):
        a, b = theirs_t.get(name), ours_t.get(name)
        if b is None and a is not None and _unstorable(a):
            continue  # the second deliberate difference: we drop that trait
        if a is None or b is None or not _same(a, b):
            diff.setdefault("traits", {})[name] = {"ceilometer": a, "ours": b}
    return diff


#: Every priority oslo.messaging knows, to keep every raw notification.
ALL_PRIORITIES = ["audit", "debug", "info", "warn", "error", "critical", "sample"]

OWN_DEFINITIONS = REPO / "etc" / "panko-collector" / "event_definitions.yaml"


def _converter(definitions_file: Path, options: dict[str, Any]) -> Any:
    from panko_collector.conversion.converter import Converter
    from panko_collector.conversion.definitions import load_definitions

    return Converter(load_definitions(definitions_file),
                     drop_unmatched=options.get("drop_unmatched_notifications", False),
                     store_raw=options.get("store_raw", ()))


def _compare(python: Path, definitions_file: Path, options: dict[str, Any],
             cases: list[tuple[str, dict[str, Any]]]) -> tuple[Counter[str], list[Any]]:
    """Convert every case on both sides; the counts and the mismatches."""
    from panko_collector import errors
    from panko_collector.conversion import decoder

    converter = _converter(definitions_file, options)
    mismatches: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    ours: list[Any] = []
    names: list[str] = []
    for name, raw in cases:
        try:
            notification = decoder.decode_object(raw)
        except errors.DecodeError as exc:
            # Every corpus notification is a real one: refusing it is a bug.
            mismatches.append({"notification": name, "decode_error": str(exc)})
            continue
        names.append(name)
        stamp = RECEIVED if notification.timestamp is None else None
        body = notification.listener_body(timestamp=stamp)
        items.append({"priority": notification.priority, "body": body})
        our_event = converter.convert(notification, received=RECEIVED)
        if our_event is not None and our_event.raw and stamp is not None:
            # Ceilometer had to be given a timestamp it can parse where the
            # message's own is not one (notigen's placeholders); our raw
            # keeps the message's own. That is the harness, not a difference.
            our_event.raw = {**our_event.raw, "metadata": body["metadata"]}
        ours.append(our_event)

    results = run_oracle(python, definitions_file, items, **options)

    counts: Counter[str] = Counter()
    for name, item, our_event, result in zip(names, items, ours, results, strict=True):
        counts["compared"] += 1
        event_type = item["body"]["event_type"]
        if "event" in result:
            counts["converted by ceilometer"] += 1
            if our_event is None:
                mismatches.append({"notification": name, "event_type": event_type,
                                   "ceilometer": result["event"], "ours": None})
                continue
            diff = _diff(_theirs(result["event"]), _ours(our_event))
            if diff:
                mismatches.append({"notification": name, "event_type": event_type, **diff})
            else:
                counts["identical event"] += 1
                if len(our_event.traits) > 5:
                    counts["identical event, with traits beyond the 5 defaults"] += 1
        elif "dropped" in result:
            counts["dropped by ceilometer (no definition)"] += 1
            if our_event is None:
                counts["dropped by both"] += 1
            else:
                mismatches.append({"notification": name, "event_type": event_type,
                                   "ceilometer": "dropped", "ours": _ours(our_event)})
        else:
            # Ceilometer lost the notification to one bad trait; we keep the
            # event without the trait(s) that failed, and nothing else may differ.
            counts["dropped by ceilometer (trait error), kept by us"] += 1
            partial = result["partial"]
            failed = {t["name"] for t in result["failed_traits"]}
            problem: dict[str, Any] = {}
            if our_event is None:
                problem = {"ceilometer": result["error"], "ours": None}
            elif partial is None or not failed:
                # Not a trait failure: the event itself could not be built.
                problem = {"ceilometer": result["error"], "ours": _ours(our_event)}
            else:
                diff = _diff(_theirs(partial), _ours(our_event))
                stray = sorted(failed & set(_ours(our_event)["traits"]))
                if stray:
                    problem["kept traits ceilometer cannot convert"] = stray
                if diff:
                    problem.update(diff)
            if problem:
                mismatches.append({"notification": name, "event_type": event_type,
                                   "ceilometer_error": result["error"], **problem})
            else:
                counts["same event less the failing traits"] += 1

    counts["matched"] = counts["compared"] - sum("decode_error" not in m for m in mismatches)
    # The corpus must really have been compared, every case of it.
    assert counts["compared"] + sum("decode_error" in m for m in mismatches) == len(cases)
    return counts, mismatches


def _report(title: str, cases: int, counts: Counter[str], mismatches: list[Any]) -> str:
    """Print the figures and every mismatch; the failure message if any."""
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items())
    print(f"\n{title}: {summary}, mismatches: {len(mismatches)}")
    for mismatch in mismatches:
        print(json.dumps(mismatch, default=str, sort_keys=True))
    shown = "\n".join(json.dumps(m, default=str, sort_keys=True)[:2000]
                      for m in mismatches[:SHOWN_DIFFS])
    return (f"{len(mismatches)} of {cases} notifications differ ({title}: {summary}); "
            f"the first {min(SHOWN_DIFFS, len(mismatches))}:\n{shown}")


@pytest.mark.parametrize(("definitions", "options"), [
    pytest.param("ceilometer", {}, id="ceilometer-defaults"),
    pytest.param("ceilometer", {"drop_unmatched_notifications": True,
                                "store_raw": ALL_PRIORITIES}, id="ceilometer-drop-store-raw"),
    pytest.param("own", {}, id="own-defaults"),
])
def test_every_notification_ceilometer_converts_gives_the_same_event(
        corpus_dir: Path, ceilometer_python: Path, definitions: str,
        options: dict[str, Any]) -> None:
    """Ceilometer's shipped definitions (the acceptance test), and ours.

    With Ceilometer's defaults, then with unmatched notifications dropped and
    every raw notification kept (so ``raw`` is compared too). Our own file
    is run through Ceilometer as well: it proves the file means the same to
    both (operators may share it), and it exercises paths Ceilometer's file
    has none of (quoted ``'nova_object.data'`` keys, ``split(:, ...)``).
    """
    definitions_file = (corpus_dir / "event_definitions.yaml" if definitions == "ceilometer"
                        else OWN_DEFINITIONS)
    cases = _corpus_cases(corpus_dir)
    if definitions == "own":
        # Keystone and heat have no corpus sample; the hand-written ones too.
        from tests.corpus import UNSAMPLED

        cases += [(f"unsampled {n['event_type']}", n) for n, _ in UNSAMPLED]
    counts, mismatches = _compare(ceilometer_python, definitions_file, options, cases)
    message = _report(f"parity with ceilometer {CEILOMETER_VERSION} on {definitions_file} "
                      f"{options}", len(cases), counts, mismatches)
    # Ceilometer must really have produced events with specific traits.
    assert counts["identical event, with traits beyond the 5 defaults"] >= 100, message
    assert not mismatches, message


#: Values that services send, or that a broken publisher could: numbers as
#: strings, floats where ints belong, dates in odd formats, containers where
#: scalars belong, text over 255 characters, NaN.
TRICKY_VALUES: list[Any] = [
    "", " ", "40", " 40 ", "4.5", "1e3", "-0", "0x10", "abc", "True", "nan", "inf", "9" * 30,
    True, False, 0, -1, 2**70, 1.5, 1e300, 1e-7, [], [1, 2], {}, {"a": 1}, None,
    "2012-10-29T13:42:11Z", "2012-10-29 13:42:11.123456", "2012-10-29T13:42:11+02:00",
    "2012-10-29T13:42:11.1234567Z", "2012-10-29", "20121029T134211", "2012-10-29T25:00:00",
    "2016-08-19 10:20:49+00:00", "2012-10-29T13:42:11-0530", "12:00", "1351518131",
    "x" * 300, "\u00e9" * 300, "a\u0000b", "2012-13-01T00:00:00", "2012-10-29 13:42",
]


def _mutate(value: Any, rng: random.Random, rate: float) -> Any:
    if isinstance(value, dict):
        return {k: _mutate(v, rng, rate) for k, v in value.items()}
    if isinstance(value, list):
        return [_mutate(v, rng, rate) for v in value]
    return rng.choice(TRICKY_VALUES) if rng.random() < rate else value


@pytest.mark.parametrize("definitions", ["ceilometer", "own"])
def test_mutated_notifications_give_the_same_event(
        corpus_dir: Path, ceilometer_python: Path, definitions: str) -> None:
    """The corpus with leaf values swapped for tricky ones, at a fixed seed.

    The corpus is well-formed; this is where conversion rules meet values
    that do not convert (Ceilometer then drops the notification, we the
    trait), text that must be cut, dates in every format, and containers.
    Everything but event_type is fair game, context and timestamps included.
    """
    from tests.corpus import notifications

    definitions_file = (corpus_dir / "event_definitions.yaml" if definitions == "ceilometer"
                        else OWN_DEFINITIONS)
    rng = random.Random(20261129)
    cases = []
    for name, raw in notifications(root=corpus_dir):
        filled = _fill_datetimes(raw)
        for copy in range(2):
            mutated = {k: v if k == "event_type" else _mutate(v, rng, 0.4)
                       for k, v in filled.items()}
            cases.append((f"{name} [mutated {copy}]", json.loads(json.dumps(mutated))))
    counts, mismatches = _compare(ceilometer_python, definitions_file, {}, cases)
    message = _report(f"mutated corpus, ceilometer {CEILOMETER_VERSION} on {definitions_file}",
                      len(cases), counts, mismatches)
    # Mutation must really have made Ceilometer refuse values, or this
    # tests nothing the plain corpus does not.
    assert counts["same event less the failing traits"] >= 100, message
    assert not mismatches, message
