"""A real SMTP server for the tests (aiosmtpd), run as a process of its own on loopback: it
offers STARTTLS with a test certificate and requires it (or, ``implicit``, speaks TLS from the
first byte, as on port 465), writes every message it takes to a folder as ``<n>.eml``, and
refuses for good (550) every recipient whose address starts with a given prefix.

    python -m tests.smtp_server PORT FOLDER CERT KEY REFUSED_PREFIX [starttls|implicit]

``SmtpServer`` starts and stops it; ``make_certificate`` makes the certificate (for
127.0.0.1) that the notifications service is told to trust."""
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from ipaddress import IPv4Address
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Handler:
    def __init__(self, folder, refused_prefix):
        self.folder = Path(folder)
        self.refused_prefix = refused_prefix
        self.count = len(list(self.folder.glob("*.eml")))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith(self.refused_prefix):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        temporary = self.folder / f"{self.count}.part"
        temporary.write_bytes(envelope.original_content or envelope.content)
        temporary.rename(self.folder / f"{self.count}.eml")
        return "250 OK: queued"


def serve(port, folder, cert, key, refused_prefix, tls="starttls"):
    from aiosmtpd.controller import Controller

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = _Handler(folder, refused_prefix)
    if tls == "implicit":
        controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=context)
    else:
        controller = Controller(handler, hostname="127.0.0.1", port=port,
                                tls_context=context, require_starttls=True)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


def make_certificate(folder):
    """A self-signed certificate for 127.0.0.1 and its key: (certificate file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test mail server")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_file, key_file = Path(folder) / "smtp.crt", Path(folder) / "smtp.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class SmtpServer:
    """The server as a child process of the test, started and stopped at will on one port;
    ``tls`` is ``starttls`` or ``implicit``. Its certificate is made next to ``folder``."""

    def __init__(self, port, folder, refused_prefix="onbekend.", tls="starttls"):
        self.port = port
        self.tls = tls
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = make_certificate(self.folder.parent)
        self.refused_prefix = refused_prefix
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_server", str(self.port), str(self.folder),
             str(self.cert), str(self.key), self.refused_prefix, self.tls],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self):
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(15)
            self.process = None

    def received(self):
        """Every message the server took, parsed."""
        return [message_from_bytes(path.read_bytes(), policy=policy.default)
                for path in sorted(self.folder.glob("*.eml"), key=lambda p: int(p.stem))]

    def received_for(self, address, timeout=0):
        """The messages to ``address``, waiting up to ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.received() if m["To"] == address]
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.2)


if __name__ == "__main__":
    serve(int(sys.argv[1]), *sys.argv[2:7])
