"""Who may do what: Panko's oslo.policy rules, with defaults that keep its behaviour.

Panko 10 registered ``segregation: role:admin and system_scope:all`` with
``rule:context_is_admin`` as the deprecated alternative; the oslo.policy of
its day ORed the two, and since Panko never passed a system scope, the
effective rule was ``role:admin``. Today's oslo.policy enforces new
defaults, which would make every admin segregated: the defaults here are
that effective rule. A system-scoped admin (``system_scope: all``) passes
it too, and sees every project's events.
"""

from __future__ import annotations

from typing import Any

from oslo_config import cfg
from oslo_policy import policy

from panko_collector import errors
from panko_collector.api.query import Identity

ADMIN_RULE = "segregation"
INDEX_RULE = "telemetry:events:index"
SHOW_RULE = "telemetry:events:show"

RULES = [
    policy.RuleDefault(
        name="context_is_admin",
        check_str="role:admin",
        description="Who is an administrator.",
    ),
    policy.RuleDefault(
        name=ADMIN_RULE,
        check_str="rule:context_is_admin",
        description="Callers who pass are not limited to the events of their own project "
        "and user: they see their project's events and those of no project, every "
        "project's with all_tenants=True, and may read /v2/event_types (GET /v2/events, "
        "GET /v2/events/{message_id}, GET /v2/event_types...).",
    ),
    policy.DocumentedRuleDefault(
        name=INDEX_RULE,
        check_str="",
        description="Return all events matching the query filters.",
        operations=[{"path": "/v2/events", "method": "GET"}],
    ),
    policy.DocumentedRuleDefault(
        name=SHOW_RULE,
        check_str="",
        description="Return a single event with the given message id.",
        operations=[{"path": "/v2/events/{message_id}", "method": "GET"}],
    ),
]


def list_rules() -> list[policy.RuleDefault]:
    """The rules, for ``oslopolicy-sample-generator --namespace panko-collector``."""
    return RULES


class Policy:
    """The policy of one API process; reads ``[oslo_policy] policy_file`` if present."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._enforcer = policy.Enforcer(conf)
        self._enforcer.register_defaults(RULES)

    def _check(self, rule: str, identity: Identity) -> bool:
        target: dict[str, Any] = {"project_id": identity.project_id,
                                  "user_id": identity.user_id}
        return bool(self._enforcer.enforce(rule, target, identity.policy_credentials()))

    def is_admin(self, identity: Identity) -> bool:
        """Whether ``identity`` passes ``segregation`` (sees beyond its own events)."""
        return self._check(ADMIN_RULE, identity)

    def authorize(self, rule: str, identity: Identity) -> None:
        """Raise ``Forbidden`` unless ``identity`` passes ``rule``."""
        if not self._check(rule, identity):
            raise errors.Forbidden("RBAC Authorization Failed")
