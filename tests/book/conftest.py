"""Fixtures for the checks of the built HTML book (run after `make book`)."""

import functools
import http.server
import threading

import pytest
from book_pages import HTML


@pytest.fixture(scope="session")
def html_dir():
    assert (HTML / "index.html").exists(), "no built book in _build/html: run `make book` first"
    return HTML


@pytest.fixture(scope="session")
def server(html_dir):
    """Serve the built book on a loopback port for the browser."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html_dir))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
