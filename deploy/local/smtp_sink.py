#!/usr/bin/env python3
"""A real SMTP server on loopback for tests (aiosmtpd), storing what arrives so tests can count it.

Each accepted message is written once per envelope recipient as
`<dir>/<recipient, lowercased>/<uuid>.eml`, so concurrent tests that use unique addresses
count only their own mail. The file is written to a temporary name and renamed, so a reader
never sees half a message.

With `--tls-cert` and `--tls-key` (PEM files) it offers STARTTLS and refuses mail until the
client has started TLS, as a relay that requires it does.
"""
import argparse
import os
import ssl
import time
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, root):
        self.root = root

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        for rcpt in envelope.rcpt_tos:
            folder = os.path.join(self.root, rcpt.lower().replace("/", "_"))
            os.makedirs(folder, exist_ok=True)
            name = uuid.uuid4().hex
            tmp = os.path.join(folder, "." + name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, os.path.join(folder, name + ".eml"))
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", default="/tmp/pos-smtp")
    parser.add_argument("--tls-cert", help="PEM certificate: offer STARTTLS and require it")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    os.makedirs(args.dir, exist_ok=True)
    tls = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        tls = {"tls_context": context, "require_starttls": True}
    controller = Controller(
        Sink(args.dir), hostname="127.0.0.1", port=args.port, data_size_limit=10 * 1024 * 1024, **tls
    )
    controller.start()
    mode = " (STARTTLS required)" if tls else ""
    print(f"smtp sink on 127.0.0.1:{args.port}{mode} writing to {args.dir}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
