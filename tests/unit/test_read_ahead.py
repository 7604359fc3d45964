"""Read-ahead on the broker socket, through py-amqp's own frame reader."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from amqp.transport import SSLTransport, TCPTransport

from panko_collector.broker import read_ahead


def frame(channel: int, payload: bytes) -> bytes:
    """An AMQP frame (type 3, body) as a broker sends it."""
    return struct.pack(">BHI", 3, channel, len(payload)) + payload + b"\xce"


class CountingSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls = 0

    def recv(self, n: int) -> bytes:
        self.calls += 1
        return self.sock.recv(n)

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, broker = socket.socketpair()
    ours.settimeout(0.05)
    yield ours, broker
    ours.close()
    broker.close()


def plain_transport(sock: socket.socket) -> TCPTransport:
    transport = TCPTransport("localhost:5672")
    transport.sock = sock
    transport._setup_transport()
    return transport


def kombu_like(transport: Any) -> Any:
    return SimpleNamespace(connection=SimpleNamespace(transport=transport))


def test_hands_out_what_was_asked_in_order_from_one_recv(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, broker = pair
    data = bytes(range(256)) * 40
    broker.sendall(data)
    counting = CountingSocket(ours)
    recv = read_ahead.ReadAhead(counting)
    got = b""
    while len(got) < len(data):
        piece = recv(7)
        assert 0 < len(piece) <= 7
        got += piece
    assert got == data
    assert counting.calls == 1  # 10 kB arrive in one read, not 1,463


def test_timeouts_and_the_peer_closing_come_through(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, broker = pair
    recv = read_ahead.ReadAhead(ours)
    with pytest.raises(TimeoutError):
        recv(10)
    broker.sendall(b"abc")
    assert recv(10) == b"abc"
    with pytest.raises(TimeoutError):  # drained: the socket is asked again
        recv(10)
    broker.close()
    assert recv(10) == b""


@pytest.mark.parametrize("waiting", ["socket timeout", "reader wait"])
def test_py_amqp_reads_frames_across_chunks_and_timeouts(
        pair: tuple[socket.socket, socket.socket], waiting: str) -> None:
    ours, broker = pair
    transport = plain_transport(ours)
    reader = read_ahead.install(kombu_like(transport))
    assert reader is not None and transport._quick_recv is reader
    if waiting == "reader wait":  # as drain() does: a blocking socket, polled
        ours.settimeout(None)
        reader.wait = 0.05
    big = b"x" * (3 * read_ahead.CHUNK + 17)  # larger than a chunk
    small = [f"notification {i}".encode() for i in range(50)]
    broker.sendall(b"".join(frame(1, p) for p in small[:25]) + frame(2, big)
                   + b"".join(frame(1, p) for p in small[25:]))
    received = [transport.read_frame() for _ in range(51)]
    assert [p for _, _, p in received] == [*small[:25], big, *small[25:]]
    assert [c for _, c, _ in received] == [1] * 25 + [2] + [1] * 25
    # Nothing more: py-amqp's timeout; then half a frame: a timeout that
    # keeps the half; the rest completes it.
    with pytest.raises(TimeoutError):
        transport.read_frame()
    whole = frame(5, b"split across two reads")
    broker.sendall(whole[:10])
    with pytest.raises(TimeoutError):
        transport.read_frame()
    broker.sendall(whole[10:])
    assert transport.read_frame() == (3, 5, b"split across two reads")


def test_drain_waits_through_the_reader_and_lifts_the_wait_after() -> None:
    reader = read_ahead.ReadAhead(socket.socket())
    seen: list[Any] = []

    class Connection:
        def drain_events(self, timeout: float | None = None) -> None:
            seen.append((timeout, reader.wait))
            raise TimeoutError

    with pytest.raises(TimeoutError):
        read_ahead.drain(Connection(), reader, 0.25)
    assert seen == [(None, 0.25)] and reader.wait is None
    read_ahead.drain(SimpleNamespace(drain_events=lambda timeout: seen.append(timeout)),
                     None, 0.25)
    assert seen[-1] == 0.25


def test_installed_once_and_never_on_tls(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    transport = plain_transport(ours)
    assert read_ahead.install(kombu_like(transport))
    first = transport._quick_recv
    assert not read_ahead.install(kombu_like(transport))
    assert transport._quick_recv is first
    tls = SSLTransport("localhost:5671")
    tls.sock = ours
    assert not read_ahead.install(kombu_like(tls))
    assert not read_ahead.install(SimpleNamespace(connection=None))
