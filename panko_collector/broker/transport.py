"""Where the broker is and how to reach it: oslo.messaging URLs to kombu connections.

Operators already hold a ``transport_url`` in the oslo.messaging form
(``rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost``) and the
``[oslo_messaging_rabbit]`` TLS and heartbeat options; this module reads the
same options with the same meanings and builds one kombu failover connection
that walks through every host.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import amqp.exceptions
import kombu
from oslo_config import cfg

from panko_collector import errors

DEFAULT_URL = "rabbit://guest:guest@localhost:5672/"

OPTS = [
    cfg.StrOpt(
        "transport_url",
        default=DEFAULT_URL,
        secret=True,
        help="The RabbitMQ broker in the oslo.messaging form "
        "rabbit://USER:PASS@HOST:PORT[,USER:PASS@HOST:PORT...]/VHOST; "
        "with several hosts the collector fails over from one to the next.",
    ),
]

RABBIT_OPTS = [
    cfg.BoolOpt("ssl", default=False, help="Connect to the broker over TLS."),
    cfg.StrOpt(
        "ssl_ca_file",
        default="",
        help="Certificate authority file to verify the broker's certificate with "
        "(valid only if ssl is enabled); when set the certificate must verify.",
    ),
    cfg.StrOpt(
        "ssl_cert_file",
        default="",
        help="Client certificate file presented to the broker (valid only if ssl is enabled).",
    ),
    cfg.StrOpt(
        "ssl_key_file",
        default="",
        help="Private key of the client certificate (valid only if ssl is enabled).",
    ),
    cfg.BoolOpt(
        "ssl_verify_hostname",
        default=True,
        help="Refuse a broker whose certificate does not name the host it is "
        "reached at (the host of transport_url; localhost is reached as "
        "127.0.0.1). Turn off only for certificates issued without the "
        "broker's name: any certificate the CA signed is then accepted "
        "(valid only if ssl is enabled).",
    ),
    cfg.IntOpt(
        "heartbeat_timeout_threshold",
        default=60,
        min=0,
        help="Seconds after which the broker is considered down when its "
        "heartbeats stop (0 disables heartbeats).",
    ),
    cfg.IntOpt(
        "rabbit_retry_interval",
        default=1,
        min=1,
        help="Seconds to wait before the first reconnection attempt to the broker.",
    ),
    cfg.IntOpt(
        "rabbit_interval_max",
        default=30,
        min=1,
        help="Longest wait in seconds between reconnection attempts to the broker.",
    ),
]


@dataclass(frozen=True, slots=True)
class BrokerHost:
    """One broker of a transport URL, with the credentials to use there."""

    hostname: str
    port: int
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class TransportURL:
    """A parsed oslo.messaging transport URL."""

    transport: str
    hosts: tuple[BrokerHost, ...]
    virtual_host: str

    def kombu_urls(self) -> list[str]:
        """One ``amqp://`` URL per host, in the order given."""
        vhost = quote(self.virtual_host, safe="")
        urls = []
        for h in self.hosts:
            hostname = f"[{h.hostname}]" if ":" in h.hostname else h.hostname
            urls.append(
                f"amqp://{quote(h.username, safe='')}:{quote(h.password, safe='')}"
                f"@{hostname}:{h.port}/{vhost}"
            )
        return urls

    def masked(self) -> str:
        """The URL with passwords hidden, for logs."""
        hosts = ",".join(
            f"{h.username}:***@{h.hostname}:{h.port}" if h.username else f"{h.hostname}:{h.port}"
            for h in self.hosts
        )
        return f"{self.transport}://{hosts}/{self.virtual_host}"


def parse_url(url: str) -> TransportURL:
    """Parse an oslo.messaging ``rabbit://`` URL.

    Each comma-separated host carries its own credentials (none given means
    guest/guest, as oslo.messaging does when the URL names no host at all);
    the port defaults to 5672; the virtual host is the path without its
    leading slash, empty meaning RabbitMQ's default ``/``. Raises
    ``ConfigError`` naming the problem for anything else.
    """
    parts = urlsplit(url)
    transport = parts.scheme
    if transport.split("+")[-1] not in ("rabbit", "amqp"):
        raise errors.ConfigError(
            f"[DEFAULT] transport_url: unsupported transport {transport!r}; "
            "use rabbit://USER:PASS@HOST:PORT/VHOST"
        )
    hosts: list[BrokerHost] = []
    netloc = parts.netloc
    for item in netloc.split(",") if netloc else []:
        username = password = ""
        hostport = item
        if "@" in item:
            creds, hostport = item.rsplit("@", 1)
            username, _, password = creds.partition(":")
            username, password = unquote(username), unquote(password)
        hostname, port = _split_hostport(hostport)
        hosts.append(BrokerHost(hostname or "localhost", port, username, password))
    if not hosts:
        hosts.append(BrokerHost("localhost", 5672, "guest", "guest"))
    vhost = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    return TransportURL(transport, tuple(hosts), vhost)


def _split_hostport(hostport: str) -> tuple[str, int]:
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, ""
    if not port_text:
        return host, 5672
    try:
        return host, int(port_text)
    except ValueError:
        raise errors.ConfigError(
            f"[DEFAULT] transport_url: invalid port {port_text!r} for host {host!r}"
        ) from None


def ssl_options(conf: cfg.ConfigOpts) -> dict[str, Any] | bool:
    """kombu's ``ssl`` argument from ``[oslo_messaging_rabbit]``."""
    group = conf.oslo_messaging_rabbit
    if not group.ssl:
        return False
    params: dict[str, Any] = {}
    if group.ssl_verify_hostname:
        # None: kombu fills in the host it is connecting to, and py-amqp then
        # checks the certificate against it (and sends it as SNI).
        params["server_hostname"] = None
        params["cert_reqs"] = ssl.CERT_REQUIRED
    if group.ssl_key_file:
        params["keyfile"] = group.ssl_key_file
    if group.ssl_cert_file:
        params["certfile"] = group.ssl_cert_file
    if group.ssl_ca_file:
        params["ca_certs"] = group.ssl_ca_file
        params["cert_reqs"] = ssl.CERT_REQUIRED
    return params or True


def connection(conf: cfg.ConfigOpts, url: TransportURL | None = None,
               name: str = "panko-collector") -> kombu.Connection:
    """A new, not yet connected kombu connection with failover over every host.

    ``name`` is what RabbitMQ shows as its connection name. Nothing is
    contacted here; ``ensure_connection`` on the result connects and raises
    kombu's ``OperationalError`` when no host answers.
    """
    url = url or parse_url(conf.transport_url)
    return kombu.Connection(
        ";".join(url.kombu_urls()),
        ssl=ssl_options(conf),
        heartbeat=conf.oslo_messaging_rabbit.heartbeat_timeout_threshold,
        failover_strategy="round-robin",
        connect_timeout=5,
        transport_options={
            # Dead-lettering publishes before it acks; the confirm makes sure
            # the broker holds the copy before the original goes away.
            "confirm_publish": True,
            "client_properties": {"connection_name": name},
        },
    )


def ensure_connected(conn: kombu.Connection, url: TransportURL) -> None:
    """Connect ``conn``, trying each host of ``url`` once.

    Raises kombu's ``OperationalError`` when no host answers; py-amqp's
    error of the first host that refuses us (see ``refusal``), without
    trying the others.
    """
    def next_host(_exc: BaseException, _interval: float) -> None:
        # kombu writes the host it connects to into the ssl options when
        # server_hostname is None; undo it so the next host is checked
        # against its own name, not the previous one's.
        if isinstance(conn.ssl, dict) and "server_hostname" in conn.ssl:
            conn.ssl["server_hostname"] = None

    conn.ensure_connection(errback=next_host, max_retries=len(url.hosts),
                           interval_start=0, interval_step=0, interval_max=0)


#: AMQP reply codes of refusals that no retry can cure, and what to change.
_PERMANENT = {
    402: "the virtual host of [DEFAULT] transport_url is not a valid name",
    403: "check the user name and password in [DEFAULT] transport_url, and the "
         "user's permissions on the virtual host (rabbitmqctl list_permissions -p VHOST)",
    530: "the virtual host of [DEFAULT] transport_url must exist (rabbitmqctl "
         "list_vhosts) and the user must have permissions on it",
    541: "RabbitMQ 4.3 and later deny deprecated features by default: transient "
         "non-exclusive queues (set [oslo_messaging_rabbit] amqp_durable_queues = true "
         "or rabbit_quorum_queue = true, in the OpenStack services too) and global "
         "prefetch; see the broker's log for the feature it refused",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (kombu wraps py-amqp's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def refusal(exc: BaseException, url: TransportURL) -> errors.BrokerRefused | None:
    """``BrokerRefused`` naming cause and setting if ``exc`` is a permanent refusal.

    Classified by the AMQP reply code of py-amqp's exception (wherever it
    is in the chain), never by its text; None for everything else, which
    is treated as an outage and retried.
    """
    for item in _chain(exc):
        if isinstance(item, amqp.exceptions.AMQPError):
            hint = _PERMANENT.get(item.reply_code or 0)
            if hint is None:
                return None
            return errors.BrokerRefused(
                f"RabbitMQ at {url.masked()} refused us ({item.reply_code} "
                f"{item.reply_text}): {hint}"
            )
    return None


def describe(exc: BaseException) -> str:
    """``exc`` for a log line, with the setting to look at when TLS refused the broker."""
    text = str(exc) or type(exc).__name__
    for item in _chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            if item.verify_code in (_X509_HOSTNAME_MISMATCH, _X509_IP_ADDRESS_MISMATCH):
                return (f"{text}: the broker's TLS certificate does not name the host "
                        "of [DEFAULT] transport_url; use the name the certificate "
                        "carries, or set [oslo_messaging_rabbit] ssl_verify_hostname "
                        "= false")
            return (f"{text}: the broker's TLS certificate does not verify against "
                    "[oslo_messaging_rabbit] ssl_ca_file")
    return text


#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_X509_HOSTNAME_MISMATCH = 62
_X509_IP_ADDRESS_MISMATCH = 64
