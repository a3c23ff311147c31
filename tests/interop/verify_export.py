"""Verifies an `accord export --format jsonl` file with no Accord code: Python's
`cryptography` for Ed25519 and SHA-256 from the standard library.

For every line: the signature verifies over `entry` (the exact signed bytes) under
`key`; `entry` is the tag "accord/v1/entry\\0" and an encoded Entry protobuf whose
author, seq, prev and timestamp (read here with a few lines of protobuf wire
parsing) are the line's; `id` is SHA-256 of "accord/v1/entry-id\\0" and the encoded
Entry; and each author's log links: seq 1 has no prev, seq n's prev is the id of
seq n-1.

    python3 verify_export.py EXPORT.jsonl

Prints "verified N entries of M authors"; exits 1 with the line number and what is
wrong on the first problem.
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TAG = b"accord/v1/entry\0"
ID_TAG = b"accord/v1/entry-id\0"


def varint(buf, i):
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def fields(buf):
    """Field number -> last value: an int (varint) or bytes (length-delimited)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], i = varint(buf, i)
        elif wire == 2:
            length, i = varint(buf, i)
            out[number] = buf[i : i + length]
            i += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def check(line, heads):
    entry = json.loads(line)
    signed = base64.b64decode(entry["entry"], validate=True)
    signature = base64.b64decode(entry["signature"], validate=True)
    key = bytes.fromhex(entry["key"])
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, signed)
    except InvalidSignature:
        raise ValueError("the signature does not verify")
    if not signed.startswith(TAG):
        raise ValueError("the signed bytes do not start with the entry tag")
    encoded = signed[len(TAG) :]
    if hashlib.sha256(ID_TAG + encoded).hexdigest() != entry["id"]:
        raise ValueError("id is not the hash of the signed entry")
    f = fields(encoded)
    if f.get(2, b"") != key:
        raise ValueError("the signed author is not key")
    if f.get(3, 0) != entry["seq"]:
        raise ValueError("the signed seq is not seq")
    if f.get(4, b"").hex() != entry["prev"]:
        raise ValueError("the signed prev is not prev")
    if f.get(5, 0) != entry["timestamp_ms"]:
        raise ValueError("the signed timestamp is not timestamp_ms")
    seq, last = entry["seq"], heads.get(entry["key"])
    if seq == 1:
        if entry["prev"] != "" or last is not None:
            raise ValueError("seq 1 with a prev, or a second seq 1")
    elif last is None or last != (seq - 1, entry["prev"]):
        raise ValueError(f"seq {seq} does not link to the author's entry {seq - 1}")
    heads[entry["key"]] = (seq, entry["id"])
    return entry


def main(path):
    heads = {}
    count = 0
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                check(line, heads)
            except (ValueError, KeyError, IndexError) as e:
                sys.exit(f"{path}:{number}: {e}")
            count += 1
    print(f"verified {count} entries of {len(heads)} authors")


if __name__ == "__main__":
    main(sys.argv[1])
