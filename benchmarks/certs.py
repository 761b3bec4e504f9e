"""A throw-away certificate for the TLS scenarios, made once per run in a temporary directory.

Every server gets the same files: a certificate for 127.0.0.1 (ECDSA P-256, what trustme
issues and what most sites serve today) signed by a test CA, and its key.  The load generators
do not verify certificates (wrk never does); the one probe request before measuring does,
against the CA, so a server serving something else fails instead of scoring.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["TLSFiles", "tls_files"]


@dataclass(frozen=True)
class TLSFiles:
    certfile: str
    keyfile: str
    cafile: str

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA (for the probe)."""
        return ssl.create_default_context(cafile=self.cafile)


@cache
def tls_files() -> TLSFiles:
    """Write the files once; they are removed when the benchmark process exits."""
    try:
        import trustme
    except ImportError:  # pragma: no cover - the test extra installs it
        raise RuntimeError("the TLS scenarios need trustme: pip install trustme") from None
    directory = Path(tempfile.mkdtemp(prefix="dualcorn-bench-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(str(directory / "cert.pem"), str(directory / "key.pem"),
                     str(directory / "ca.pem"))  # fmt: skip
    leaf.cert_chain_pems[0].write_to_path(files.certfile)
    leaf.private_key_pem.write_to_path(files.keyfile)
    ca.cert_pem.write_to_path(files.cafile)
    return files
