//! Random identifiers: ids of requests, users and sessions, development secrets.

use rand::RngCore;

/// `bytes` random bytes from the thread's CSPRNG, as lowercase hex (`2 * bytes` characters).
pub fn hex(bytes: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    let mut out = String::with_capacity(bytes * 2);
    for byte in raw {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
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
    }
}
