//! Random identifiers: ids of requests, users and sessions, development secrets.

use rand::RngCore;

/// `bytes` random bytes from the thread's CSPRNG, as lowercase hex (`2 * bytes` characters).
pub fn hex(bytes: usize) -> String {
    let mut out = vec![0u8; bytes * 2];
    fill_hex(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Fills `out` with lowercase hex digits of `out.len() / 2` random bytes from the thread's
/// CSPRNG, without allocating (the gateway makes a request id per request this way).
pub fn fill_hex(out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut raw = [0u8; 64];
    for chunk in out.chunks_mut(raw.len() * 2) {
        let raw = &mut raw[..chunk.len().div_ceil(2)];
        rand::rng().fill_bytes(raw);
        for (pair, byte) in chunk.chunks_mut(2).zip(raw.iter()) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            if let Some(low) = pair.get_mut(1) {
                *low = DIGITS[usize::from(byte & 0x0f)];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_ids_have_the_asked_length_and_differ() {
        let id = super::hex(16);
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, super::hex(16));
        assert_eq!(super::hex(0), "");
        assert_eq!(
            super::hex(100).len(),
            200,
            "longer than one batch of random bytes"
        );
    }
}
