#!/usr/bin/env python3
"""Time reading hostile and large JWKS documents in wasm32 (Wasmtime), the way the filter reads
a fetched key set: JSON parse, then `fetch::parse_remote_keys` (src/bin/jwks_parse.rs).

    .venv/bin/python crypto-bench/jwks_parse.py [--no-build] [--native]

Needs `cryptography` and `wasmtime` (both in the project's .venv). Prints a Markdown table:
bytes, median and fastest of 11 reads of the set as fetched (remote: keys prepared on first
use), the median of 3 reads as an inline set (every key prepared at once), and the outcome.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import devkit_path  # noqa: E402,F401  (identity_devkit on sys.path)
from identity_devkit.jwk import b64url  # noqa: E402

# A workspace member: its binaries are in the workspace's target directory.
TARGET = os.path.join(os.path.dirname(HERE), "target")
WASM = os.path.join(TARGET, "wasm32-wasip1", "release", "jwks-parse.wasm")
NATIVE = os.path.join(TARGET, "release", "jwks-parse")
MAX_KEYS = 100              # src/jwks.rs MAX_KEYS
MAX_RESPONSE_BYTES = 1 << 20  # the bound of providers[].max_response_bytes
DEFAULT_RESPONSE_BYTES = 256 << 10


def b64(n: int, size: int) -> str:
    return b64url(n.to_bytes(size, "big"))


def p384(i: int) -> dict:
    nums = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-384", "kid": f"k{i}", "x": b64(nums.x, 48), "y": b64(nums.y, 48)}


def rsa4096(numbers, i: int) -> dict:
    return {"kty": "RSA", "kid": f"k{i}", "use": "sig", "alg": "RS256",
            "n": b64(numbers.n, 512), "e": "AQAB"}


def ed(i: int) -> dict:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return {"kty": "OKP", "crv": "Ed25519", "kid": f"k{i}", "x": b64url(raw)}


def padded(keys: list, size: int, dense: bool) -> bytes:
    """A JWKS of ``keys`` with an ignored member that brings it to ``size`` bytes: one long
    string, or (``dense``) an array of zeros, the costliest JSON to parse per byte."""
    doc = {"keys": keys, "pad": [] if dense else ""}
    base = len(json.dumps(doc, separators=(",", ":")))
    room = size - base
    doc["pad"] = [0] * (room // 2) if dense else "x" * room
    out = json.dumps(doc, separators=(",", ":")).encode()
    return out[:size] if len(out) <= size else out


MAX_JSON_TOKENS = 10_000      # src/fetch.rs MAX_JSON_TOKENS


def json_tokens(body: bytes) -> int:
    """src/fetch.rs json_tokens: one, plus every `,` `[` `{` outside strings and every escape."""
    count, in_string, escaped = 1, False, False
    for b in body:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:
                escaped = True
                count += 1
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in b",[{":
            count += 1
    return count


def worst(keys: list, size: int, escapes: bool = False) -> bytes:
    """The costliest documents within the limits: ``keys``, the rest of the token budget spent
    on small values (``[0,0,...]``) or (``escapes``) on ``\\u0041`` escapes, and a plain
    string that brings the document to ``size`` bytes."""
    compact = lambda d: json.dumps(d, separators=(",", ":"))  # noqa: E731
    doc = {"keys": keys, "pad": [], "esc": "", "fill": ""}
    left = MAX_JSON_TOKENS - json_tokens(compact(doc).encode())
    if escapes:
        doc["esc"] = "A" * left  # placeholder, replaced by escapes below
    else:
        doc["pad"] = [0] * left
    text = compact(doc)
    if escapes:
        text = text.replace('"esc":"' + "A" * left + '"', '"esc":"' + "\\u0041" * left + '"')
    room = size - len(text.encode())
    text = text[:-2] + "x" * room + text[-2:]
    body = text.encode()
    assert len(body) == size and json_tokens(body) <= MAX_JSON_TOKENS, (len(body), json_tokens(body))
    return body


def escapes(size: int) -> bytes:
    """A JWKS with one long string of ``\\u0041`` escapes (over the token budget)."""
    head, tail = '{"keys":[],"pad":"', '"}'
    return (head + "\\u0041" * ((size - len(head) - len(tail)) // 6) + tail).encode()


def sets() -> dict[str, bytes]:
    compact = lambda d: json.dumps(d, separators=(",", ":")).encode()  # noqa: E731
    p384_keys = [p384(i) for i in range(MAX_KEYS)]
    rsa_numbers = rsa.generate_private_key(public_exponent=65537, key_size=4096).public_key().public_numbers()
    return {
        "issue-1300-p384": compact({"keys": [p384(i) for i in range(1300)]}),
        "max-keys-p384": compact({"keys": p384_keys}),
        "max-keys-rsa4096": compact({"keys": [rsa4096(rsa_numbers, i) for i in range(MAX_KEYS)]}),
        "max-keys-ed25519": compact({"keys": [ed(i) for i in range(MAX_KEYS)]}),
        "max-keys-p384-256k-string": padded(p384_keys, DEFAULT_RESPONSE_BYTES, dense=False),
        "max-keys-p384-256k-zeros": padded(p384_keys, DEFAULT_RESPONSE_BYTES, dense=True),
        "max-keys-p384-1m-string": padded(p384_keys, MAX_RESPONSE_BYTES, dense=False),
        "max-keys-p384-1m-zeros": padded(p384_keys, MAX_RESPONSE_BYTES, dense=True),
        "max-keys-p384-1m-escapes": escapes(MAX_RESPONSE_BYTES),
        "worst-within-limits-p384-1m-values": worst(p384_keys, MAX_RESPONSE_BYTES),
        "worst-within-limits-p384-1m-escapes": worst(p384_keys, MAX_RESPONSE_BYTES, escapes=True),
        "worst-within-limits-rsa4096-1m-values": worst(
            [rsa4096(rsa_numbers, i) for i in range(MAX_KEYS)], MAX_RESPONSE_BYTES),
    }


def run_wasm(files: list[str], data_dir: str) -> str:
    import wasmtime  # noqa: PLC0415

    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, WASM)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.define_func("bench", "thread_cpu_ns", wasmtime.FuncType([], [wasmtime.ValType.i64()]),
                       time.thread_time_ns)
    # The filter's proxy-wasm glue is linked but never called here.
    linker.define_unknown_imports_as_traps(module)
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["jwks-parse", *[f"/data/{f}" for f in files]]
    wasi.preopen_dir(data_dir, "/data")
    fd, out_path = tempfile.mkstemp(prefix="jwks-parse-", suffix=".txt")
    os.close(fd)
    wasi.stdout_file = out_path
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        if e.code:
            raise
    with open(out_path) as f:
        text = f.read()
    os.unlink(out_path)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--native", action="store_true", help="also run natively")
    a = ap.parse_args()
    if not a.no_build:
        for extra in (["--target", "wasm32-wasip1"], *([[]] if a.native else [])):
            subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "jwks",
                            "--bin", "jwks-parse", *extra], cwd=HERE, check=True)
    with tempfile.TemporaryDirectory(prefix="jwks-sets-") as data_dir:
        names = []
        for name, body in sets().items():
            with open(os.path.join(data_dir, name + ".json"), "wb") as f:
                f.write(body)
            names.append(name + ".json")
        outputs = [("wasm32", run_wasm(names, data_dir))]
        if a.native:
            native = subprocess.run([NATIVE, *[os.path.join(data_dir, n) for n in names]],
                                    capture_output=True, text=True, check=True).stdout
            outputs.append(("native", native))
    print("| target | key set | bytes | read as fetched, ms (median / fastest) | read inline (all keys prepared), ms | outcome |")
    print("|---|---|---:|---:|---:|---|")
    for target, text in outputs:
        for line in text.splitlines():
            parts = line.split("\t")
            if parts[0] == "JWKS":
                _, name, size, median, best, inline, outcome = parts
                print(f"| {target} | {name.removesuffix('.json')} | {int(size):,} | {median} / {best} | {inline} | {outcome} |")


if __name__ == "__main__":
    sys.exit(main())
