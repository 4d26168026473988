//! Size probe: the same verifications through jwt-simple's pure-Rust keys (`verify_token`).
use jwt_simple::prelude::*;
use std::hint::black_box;

fn main() {
    let b = |n: usize| black_box(vec![1u8; n]);
    let t = black_box(String::from("a.b.c"));
    let mut ok = 0;
    if let Ok(k) = RS256PublicKey::from_components(&b(256), &b(3)) {
        ok += u32::from(k.verify_token::<NoCustomClaims>(&t, None).is_ok());
    }
    if let Ok(k) = PS256PublicKey::from_components(&b(256), &b(3)) {
        ok += u32::from(k.verify_token::<NoCustomClaims>(&t, None).is_ok());
    }
    if let Ok(k) = ES256PublicKey::from_bytes(&b(65)) {
        ok += u32::from(k.verify_token::<NoCustomClaims>(&t, None).is_ok());
    }
    if let Ok(k) = ES384PublicKey::from_bytes(&b(97)) {
        ok += u32::from(k.verify_token::<NoCustomClaims>(&t, None).is_ok());
    }
    if let Ok(k) = Ed25519PublicKey::from_bytes(&b(32)) {
        ok += u32::from(k.verify_token::<NoCustomClaims>(&t, None).is_ok());
    }
    println!("{ok}");
}
