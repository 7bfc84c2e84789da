//! One meaning per path: the gateway routes, and forwards, the path as RFC 3986 says it means,
//! not as it was spelled. Otherwise `/login/../_probe/x` would be routed by its `/login` prefix
//! while any upstream that resolves dot-segments serves `/_probe/x`, and a route's settings
//! (limits, timeouts, a door check) could be walked around with `..`, `//` or `%2e%2e`.
//!
//! As Envoy does with `normalize_path` and `merge_slashes`:
//!
//! 1. percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2: `%2e` is `.`,
//!    `%41` is `A`); other escapes stay as they are;
//! 2. runs of `/` become one;
//! 3. `.` and `..` segments are removed (§5.2.4 remove_dot_segments).
//!
//! What cannot be given one meaning is refused with 400: an encoded slash or backslash (`%2f`,
//! `%5c`: a segment boundary to some upstreams, not to others), a raw backslash (a separator on
//! some platforms), and a `..` that would climb above the root.

use std::borrow::Cow;

/// Why a path was refused.
pub const AMBIGUOUS: &str =
    "ambiguous path: an encoded slash or backslash, a backslash, or a '..' above the root";

/// The normalized form of `path`, borrowed when it is already normal (the common case costs
/// one scan and no allocation); `Err` for a path that has no single meaning.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, &'static str> {
    if !path.starts_with('/') {
        // `*` (OPTIONS *) and the like: nothing to resolve.
        return Ok(Cow::Borrowed(path));
    }
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = decoded.split('/').skip(1).peekable();
    // Whether the result ends with a slash: the last segment was empty, `.` or `..`.
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            // Merged slashes: an empty segment means nothing, except at the very end.
            "" => trailing_slash = last,
            "." => trailing_slash = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(AMBIGUOUS);
                }
                trailing_slash = last;
            }
            segment => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

/// No escape, backslash, `//`, or `.`/`..` segment: nothing to do.
fn is_normal(path: &[u8]) -> bool {
    let mut previous = b'/';
    for (at, &byte) in path.iter().enumerate().skip(1) {
        match byte {
            b'%' | b'\\' => return false,
            b'/' if previous == b'/' => return false,
            b'.' if previous == b'/' => {
                let rest = &path[at..];
                let segment = rest.split(|&b| b == b'/').next().unwrap_or_default();
                if segment == b"." || segment == b".." {
                    return false;
                }
            }
            _ => {}
        }
        previous = byte;
    }
    true
}

/// Decodes `%XX` of unreserved characters; refuses encoded `/` and `\` and a raw `\`.
fn decode_unreserved(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => return Err(AMBIGUOUS),
            b'%' => {
                let hex = bytes
                    .get(at + 1..at + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok());
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(b'/' | b'\\') => return Err(AMBIGUOUS),
                    Some(byte) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                        out.push(char::from(byte));
                        at += 3;
                        continue;
                    }
                    // Another escape (or a malformed one) stays as it came.
                    _ => out.push('%'),
                }
            }
            _ => {
                // Everything else is copied as it came; the path is ASCII (hyper checked it).
                out.push(char::from(bytes[at]));
            }
        }
        at += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for path in [
            "/",
            "/login",
            "/a/b/c",
            "/a/b/",
            "/.well-known/x",
            "/a/..b/c.",
            "/a.b",
        ] {
            assert!(
                matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn paths_are_given_one_meaning() {
        for (raw, normal) in [
            ("/login/../_probe/x", "/_probe/x"),
            ("/_probe/../login", "/login"),
            ("/_probe/%2e%2e/login", "/login"),
            ("/_probe/%2E%2e/login", "/login"),
            ("/_probe//x", "/_probe/x"),
            ("//login", "/login"),
            ("/_probe/./x", "/_probe/x"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/%6c%6Fgin", "/login"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/a%20b/./c", "/a%20b/c"),
            ("/a/%zz/./b", "/a/%zz/b"),
            ("/%6C%6F%67%69%6E/./x", "/login/x"),
            ("/login%/.", "/login%/"),
            ("/login%6/./", "/login%6/"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(normal), "{raw}");
        }
    }

    #[test]
    fn what_has_no_single_meaning_is_refused() {
        for raw in [
            "/..",
            "/a/../..",
            "/%2e%2e/x",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/./../x",
        ] {
            assert_eq!(normalize(raw), Err(AMBIGUOUS), "{raw}");
        }
    }
}
