from __future__ import annotations

import os
from pathlib import Path

from panko_collector import daemon, opts, service


def _conf(tmp_path: Path, text: str = ""):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.conf"
    path.write_text(text)
    return service.prepare_service(["--config-file", str(path)])


def test_defaults_the_issue_names(tmp_path: Path) -> None:
    c = _conf(tmp_path).collector
    assert c.workers == (os.cpu_count() or 1)
    assert c.batch_size == 500 and c.batch_timeout == 1.0
    assert c.prefetch_count == 0  # meaning twice batch_size
    assert c.topics == ["notifications"]
    assert c.pool is None
    assert {"nova", "glance", "neutron", "cinder", "heat", "keystone", "trove", "zaqar",
            "swift", "ceilometer", "magnum", "dns", "ironic", "aodh", "openstack"} == set(
        c.exchanges)
    assert "info" in c.priorities


def test_every_option_has_help() -> None:
    for _group, options in opts.list_opts():
        for opt in options:
            assert opt.help, opt.name


def test_start_line_masks_passwords(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "[DEFAULT]\ntransport_url = rabbit://u:brokersecret@h1:5672,"
                 "u:brokersecret@h2:5672/v\n[database]\n"
                 "connection = postgresql://panko:dbsecret@db/panko\n"
                 "[collector]\nworkers = 3\nexchanges = nova,neutron\npriorities = info\n")
    line = daemon.start_line(conf)
    assert "secret" not in line
    assert "3 workers" in line and "nova,neutron" in line
    assert "notifications.info" in line
    assert "postgresql://panko:***@db/panko" in line
