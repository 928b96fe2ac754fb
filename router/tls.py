"""Mutual TLS between stores: the server and client SSL contexts. (The dialer hands its
context to the event loop; the acceptor runs TLS itself over memory BIOs, see `inbound`.)"""

from __future__ import annotations

import ssl

__all__ = ["make_ssl_contexts"]


def make_ssl_contexts(
    ca_file: str, cert_file: str, key_file: str, *, check_hostname: bool = False
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Mutual TLS between stores: (server context, client context). Both present
    `cert_file` and require the peer's certificate to chain to `ca_file`. A store's identity
    is "holds a certificate of the cluster CA"; host names are checked only on request (store
    addresses are often bare IPs absent from certificates)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.check_hostname = check_hostname
    client.verify_mode = ssl.CERT_REQUIRED
    client.load_cert_chain(cert_file, key_file)
    return server, client
