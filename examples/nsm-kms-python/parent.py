"""The parent instance's side of nsm-kms-python: hand the enclave credentials, print its answer.

An enclave cannot reach the instance metadata service, so the parent fetches the instance
role's credentials (boto3's chain: on EC2, IMDS) and sends them with the key to use, as one
JSON line, over vsock. It never sees the data key: only its SHA-256 and the
``CiphertextBlob`` to store.

    python3 parent.py [--cid 16] [--port 5010] [--key-id alias/nsm-kms-python] [--region us-east-1]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

import boto3

REPLY_LIMIT = 64 * 1024


def ask(cid: int, port: int, request: dict[str, object], timeout: float) -> dict[str, object]:
    with socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect((cid, port))
        connection.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while b"\n" not in data and len(data) <= REPLY_LIMIT:
            chunk = connection.recv(4096)
            if not chunk:
                break
            data += chunk
    reply: dict[str, object] = json.loads(data.split(b"\n", 1)[0])
    return reply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cid", type=int, default=16, help="the enclave's CID")
    parser.add_argument("--port", type=int, default=5010)
    parser.add_argument("--key-id", default="alias/nsm-kms-python")
    parser.add_argument("--region", default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    session = boto3.session.Session(region_name=args.region)
    credentials = session.get_credentials()
    if credentials is None:
        print("parent: no AWS credentials (the instance role's, from IMDS)", file=sys.stderr)
        return 1
    frozen = credentials.get_frozen_credentials()
    request = {
        "key_id": args.key_id,
        "region": session.region_name or "us-east-1",
        "credentials": {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "session_token": frozen.token or "",
        },
    }
    reply = ask(args.cid, args.port, request, args.timeout)
    print(json.dumps(reply))
    return 0 if "error" not in reply and reply.get("decrypt_matches") is True else 1


if __name__ == "__main__":
    sys.exit(main())
