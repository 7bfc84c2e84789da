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

/// A fresh id: 128 random bits as 32 hex digits.
pub fn generate() -> String {
    crate::random::hex(16)
}

/// The incoming id when valid, else a fresh one.
pub fn keep_or_generate(incoming: Option<&[u8]>) -> String {
    match incoming {
        Some(value) if is_valid(value) => String::from_utf8_lossy(value).into_owned(),
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_kept() {
        assert_eq!(keep_or_generate(Some(b"abc-123")), "abc-123");
        let uuid = b"6f1c2a4e-0b8d-4b9e-9f3a-2c1d5e7f8a9b";
        assert_eq!(keep_or_generate(Some(uuid)).as_bytes(), uuid);
    }

    #[test]
    fn invalid_ids_are_replaced() {
        let too_long = vec![b'a'; MAX_LEN + 1];
        for bad in [&b""[..], b"a b", b"line\nbreak", "é".as_bytes(), &too_long] {
            let id = keep_or_generate(Some(bad));
            assert_ne!(id.as_bytes(), bad);
            assert!(is_valid(id.as_bytes()));
        }
        assert_eq!(generate().len(), 32);
        assert_ne!(generate(), generate());
    }
}
