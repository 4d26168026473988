//! Size probe: a wasm module that verifies RS256/PS256/ES256/ES384/EdDSA with identity-crypto
//! (keys and inputs opaque to the optimizer). `run.py --sizes` compares it with size_old.
#![allow(dead_code, unused_imports)]

use identity_crypto as crypto;

use std::hint::black_box;

fn main() {
    let b = |n: usize| black_box(vec![1u8; n]);
    let mut ok = 0;
    if let Ok(k) = crypto::RsaPublicKey::new(&b(256), &b(3)) {
        ok += u32::from(k.verify_pkcs1v15(crypto::HashAlg::Sha256, &b(10), &b(256)));
        ok += u32::from(k.verify_pss(crypto::HashAlg::Sha256, &b(10), &b(256)));
    }
    for curve in [crypto::EcCurve::P256, crypto::EcCurve::P384] {
        if let Ok(k) = crypto::EcPublicKey::new(curve, &b(32), &b(32)) {
            ok += u32::from(k.verify(&b(10), &b(64)));
        }
    }
    if let Ok(k) = crypto::Ed25519PublicKey::new(&b(32)) {
        ok += u32::from(k.verify(&b(10), &b(64)));
    }
    println!("{ok}");
}
