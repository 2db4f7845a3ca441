"""A guard for a test's subprocess: every connection or name lookup that is not to this machine is
refused before it leaves, and written to a log the test reads ("nothing left the machine").

    python -c "import netguard; netguard.install('refused.log'); ..."

What tests/test_hub.py's ``blocked`` fixture does in its own process, for a process that must
read HF_ENDPOINT at import (huggingface_hub and datasets derive URLs from it when imported).
"""

from __future__ import annotations

import socket

LOCAL = ("127.0.0.1", "::1", "localhost")


def install(log_path: str) -> None:
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def refuse(what) -> None:
        with open(log_path, "a") as f:
            f.write(f"{what}\n")

    def guarded_connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOCAL:
            refuse(address[0])
            raise ConnectionRefusedError(f"netguard: no connection to {address}")
        return connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and host not in LOCAL:
            refuse(host)
            raise socket.gaierror(f"netguard: no lookup of {host}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.getaddrinfo = guarded_getaddrinfo
    # huggingface_hub fetches a registry of coding agents from huggingface.co on first use; the
    # tests give it an empty one (as test_hub's hf_home fixture does).
    import huggingface_hub.utils._detect_agent as detect_agent

    detect_agent._registry = {"standardEnvVars": [], "harnesses": {}}
