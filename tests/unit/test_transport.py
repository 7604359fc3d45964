from __future__ import annotations

import ssl

import amqp.exceptions
import kombu.exceptions
import pytest

from panko_collector import errors, service
from panko_collector.broker import transport
from panko_collector.broker.transport import BrokerHost


def test_single_host_with_vhost() -> None:
    url = transport.parse_url("rabbit://user:secret@rabbit1:5673/openstack")
    assert url.hosts == (BrokerHost("rabbit1", 5673, "user", "secret"),)
    assert url.virtual_host == "openstack"
    assert url.kombu_urls() == ["amqp://user:secret@rabbit1:5673/openstack"]


def test_several_hosts_each_with_credentials() -> None:
    url = transport.parse_url("rabbit://a:pa@h1:5672,b:pb@h2:5673,c:pc@h3/vh")
    assert [h.hostname for h in url.hosts] == ["h1", "h2", "h3"]
    assert [h.port for h in url.hosts] == [5672, 5673, 5672]
    assert [h.username for h in url.hosts] == ["a", "b", "c"]
    assert [h.password for h in url.hosts] == ["pa", "pb", "pc"]
    assert len(url.kombu_urls()) == 3


def test_default_url_means_guest_on_localhost_default_vhost() -> None:
    url = transport.parse_url(transport.DEFAULT_URL)
    assert url.hosts == (BrokerHost("localhost", 5672, "guest", "guest"),)
    assert url.virtual_host == ""
    assert url.kombu_urls() == ["amqp://guest:guest@localhost:5672/"]


def test_no_host_at_all() -> None:
    expected = (BrokerHost("localhost", 5672, "guest", "guest"),)
    assert transport.parse_url("rabbit:///").hosts == expected


def test_quoted_credentials_and_vhost() -> None:
    url = transport.parse_url("rabbit://us%40er:p%3Ass%2Fw@h:5672/%2Fslashed")
    assert url.hosts[0].username == "us@er"
    assert url.hosts[0].password == "p:ss/w"
    assert url.virtual_host == "/slashed"
    assert url.kombu_urls() == ["amqp://us%40er:p%3Ass%2Fw@h:5672/%2Fslashed"]


def test_ipv6_host() -> None:
    url = transport.parse_url("rabbit://u:p@[::1]:5999/")
    assert url.hosts[0].hostname == "::1" and url.hosts[0].port == 5999
    assert url.kombu_urls() == ["amqp://u:p@[::1]:5999/"]


def test_masked_hides_every_password() -> None:
    masked = transport.parse_url("rabbit://a:topsecret@h1,b:alsosecret@h2/v").masked()
    assert "secret" not in masked
    assert "h1" in masked and "h2" in masked


@pytest.mark.parametrize("bad", ["kafka://h:9092/", "rabbit://u:p@h:port/"])
def test_rejects_what_it_cannot_use(bad: str) -> None:
    with pytest.raises(errors.ConfigError):
        transport.parse_url(bad)


def test_transport_url_is_secret() -> None:
    opt = next(o for o in transport.OPTS if o.name == "transport_url")
    assert opt.secret


def _conf(tmp_path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.conf"
    path.write_text(text)
    return service.prepare_service(["--config-file", str(path)])


def test_tls_options_become_kombu_ssl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = _conf(tmp_path, "[oslo_messaging_rabbit]\nssl = true\nssl_ca_file = /ca.pem\n"
                 "ssl_cert_file = /c.pem\nssl_key_file = /k.pem\n")
    assert transport.ssl_options(conf) == {
        "ca_certs": "/ca.pem", "certfile": "/c.pem", "keyfile": "/k.pem",
        "cert_reqs": ssl.CERT_REQUIRED,
        # None: kombu puts the host it connects to there, and py-amqp checks it.
        "server_hostname": None,
    }
    conn = transport.connection(conf)
    assert conn.ssl == transport.ssl_options(conf)


def test_host_name_check_can_be_turned_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = _conf(tmp_path, "[oslo_messaging_rabbit]\nssl = true\nssl_ca_file = /ca.pem\n"
                 "ssl_verify_hostname = false\n")
    assert transport.ssl_options(conf) == {"ca_certs": "/ca.pem", "cert_reqs": ssl.CERT_REQUIRED}
    conf = _conf(tmp_path, "[oslo_messaging_rabbit]\nssl = true\nssl_verify_hostname = false\n")
    assert transport.ssl_options(conf) is True


_URL = transport.parse_url("rabbit://u:secret@h1:5672/v")


@pytest.mark.parametrize(("exc", "setting"), [
    (amqp.exceptions.AccessRefused("ACCESS_REFUSED - Login refused", (10, 11), 403),
     "user name and password in [DEFAULT] transport_url"),
    (amqp.exceptions.NotAllowed("NOT_ALLOWED - vhost v not found", (10, 40), 530),
     "virtual host of [DEFAULT] transport_url must exist"),
    (amqp.exceptions.InternalError("INTERNAL_ERROR - Feature global_qos is deprecated.",
                                   (60, 10), 541), "amqp_durable_queues = true"),
    # The server's text is another language's: the code alone decides.
    (amqp.exceptions.AccessRefused("ZUGRIFF VERWEIGERT", (10, 11), 403), "password"),
])
def test_permanent_refusals_by_reply_code(exc: Exception, setting: str) -> None:
    wrapped = kombu.exceptions.OperationalError("wrapped")
    wrapped.__cause__ = exc
    for raised in (exc, wrapped):
        refused = transport.refusal(raised, _URL)
        assert isinstance(refused, errors.BrokerRefused)
        assert setting in str(refused)
        assert "secret" not in str(refused)


@pytest.mark.parametrize("exc", [
    amqp.exceptions.ConnectionForced("CONNECTION_FORCED - shutdown", (0, 0), 320),
    amqp.exceptions.ResourceLocked("RESOURCE_LOCKED", (50, 10), 405),
    ConnectionRefusedError(111, "Connection refused"),
    kombu.exceptions.OperationalError("[Errno 111] Connection refused"),
    # An outage worded like a refusal is still an outage.
    OSError("ACCESS_REFUSED NOT_ALLOWED 403 530"),
])
def test_outages_are_not_refusals(exc: Exception) -> None:
    assert transport.refusal(exc, _URL) is None


def test_no_tls_and_heartbeat(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = _conf(tmp_path, "[DEFAULT]\ntransport_url = rabbit://u:p@h1:1,u:p@h2:2/v\n"
                 "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 30\n")
    assert transport.ssl_options(conf) is False
    conn = transport.connection(conf)
    assert conn.heartbeat == 30
    assert [c.hostname for c in [conn]] == ["h1"]
    assert len(conn.alt) == 2


def test_each_host_is_checked_against_its_own_name(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """kombu writes the first host's name into the ssl options when
    server_hostname is None; failing over, the next host must be checked
    against its own name. Both hosts refuse the TCP connection at once."""
    import amqp.transport

    conf = _conf(tmp_path, "[DEFAULT]\ntransport_url = rabbit://u:p@127.0.0.1:1,u:p@127.0.0.2:1/v\n"
                 "[oslo_messaging_rabbit]\nssl = true\n")
    seen = []
    real_init = amqp.transport.SSLTransport.__init__

    def spy(self, host, connect_timeout=None, ssl=None, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((host, (ssl or {}).get("server_hostname")))
        real_init(self, host, connect_timeout=connect_timeout, ssl=ssl, **kwargs)

    monkeypatch.setattr(amqp.transport.SSLTransport, "__init__", spy)
    url = transport.parse_url(conf.transport_url)
    with pytest.raises(kombu.exceptions.OperationalError):
        transport.ensure_connected(transport.connection(conf, url), url)
    assert seen[:2] == [("127.0.0.1:1", "127.0.0.1"), ("127.0.0.2:1", "127.0.0.2")]
