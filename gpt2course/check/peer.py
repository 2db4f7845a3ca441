"""One side of the judge-worker conversation: requests, replies, handles and proxies.

Both processes hold a ``Peer``. ``request`` sends an operation and waits for its reply,
serving, meanwhile, what the other side asks in return (a learner's ``generate_tokens``
calling the check's stand-in model, which lives in the judge). Objects that cannot travel
as values stay where they are and cross as handles; a ``Proxy`` is the far side's view of
one: calling it, or reading an attribute, is a request to the side that holds it.
"""

from __future__ import annotations

import contextlib
import threading

from gpt2course.check import wire


class RemoteError(Exception):
    """The other side's operation raised; ``error`` is its description (a dict)."""

    def __init__(self, error: dict):
        self.error = error if isinstance(error, dict) else {"type": "wire", "message": str(error)}
        super().__init__(self.error.get("message", ""))


class Proxy:
    """An object the other side holds. ``proxy(...)`` calls it there; ``proxy.name`` reads it."""

    def __init__(self, peer: "Peer", ref: int, label: str = "object"):
        object.__setattr__(self, "_peer", peer)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_label", label)

    def __call__(self, *args, **kwargs):
        return self._peer.call(self, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._peer.getattr(self, name)

    def __repr__(self) -> str:
        return f"<{self._label} in the {self._peer.far} process>"


class Peer:
    """``own``: the tag this side uses for its handles ("$w" or "$j"); ``serve(op, header, value)``
    answers the other side's operations besides call and getattr."""

    def __init__(self, channel: wire.Channel, own: str, far: str, serve=None, resolve_extra=None):
        self.channel, self.own, self.far = channel, own, far
        self.other = "$j" if own == "$w" else "$w"
        self.serve_extra, self.resolve_extra = serve, resolve_extra
        self.objects: dict[int, object] = {}
        self.refs: dict[int, int] = {}       # id(obj) -> ref, so one object keeps one handle
        self.proxies: dict[int, Proxy] = {}  # the other side's ref -> one proxy (identity kept)
        self.lock = threading.Lock()
        self.on_notice = None
        self.on_error = None                 # makes an exception of ours into an error dict
        self.wrap = None                     # wrap(message): a context around our objects' calls
        self.alerts: list[str] = []          # what the other side's replies reported (the worker's)
        self.take_alerts = None              # () -> what our replies report (the worker's fence)

    # -- using the other side's objects (the judge replaces these to add its context) -----
    def call(self, proxy: "Proxy", args, kwargs):
        return self.request({"op": "call", "target": proxy._ref}, (list(args), kwargs))

    def getattr(self, proxy: "Proxy", name: str):
        return self.request({"op": "getattr", "target": proxy._ref, "name": name}, None)

    # -- values ---------------------------------------------------------------------------
    def handle(self, obj) -> dict:
        ref = self.refs.get(id(obj))
        if ref is None:
            ref = len(self.objects) + 1
            self.objects[ref], self.refs[id(obj)] = obj, ref
        return {self.own: ref}

    def resolve(self, tag: dict):
        (kind, body), = tag.items()
        if kind == self.own:
            if body not in self.objects:
                raise wire.WireError(f"a handle {body!r} this side never gave")
            return self.objects[body]
        if kind == self.other:
            if not isinstance(body, int):
                raise wire.WireError(f"a handle {body!r}")
            if body not in self.proxies:
                self.proxies[body] = Proxy(self, body)
            return self.proxies[body]
        if self.resolve_extra is not None:
            return self.resolve_extra(tag)
        raise wire.WireError(f"an unknown tag {kind!r}")

    def _out(self, value):
        def handle(obj):
            if isinstance(obj, Proxy):
                if obj._peer is not self:
                    raise TypeError(f"{obj!r} belongs to a process that has ended")
                return {self.other: obj._ref}
            return self.handle(obj)
        return wire.encode(value, handle, configs=self.own == "$j")

    # -- messages -------------------------------------------------------------------------
    def send(self, header: dict, value=None) -> None:
        body, blobs = self._out(value)
        with self.lock:
            self.channel.send(dict(header, value=body), blobs)

    def notify(self, header: dict) -> None:
        """A message that needs no reply (a progress line)."""
        with self.lock:
            self.channel.send(dict(header, kind="notice"))

    def request(self, header: dict, value):
        self.send(dict(header, kind="request"), value)
        while True:
            message, blobs = self.channel.receive()
            kind = message.get("kind")
            alerts = message.get("alerts")
            if isinstance(alerts, list):
                self.alerts.extend(str(a)[:500] for a in alerts[:100])
            if kind == "reply":
                return wire.decode(message.get("value"), blobs, self.resolve)
            if kind == "raise":
                raise RemoteError(message.get("error"))
            if kind == "notice":
                if self.on_notice is not None:
                    self.on_notice(message)
                continue
            if kind == "request":
                self.answer(message, blobs)
                continue
            raise wire.WireError(f"a message of kind {kind!r}")

    def answer(self, message: dict, blobs) -> None:
        """Runs one of the other side's requests and sends its reply (or what it raised)."""
        try:
            value = wire.decode(message.get("value"), blobs, self.resolve)
            result = self.run(message, value)
        except wire.Closed:
            raise
        except BaseException as exc:  # noqa: BLE001 - whatever learner code raises is reported
            if isinstance(exc, KeyboardInterrupt):
                raise
            error = self.on_error(exc, message) if self.on_error else {
                "type": "error", "message": f"{type(exc).__name__}: {exc}"}
            self.send(self._reported({"kind": "raise", "error": error}))
            return
        header = self._reported({"kind": "reply"})
        try:
            self.send(header, result)
        except TypeError as exc:
            self.send(dict(header, kind="raise", error={"type": "wire", "message": str(exc)}))

    def _reported(self, header: dict) -> dict:
        """A reply's header, with what ``take_alerts`` has to report since the last reply."""
        found = self.take_alerts() if self.take_alerts is not None else []
        return dict(header, alerts=found) if found else header

    def run(self, message: dict, value):
        op = message.get("op")
        if op in ("call", "getattr"):
            target = self.target(message)
            with (self.wrap(message) if self.wrap is not None else _nothing()):
                if op == "getattr":
                    return getattr(target, str(message.get("name")))
                args, kwargs = value
                return target(*args, **kwargs)
        if self.serve_extra is not None:
            return self.serve_extra(op, message, value)
        raise wire.WireError(f"an unknown operation {op!r}")

    def target(self, message: dict):
        ref = message.get("target")
        if ref not in self.objects:
            raise wire.WireError(f"a handle {ref!r} this side never gave")
        return self.objects[ref]

    def serve_forever(self) -> None:
        """The worker's loop: answer requests until the judge closes the pipe."""
        while True:
            try:
                message, blobs = self.channel.receive()
            except wire.Closed:
                return
            if message.get("kind") != "request":
                raise wire.WireError(f"expected a request, got {message.get('kind')!r}")
            self.answer(message, blobs)


@contextlib.contextmanager
def _nothing():
    yield
