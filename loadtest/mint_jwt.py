"""Mint an HS256 JWT for the loadtest's auth run: mint_jwt.py SUB ISS KID.

The secret comes from $LT_JWT_SECRET, the variable the generated config names.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


sub, iss, kid = sys.argv[1:4]
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
claims = b64(json.dumps({"sub": sub, "iss": iss, "exp": int(time.time()) + 3600}).encode())
sig = b64(hmac.new(os.environ["LT_JWT_SECRET"].encode(), head + b"." + claims, hashlib.sha256).digest())
print((head + b"." + claims + b"." + sig).decode())
