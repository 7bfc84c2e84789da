//! Request ids: one id follows a request through the gateway and the services behind it.
//!
//! An incoming `X-Request-Id` is kept when it looks like an id (1 to 128 characters of
//! `A-Z a-z 0-9 - _ . : / + = @`), so ids from a client or an outer proxy join the logs up;
//! anything else (empty, too long, spaces, control or non-ASCII bytes) is replaced by a fresh id,
//! so a client cannot inject text into log lines.

/// The header carrying the id, in both directions.
pub const HEADER: &str = "x-request-id";

/// Longest id kept from a request.
pub const MAX_LEN: usize = 128;

/// Whether `value` may be used as a request id as is.
pub fn is_valid(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// Length of a generated id.
pub const GENERATED_LEN: usize = 32;

/// A fresh id (128 random bits as 32 hex digits) written into `out`, without allocating: every
/// request without a usable id gets one.
pub fn generate_into(out: &mut [u8; GENERATED_LEN]) {
    crate::random::fill_hex(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_look_like_ids_are_valid() {
        assert!(is_valid(b"abc-123"));
        assert!(is_valid(b"6f1c2a4e-0b8d-4b9e-9f3a-2c1d5e7f8a9b"));
        let too_long = vec![b'a'; MAX_LEN + 1];
        for bad in [
            &b""[..],
            b"a b",
            b"line\nbreak",
            "\u{e9}".as_bytes(),
            &too_long,
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_differ() {
        let (mut a, mut b) = ([0u8; GENERATED_LEN], [0u8; GENERATED_LEN]);
        generate_into(&mut a);
        generate_into(&mut b);
        assert!(is_valid(&a) && is_valid(&b));
        assert_ne!(a, b);
    }
}
