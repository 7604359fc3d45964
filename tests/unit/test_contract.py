"""The names and constants other parts and Panko's users rely on."""

from __future__ import annotations

import dataclasses

import pytest

from panko_collector import errors, storage
from panko_collector.storage import models


def test_trait_type_constants_are_pankos() -> None:
    assert (
        models.Trait.NONE_TYPE,
        models.Trait.TEXT_TYPE,
        models.Trait.INT_TYPE,
        models.Trait.FLOAT_TYPE,
        models.Trait.DATETIME_TYPE,
    ) == (0, 1, 2, 3, 4)


def test_event_filter_defaults_and_immutability() -> None:
    f = storage.EventFilter(event_type="compute.instance.create.end")
    assert f.start_timestamp is None and f.traits_filter is None and f.admin_proj is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.event_type = "other"  # type: ignore[misc]


@pytest.mark.parametrize("url", ["mongodb://localhost/panko", "es://es:9200", "nonsense"])
def test_unknown_scheme_is_a_clear_error(url: str) -> None:
    with pytest.raises(errors.UnsupportedBackend) as exc:
        storage.get_connection(url)
    scheme = url.split(":", 1)[0] if ":" in url else ""
    assert repr(scheme) in str(exc.value)


def test_transient_errors_are_marked() -> None:
    assert issubclass(errors.StorageUnavailable, errors.TransientError)
    assert issubclass(errors.BrokerUnavailable, errors.TransientError)
    assert not issubclass(errors.DecodeError, errors.TransientError)
    assert errors.DecodeError("not-json", "x").reason == "not-json"
