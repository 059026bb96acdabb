"""The Colab check's network guard, loaded by every Python process of the Colab-like kernel.

``colab_kernel.py`` puts this folder first on ``PYTHONPATH``, so the kernel and
every Python process it starts (``pip`` included) import this module at
start-up. It refuses every connection and name look-up that would leave the
machine, and every connection to the dead proxy the environment points
``http_proxy``/``https_proxy`` at (so a notebook that tries the network through
``urllib``, ``requests`` or ``pip`` is caught even if it swallows the error),
and appends each attempt to ``$COLAB_CHECK_NETLOG``, which the check reads.
Loopback and Unix sockets stay usable (``torch.distributed`` on 127.0.0.1, for
one). Without ``COLAB_CHECK_NETLOG`` it does nothing.
"""

import errno
import json
import os
import socket
import sys

_LOG = os.environ.get("COLAB_CHECK_NETLOG")
_DEAD_PORT = int(os.environ.get("COLAB_CHECK_DEAD_PORT", "0") or 0)


def _local_host(host) -> bool:
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in ("", "localhost", "0.0.0.0", "::", "::1", socket.gethostname()) or host.startswith("127.")


def _refuse(what: str, target) -> None:
    try:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[:4], "what": what, "target": repr(target)}) + "\n")
    except OSError:
        pass
    raise OSError(errno.ENETUNREACH, f"Colab check: no network here ({what} {target!r})")


def _check_address(what: str, family, address) -> None:
    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return  # Unix sockets and the like
    host, port = address[0], address[1]
    if not _local_host(host) or (_DEAD_PORT and port == _DEAD_PORT):
        _refuse(what, address)


if _LOG:
    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _sendto, _getaddrinfo = socket.socket.sendto, socket.getaddrinfo
    _gethostbyname, _gethostbyname_ex = socket.gethostbyname, socket.gethostbyname_ex

    def connect(self, address):
        _check_address("connect", self.family, address)
        return _connect(self, address)

    def connect_ex(self, address):
        _check_address("connect", self.family, address)
        return _connect_ex(self, address)

    def sendto(self, data, *args):
        _check_address("sendto", self.family, args[-1])
        return _sendto(self, data, *args)

    def getaddrinfo(host, port, *args, **kwargs):
        if host is not None and not _local_host(host):
            _refuse("getaddrinfo", (host, port))
        return _getaddrinfo(host, port, *args, **kwargs)

    def gethostbyname(host):
        if not _local_host(host):
            _refuse("gethostbyname", host)
        return _gethostbyname(host)

    def gethostbyname_ex(host):
        if not _local_host(host):
            _refuse("gethostbyname_ex", host)
        return _gethostbyname_ex(host)

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
    socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex = getaddrinfo, gethostbyname, gethostbyname_ex
