"""
Shared fixtures.  The tests run on one Twisted reactor for the whole session
(pytest-twisted); every wait has a timeout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parent.parent
# The dropin folder and the tests' helpers are found from the checkout.
for entry in (str(ROOT), str(ROOT / "tests")):
    if entry not in sys.path:
        sys.path.insert(0, entry)


class Certs:
    """A test CA, a server certificate for localhost / 127.0.0.1 / ::1, and
    the files that hold them."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("localhost", "127.0.0.1", "::1")
        self.ca_path = str(directory / "ca.pem")
        self.server_path = str(directory / "server.pem")
        self.cert_path = str(directory / "server-cert.pem")
        self.key_path = str(directory / "server-key.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        self.server.private_key_and_cert_chain_pem.write_to_path(self.server_path)
        self.server.cert_chain_pems[0].write_to_path(self.cert_path)
        self.server.private_key_pem.write_to_path(self.key_path)
        other = trustme.CA()
        self.other_ca_path = str(directory / "other-ca.pem")
        other.cert_pem.write_to_path(self.other_ca_path)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """TLS material from a throw-away CA."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def fd_baseline() -> Iterator[int]:
    """The number of open file descriptors before the test."""
    yield len(os.listdir("/proc/self/fd"))
