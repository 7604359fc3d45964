"""Panko's policy rules on today's oslo.policy, which enforces new defaults and scope."""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg
from oslo_policy import opts as policy_opts

from panko_collector import errors
from panko_collector.api.policy import INDEX_RULE, SHOW_RULE, Policy
from panko_collector.api.query import Identity


def policy(tmp_path: Path, rules: str = "") -> Policy:
    conf = cfg.ConfigOpts()
    conf([], project="panko-collector-test", default_config_files=[])
    path = tmp_path / "policy.yaml"
    if rules:
        path.write_text(rules)
    # An override on this conf (oslo.policy's set_defaults would change the
    # default of every later ConfigOpts in the process).
    for group, options in policy_opts.list_opts():
        conf.register_opts(options, group=group)
    conf.set_override("policy_file", str(path), group="oslo_policy")
    return Policy(conf)


@pytest.mark.parametrize(("identity", "admin"), [
    (Identity("u", "p", ("admin",)), True),
    (Identity("u", "p", ("member", "Admin")), True),  # role checks ignore case
    (Identity("u", "p", ("member", "reader")), False),
    (Identity("u", None, ("admin",), "all"), True),  # system scope: still an admin
    (Identity("u", None, ("reader",), "all"), False),
    (Identity(None, None), False),
])
def test_who_is_an_admin_by_default(tmp_path: Path, identity: Identity, admin: bool) -> None:
    pol = policy(tmp_path)
    assert pol.is_admin(identity) is admin
    # Listing and showing are open to every caller by default.
    pol.authorize(INDEX_RULE, identity)
    pol.authorize(SHOW_RULE, identity)


def test_a_policy_file_overrides_the_defaults(tmp_path: Path) -> None:
    pol = policy(tmp_path, '"segregation": "role:auditor"\n'
                           '"telemetry:events:index": "project_id:%(project_id)s and '
                           'role:reader"\n')
    assert pol.is_admin(Identity("u", "p", ("auditor",)))
    assert not pol.is_admin(Identity("u", "p", ("admin",)))
    pol.authorize(INDEX_RULE, Identity("u", "p", ("reader",)))
    with pytest.raises(errors.Forbidden, match="RBAC Authorization Failed"):
        pol.authorize(INDEX_RULE, Identity("u", "p", ("member",)))
