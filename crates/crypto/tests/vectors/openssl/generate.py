#!/usr/bin/env python3
"""Regenerate jws_signatures.json: keys made and messages signed by the `openssl` CLI.

Run from anywhere: python3 crates/crypto/tests/vectors/openssl/generate.py (needs openssl >= 3).
Every entry holds the raw public key material (hex, big-endian), the JWS signing input and the
signature in JWS form (RSA: k bytes; ECDSA: r || s; Ed25519: 64 bytes). Used by the unit tests
in crates/crypto/src/tests.rs (and src/backend/tests.rs) and by crypto-bench/.
"""
import base64, json, os, subprocess, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(*args, input=None):
    return subprocess.run(args, input=input, capture_output=True, check=True).stdout


# Its own base64url rather than the dev kit's (identity_devkit.jwk.b64url): this script runs with
# the machine's python3 and the standard library alone, and the dev kit needs `cryptography`.
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def signing_input(alg, kid):
    header = json.dumps({"alg": alg, "typ": "JWT", "kid": kid}, separators=(",", ":")).encode()
    payload = json.dumps({
        "iss": "https://issuer.example.test/realms/main",
        "sub": "6c6a0d3c-61c2-4f59-a1f0-0c8a3a5b2f11",
        "aud": ["api://orders", "api://billing"],
        "exp": 4102444800, "iat": 1700000000, "nbf": 1700000000,
        "scope": "orders:read orders:write billing:read",
        "email": "jane.doe@example.test", "roles": ["admin", "auditor"],
    }, separators=(",", ":")).encode()
    return (b64u(header) + "." + b64u(payload)).encode()


def der_ints(der):
    """Parse DER SEQUENCE { INTEGER r, INTEGER s } (openssl ECDSA output)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = []
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out.append(int.from_bytes(der[i + 2:i + 2 + n], "big"))
        i += 2 + n
    return out


def pub_text(key):
    return run("openssl", "pkey", "-in", key, "-pubout", "-text", "-noout").decode()


def hexblock(text, label):
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().startswith(label))
    hx = ""
    for l in lines[start + 1:]:
        if not l.startswith("    "):
            break
        hx += l.strip().replace(":", "")
    return bytes.fromhex(hx)


def main():
    entries = []
    with tempfile.TemporaryDirectory() as d:
        def path(n):
            return os.path.join(d, n)

        # RSA 2048, 3072, 4096 with e = 65537: RS256/384/512 and PS256/384/512.
        for bits in (2048, 3072, 4096):
            key = path(f"rsa{bits}.pem")
            run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", key)
            t = pub_text(key)
            n = hexblock(t, "Modulus:").lstrip(b"\0")
            for alg, md, pss in (("RS256", "sha256", False), ("RS384", "sha384", False), ("RS512", "sha512", False),
                                 ("PS256", "sha256", True), ("PS384", "sha384", True), ("PS512", "sha512", True)):
                if bits != 2048 and alg not in ("RS256", "PS256"):
                    continue
                msg = signing_input(alg, f"rsa{bits}")
                opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest",
                        "-sigopt", f"rsa_mgf1_md:{md}"] if pss else []
                sig = run("openssl", "dgst", f"-{md}", "-sign", key, *opts, input=msg)
                entries.append({"alg": alg, "bits": bits, "n": n.hex(), "e": "010001",
                                "msg": msg.decode(), "sig": sig.hex()})
        # ECDSA P-256 / P-384.
        for alg, curve, md, flen in (("ES256", "P-256", "sha256", 32), ("ES384", "P-384", "sha384", 48)):
            key = path(f"{curve}.pem")
            run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-out", key)
            pub = hexblock(pub_text(key), "pub:")
            assert pub[0] == 4 and len(pub) == 1 + 2 * flen
            msg = signing_input(alg, curve)
            r, s = der_ints(run("openssl", "dgst", f"-{md}", "-sign", key, input=msg))
            sig = r.to_bytes(flen, "big") + s.to_bytes(flen, "big")
            entries.append({"alg": alg, "x": pub[1:1 + flen].hex(), "y": pub[1 + flen:].hex(),
                            "msg": msg.decode(), "sig": sig.hex()})
        # Ed25519.
        key = path("ed25519.pem")
        run("openssl", "genpkey", "-algorithm", "ED25519", "-out", key)
        pub = hexblock(pub_text(key), "pub:")
        msg = signing_input("EdDSA", "ed25519")
        mf = path("msg")
        with open(mf, "wb") as f:
            f.write(msg)
        sig = run("openssl", "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", mf)
        entries.append({"alg": "EdDSA", "x": pub.hex(), "msg": msg.decode(), "sig": sig.hex()})

    with open(os.path.join(HERE, "jws_signatures.json"), "w") as f:
        json.dump({"generator": "crates/crypto/tests/vectors/openssl/generate.py", "openssl": run("openssl", "version").decode().strip(),
                   "entries": entries}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
