"""A standard gRPC client from another ecosystem (Python's grpcio, on gRPC C-core)
talking to an Accord node over TLS, trusting only the node's own certificate.

Usage: grpcio_client.py HOST:PORT CERT.pem TOKEN [NAME]
NAME (default: HOST) is the name the certificate must carry: a test node listens
on a loopback address of its own, with a certificate for "localhost".
Prints the health status and the size of the node's status message.
"""
import sys

import grpc


def main() -> None:
    target, cert_path, token = sys.argv[1:4]
    options = []
    if len(sys.argv) > 4:
        options.append(("grpc.ssl_target_name_override", sys.argv[4]))
    with open(cert_path, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    with grpc.secure_channel(target, credentials, options=options) as channel:
        # Raw bytes in and out: no generated code is needed for these two calls.
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        health = check(b"", timeout=10)
        status = channel.unary_unary("/accord.v1.Ledger/GetStatus")
        node_status = status(b"", metadata=[("authorization", f"Bearer {token}")], timeout=10)
        print(f"health {health.hex()}")
        print(f"status {len(node_status)}")


if __name__ == "__main__":
    main()
