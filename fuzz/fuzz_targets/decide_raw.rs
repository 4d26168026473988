//! The request decision on raw bytes: a request in the text form of `fuzz_support::request`
//! (method, path, authority, headers) against one of the harness configurations. Checked:
//! no panic, cached = uncached = repeated decision, clean headers, a verified caller's token
//! verifies independently, time budget.
#![no_main]

use fuzz_support::{check, request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: fuzz_support::seeds::write_if_asked("decide_raw"),
    |data: &[u8]| {
    let req = request::parse(data);
    check::with_engines(req.config, |cached, caches, uncached| {
        let jwks = check::inline_jwks(&cached.config);
        check::decide_all(
            (cached, caches),
            uncached,
            None,
            &req.facts,
            req.now,
            &jwks,
        );
    });
});
