"""
Raw Twisted protocols (C{Protocol}, C{Factory}, C{reactor.connectTCP}): the
floor of txtcp's overhead.  Flow control through a registered push producer.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from zope.interface import implementer

from ._common import ACK, HOST, MESSAGE, MSG, PAYLOAD, ClientJob, Clock, Ready


def run_reactor(main: Callable[[Any, Deferred[float]], None]) -> float:
    """Run the global reactor until C{main}'s Deferred fires; return its result."""
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    done: Deferred[float] = Deferred()
    out: list[Any] = []

    def finish(result: Any) -> None:
        out.append(result)
        reactor.stop()

    done.addBoth(finish)
    reactor.callWhenRunning(main, reactor, done)
    reactor.run(installSignalHandlers=False)
    if not isinstance(out[0], float):
        out[0].raiseException()
    return float(out[0])


class _Sink(Protocol):
    got = 0

    def dataReceived(self, data: bytes) -> None:
        before = self.got
        self.got += len(data)
        total = self.factory.total
        if before < total <= self.got:
            self.transport.write(ACK)  # type: ignore[union-attr]


class _Echo(Protocol):
    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def serve(kind: str, total: int, ready: Ready) -> None:
    """Serve C{kind} ("sink" or "echo") on 127.0.0.1 until killed."""
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    factory: Any = Factory.forProtocol(_Sink if kind == "sink" else _Echo)
    factory.noisy = False
    factory.total = total
    port = reactor.listenTCP(0, factory, backlog=511, interface=HOST)
    ready(port.getHost().port)
    reactor.run(installSignalHandlers=False)


@implementer(IPushProducer)
class _Bulk(Protocol):
    def __init__(self, total: int, done: Deferred[float]) -> None:
        self.total = total
        self.done = done
        self.sent = 0
        self.paused = False
        self.started = 0.0

    def connectionMade(self) -> None:
        self.started = perf_counter()
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.pump()

    def pump(self) -> None:
        write = self.transport.write  # type: ignore[union-attr]
        while not self.paused and self.sent < self.total:
            self.sent += len(PAYLOAD)
            write(PAYLOAD)
        if self.sent >= self.total:
            self.transport.unregisterProducer()  # type: ignore[union-attr]

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.pump()

    def stopProducing(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        elapsed = perf_counter() - self.started
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.done.callback(self.total / elapsed / 1e6)


class _Ping(Protocol):
    def __init__(self, clock: Clock, done: Deferred[float]) -> None:
        self.clock = clock
        self.done = done
        self.got = 0

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.transport.write(MESSAGE)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.got += len(data)
        if self.got < MSG:
            return
        self.got = 0
        if self.clock.tick():
            self.transport.write(MESSAGE)  # type: ignore[union-attr]
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]
            self.done.callback(self.clock.rate())


class _Once(Protocol):
    """One connection of the connection-rate loop: one round trip, close."""

    got = 0

    def connectionMade(self) -> None:
        self.transport.write(MESSAGE)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= MSG:
            self.transport.loseConnection()  # type: ignore[union-attr]
            self.factory.next()


class _OnceFactory(ClientFactory):
    noisy = False
    protocol = _Once

    def __init__(self, reactor: Any, port: int, clock: Clock, done: Deferred[float]) -> None:
        self.reactor = reactor
        self.port = port
        self.clock = clock
        self.done = done

    def next(self) -> None:
        if self.clock.tick():
            self.reactor.connectTCP(HOST, self.port, self)
        else:
            self.done.callback(self.clock.rate())

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.done.errback(reason)


def client(job: ClientJob) -> float:
    """Run C{job}; return MB/s, round trips/s or connections/s."""

    def main(reactor: Any, done: Deferred[float]) -> None:
        if job.workload == "connrate":
            _OnceFactory(reactor, job.port, Clock(job.seconds), done).next()
            return
        proto: Protocol
        if job.workload == "bulk":
            proto = _Bulk(job.total, done)
        else:
            proto = _Ping(Clock(job.seconds), done)
        factory: Any = ClientFactory.forProtocol(lambda: proto)
        factory.noisy = False
        factory.clientConnectionFailed = lambda connector, reason: done.errback(reason)
        reactor.connectTCP(HOST, job.port, factory)

    return run_reactor(main)
