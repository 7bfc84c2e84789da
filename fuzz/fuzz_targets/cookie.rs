//! Fuzzes cookie decoding, the trust boundary of every request:
//! `cargo +nightly fuzz run cookie` (see docs/src/testing.md, "Fuzzing").
//!
//! Two shapes of input per run: the bytes as a whole `Cookie` header / header token, and the
//! bytes as edits of a genuine sealed value (so the fuzzer also works right next to valid
//! input). Whatever the input, opening must not panic, and a value that differs from the
//! genuine one must not open.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use session::{Keyring, SessionHandle, UserId};

static KEYRING: LazyLock<Keyring> = LazyLock::new(|| {
    Keyring::from_secrets("fuzz-secret-fuzz-secret-fuzz-secret-fuzz,older-secret-older-secret-older-secret")
        .expect("valid secrets")
});

static GENUINE: LazyLock<String> = LazyLock::new(|| {
    KEYRING.seal("sid", &SessionHandle::new(UserId::random(), None).encode())
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // As a Cookie header: every `name=value` pair, the way a browser would send them.
        for pair in text.split(';') {
            let value = pair.split_once('=').map_or(pair, |(_, value)| value).trim();
            let _ = SessionHandle::open(&KEYRING, "sid", value);
        }
        // As a header token, and as a handle's plaintext.
        let _ = SessionHandle::open(&KEYRING, "sid", text);
        let _ = SessionHandle::decode(text);
    }

    // As edits of a genuine value: pairs of (position, xor mask).
    let mut edited = GENUINE.as_bytes().to_vec();
    for edit in data.chunks_exact(2) {
        let at = usize::from(edit[0]) % edited.len();
        edited[at] ^= edit[1];
    }
    if let Ok(text) = std::str::from_utf8(&edited) {
        let opened = SessionHandle::open(&KEYRING, "sid", text);
        if text != GENUINE.as_str() {
            assert!(opened.is_none(), "an edited value opened: {text:?}");
        }
    }
});
