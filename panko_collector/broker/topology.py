"""Which exchanges and queues the collector declares, with which arguments.

OpenStack services declare their notification queues through oslo.messaging
when they publish; RabbitMQ refuses a second declaration of a queue or
exchange with other arguments (PRECONDITION_FAILED). So ours carry exactly
what oslo.messaging's RabbitMQ driver puts on them for the same
``[oslo_messaging_rabbit]`` options:

- exchanges: type ``topic``, durable when ``amqp_durable_queues`` or
  ``rabbit_quorum_queue``, auto-delete when ``amqp_auto_delete``;
- queues: the same durability and auto-delete, and the x-arguments
  ``x-queue-type: quorum`` (plus ``x-delivery-limit``,
  ``x-max-in-memory-length``, ``x-max-in-memory-bytes`` when set) for quorum
  queues, ``x-ha-policy: all`` for ``rabbit_ha_queues``.

Without ``[collector] pool`` we consume the standard ``<topic>.<priority>``
queues, bound with their own name as routing key on every exchange, so what
was published before our first start is there waiting. With a pool we
consume one queue named after the pool, bound to the same exchanges and
routing keys, as an oslo.messaging listener with that pool does.

Queues of our own making (the pool queue, the dead-letter queue) are always
durable: RabbitMQ 4.3 refuses queues that are neither durable nor exclusive
(the deprecated feature ``transient_nonexcl_queues``), and shared by every
worker they cannot be exclusive. The standard queues follow
``amqp_durable_queues`` because they must match the services' declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import amqp.exceptions
import kombu
from oslo_config import cfg

from panko_collector import errors
from panko_collector.broker.routing import routing_keys

DEFAULT_EXCHANGES = [
    "nova", "glance", "neutron", "cinder", "heat", "keystone", "trove", "zaqar",
    "swift", "ceilometer", "magnum", "dns", "ironic", "aodh", "openstack",
]
DEFAULT_PRIORITIES = ["audit", "critical", "debug", "error", "info", "sample", "warn"]

#: [collector] options: what is consumed, and where dead letters go.
OPTS = [
    cfg.ListOpt(
        "exchanges",
        default=DEFAULT_EXCHANGES,
        help="Exchanges the OpenStack services publish their notifications on.",
    ),
    cfg.ListOpt(
        "topics",
        default=["notifications"],
        help="Notification topics (oslo.messaging notifications topics) to consume.",
    ),
    cfg.ListOpt(
        "priorities",
        default=DEFAULT_PRIORITIES,
        help="Priorities whose notifications become events; a <topic>.<priority> "
        "queue is consumed for each. Messages of other priorities that reach "
        "our queues are acked and counted, never left to pile up.",
    ),
    cfg.StrOpt(
        "pool",
        help="Unset: consume the standard <topic>.<priority> queues that the "
        "OpenStack services declare, so nothing published before the first "
        "start is lost. Set: consume a queue of our own named after the pool, "
        "bound to the same exchanges and routing keys, to run beside another "
        "consumer (Ceilometer) without taking its messages.",
    ),
    cfg.StrOpt(
        "dead_letter_exchange",
        default="panko-collector.dead-letter",
        help="Topic exchange (declared by the collector, durable) that "
        "undecodable messages and events the database refused are published "
        "to, with headers reason, error, original_exchange and original_routing_key, "
        "and the original's own headers in the table original_headers.",
    ),
    cfg.StrOpt(
        "dead_letter_queue",
        default="panko-collector.dead-letter",
        help="Durable queue (declared by the collector) bound to the dead-letter "
        "exchange with '#', where dead letters wait for an operator.",
    ),
]

RABBIT_OPTS = [
    cfg.BoolOpt(
        "amqp_durable_queues",
        default=False,
        deprecated_group="DEFAULT",
        help="Use durable queues and exchanges, as the OpenStack services "
        "publishing on this broker do; must match their setting or RabbitMQ "
        "refuses our declarations.",
    ),
    cfg.BoolOpt(
        "amqp_auto_delete",
        default=False,
        deprecated_group="DEFAULT",
        help="Auto-delete queues and exchanges, as the OpenStack services "
        "publishing on this broker do; must match their setting.",
    ),
    cfg.BoolOpt(
        "rabbit_quorum_queue",
        default=False,
        help="Use quorum queues (x-queue-type: quorum), which are always "
        "durable; must match the setting of the OpenStack services.",
    ),
    cfg.IntOpt(
        "rabbit_quorum_delivery_limit",
        default=0,
        min=0,
        help="x-delivery-limit of quorum queues (0: none); must match the "
        "OpenStack services' setting.",
    ),
    cfg.IntOpt(
        "rabbit_quorum_max_memory_length",
        default=0,
        min=0,
        help="x-max-in-memory-length of quorum queues (0: none); must match "
        "the OpenStack services' setting.",
    ),
    cfg.IntOpt(
        "rabbit_quorum_max_memory_bytes",
        default=0,
        min=0,
        help="x-max-in-memory-bytes of quorum queues (0: none); must match "
        "the OpenStack services' setting.",
    ),
    cfg.BoolOpt(
        "rabbit_ha_queues",
        default=False,
        help="Declare queues with x-ha-policy: all (mirrored queues of old "
        "RabbitMQ releases); must match the OpenStack services' setting.",
    ),
]

#: The options whose mismatch with an existing queue RabbitMQ refuses, named in errors.
_MISMATCH_HINT = (
    "[oslo_messaging_rabbit] amqp_durable_queues, amqp_auto_delete, "
    "rabbit_quorum_queue and rabbit_quorum_* must match the OpenStack services "
    "that declared it"
)


#: The pool queue is ours and durable whatever the services use.
_POOL_HINT = (
    "the [collector] pool queue is the collector's own: durable, and quorum "
    "when rabbit_quorum_queue is set; a transient one left by an earlier "
    "version must be deleted (rabbitmqctl delete_queue NAME) to be declared again"
)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue to declare and consume, and where it is bound."""

    name: str
    bindings: tuple[tuple[str, str], ...]  # (exchange, routing key)
    durable: bool
    auto_delete: bool
    arguments: dict[str, Any] = field(default_factory=dict)


def durable(conf: cfg.ConfigOpts) -> bool:
    """Quorum queues are always durable, as oslo.messaging has it."""
    rabbit = conf.oslo_messaging_rabbit
    return bool(rabbit.amqp_durable_queues or rabbit.rabbit_quorum_queue)


def queue_arguments(conf: cfg.ConfigOpts) -> dict[str, Any]:
    """The x-arguments oslo.messaging declares notification queues with."""
    rabbit = conf.oslo_messaging_rabbit
    if rabbit.rabbit_quorum_queue and rabbit.rabbit_ha_queues:
        raise errors.ConfigError(
            "[oslo_messaging_rabbit] rabbit_quorum_queue and rabbit_ha_queues "
            "cannot both be enabled"
        )
    args: dict[str, Any] = {}
    if rabbit.rabbit_ha_queues:
        args["x-ha-policy"] = "all"
    if rabbit.rabbit_quorum_queue:
        args["x-queue-type"] = "quorum"
        if rabbit.rabbit_quorum_delivery_limit:
            args["x-delivery-limit"] = rabbit.rabbit_quorum_delivery_limit
        if rabbit.rabbit_quorum_max_memory_length:
            args["x-max-in-memory-length"] = rabbit.rabbit_quorum_max_memory_length
        if rabbit.rabbit_quorum_max_memory_bytes:
            args["x-max-in-memory-bytes"] = rabbit.rabbit_quorum_max_memory_bytes
    return args


@dataclass(frozen=True, slots=True)
class Topology:
    """What the collector declares and consumes, read once from ``[collector]``
    and ``[oslo_messaging_rabbit]``; see the module's docstring for why the
    arguments are what they are."""

    exchanges: tuple[str, ...]
    topics: tuple[str, ...]
    priorities: tuple[str, ...]
    pool: str | None
    dead_letter_exchange_name: str
    dead_letter_queue_name: str
    #: Durability and auto-delete of the notification exchanges and standard queues.
    durable: bool
    auto_delete: bool
    #: x-arguments of every queue we consume.
    arguments: tuple[tuple[str, Any], ...]

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Topology:
        """Raises ``ConfigError`` for options that cannot go together."""
        c = conf.collector
        return cls(
            exchanges=tuple(c.exchanges),
            topics=tuple(c.topics),
            priorities=tuple(c.priorities),
            pool=c.pool,
            dead_letter_exchange_name=c.dead_letter_exchange,
            dead_letter_queue_name=c.dead_letter_queue,
            durable=durable(conf),
            auto_delete=bool(conf.oslo_messaging_rabbit.amqp_auto_delete),
            arguments=tuple(queue_arguments(conf).items()),
        )

    def plan(self) -> list[QueueSpec]:
        """The queues with their bindings and arguments."""
        keys = routing_keys(self.topics, self.priorities)
        arguments = dict(self.arguments)
        if self.pool:
            bindings = tuple((ex, key) for ex in self.exchanges for key in keys)
            # Ours: never transient, see the module's docstring.
            return [QueueSpec(self.pool, bindings, True, self.auto_delete, arguments)]
        return [
            QueueSpec(key, tuple((ex, key) for ex in self.exchanges), self.durable,
                      self.auto_delete, dict(arguments))
            for key in keys
        ]

    def exchange(self, name: str) -> kombu.Exchange:
        """A notification exchange declared as oslo.messaging declares it."""
        return kombu.Exchange(name, type="topic", durable=self.durable,
                              auto_delete=self.auto_delete)

    def dead_letter_exchange(self) -> kombu.Exchange:
        """Our own dead-letter exchange: durable, so dead letters survive restarts."""
        return kombu.Exchange(self.dead_letter_exchange_name, type="topic", durable=True)

    def dead_letter_queue(self) -> kombu.Queue:
        """Our own dead-letter queue, taking every routing key of the DLX."""
        return kombu.Queue(
            self.dead_letter_queue_name,
            exchange=self.dead_letter_exchange(),
            routing_key="#",
            durable=True,
            auto_delete=False,
        )

    def declare(self, channel: Any) -> list[kombu.Queue]:
        """Declare every exchange, queue and binding on ``channel``; return the queues.

        Raises ``QueueMismatch`` naming the queue or exchange and the options
        to change when RabbitMQ refuses a declaration (PRECONDITION_FAILED);
        the channel is unusable afterwards. Raises ``BrokerRefused`` when it
        refuses a transient queue we must declare to match the services (541,
        RabbitMQ 4.3). Connection errors pass through.
        """
        exchanges: dict[str, kombu.Exchange] = {}
        result = []
        hint = _POOL_HINT if self.pool else _MISMATCH_HINT
        for spec in self.plan():
            queue = kombu.Queue(
                spec.name,
                durable=spec.durable,
                auto_delete=spec.auto_delete,
                queue_arguments=spec.arguments or None,
                channel=channel,
            )
            for ex_name, _key in spec.bindings:
                if ex_name not in exchanges:
                    ex = self.exchange(ex_name)
                    _guard(lambda ex=ex: ex(channel).declare(), f"exchange {ex_name!r}")
                    exchanges[ex_name] = ex
            _guard(lambda queue=queue: queue.queue_declare(), f"queue {spec.name!r}", hint,
                   transient=not spec.durable)
            for ex_name, key in spec.bindings:
                channel.queue_bind(queue=spec.name, exchange=ex_name, routing_key=key)
            result.append(queue)
        dlq = self.dead_letter_queue()
        _guard(
            lambda: dlq(channel).declare(),
            f"dead-letter queue {dlq.name!r}",
            "[collector] dead_letter_queue and dead_letter_exchange must name a "
            "durable queue and topic exchange of the collector's own",
        )
        return result


def _guard(declare_fn: Any, what: str, hint: str = _MISMATCH_HINT,
           transient: bool = False) -> None:
    try:
        declare_fn()
    except amqp.exceptions.PreconditionFailed as exc:
        raise errors.QueueMismatch(
            f"RabbitMQ refused to declare {what} because it exists with other "
            f"arguments ({getattr(exc, 'reply_text', exc)}): {hint}"
        ) from None
    except amqp.exceptions.InternalError as exc:
        # 541: how RabbitMQ 4.3 answers a deprecated feature it denies.
        if not transient:
            raise
        raise errors.BrokerRefused(
            f"RabbitMQ refused to declare {what} as a transient (non-durable, "
            f"non-exclusive) queue ({exc.reply_code} {exc.reply_text}), which "
            "[oslo_messaging_rabbit] amqp_durable_queues = false asks for to match "
            "the OpenStack services: RabbitMQ 4.3 and later refuse such queues. Set "
            "amqp_durable_queues = true or rabbit_quorum_queue = true in the "
            "OpenStack services and in the collector alike"
        ) from None
