//! Response compression on routes with `compress = true`: the coding is chosen from the
//! client's `Accept-Encoding` when the request is admitted ([`negotiate`]), and the response
//! body is encoded on the fly as it streams back ([`apply`]), never buffered.
//!
//! Off by default: compressing a page that mixes a secret with text an attacker chose lets the
//! attacker guess the secret from the sizes (BREACH). Some responses are never compressed
//! whatever the route says: see [`apply`].

use std::io;

use async_compression::{
    Level,
    tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder},
};
use futures_util::TryStreamExt;
use http::{
    HeaderMap, HeaderValue, Method, StatusCode,
    header::{
        ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
        CONTENT_RANGE, CONTENT_TYPE, ETAG, VARY,
    },
    response::Parts,
};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::http_ext::body::{Body, BoxError};

/// Bodies declared shorter than this are sent as they are: the coding's own framing would eat
/// most of the gain.
pub const MIN_LENGTH: u64 = 1024;

/// Brotli's quality for on-the-fly encoding: its default (11) is meant for files compressed
/// once, and costs far too much per response.
const BROTLI_QUALITY: i32 = 4;

/// What a request on a compressing route asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The response may be encoded with this coding.
    Encode(Coding),
    /// The response is sent as it is (nothing acceptable, or a `HEAD`), yet it still varies
    /// with `Accept-Encoding`.
    Identity,
}

/// The codings the gateway encodes with, in its own order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    /// Preferred first, for equal client weights.
    const ALL: [Self; 3] = [Self::Br, Self::Zstd, Self::Gzip];

    /// The coding's name in `Content-Encoding` (RFC 9110 §8.4.1).
    pub fn name(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }
}

/// The choice for a request with `method` and `headers` (RFC 9110 §12.5.3): the coding with the
/// client's highest weight (`q`), the gateway's order between equal ones; `q=0` refuses a
/// coding, `*` stands for every coding not named. A `HEAD` is never encoded: its response has no
/// body to encode and must announce the same headers as a `GET` only when that is encoded too.
pub fn negotiate(method: &Method, headers: &HeaderMap) -> Choice {
    if method == Method::HEAD {
        return Choice::Identity;
    }
    // Weights in thousandths, as RFC 9110 §12.4.2 writes them (at most three decimals).
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut any: Option<u16> = None;
    let elements = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for element in elements {
        let mut params = element.split(';');
        let coding = params.next().unwrap_or_default().trim();
        let Some(weight) = weight(params) else {
            continue;
        };
        if coding == "*" {
            any = Some(weight);
        } else if let Some(index) = Coding::ALL
            .iter()
            .position(|known| coding.eq_ignore_ascii_case(known.name()))
        {
            named[index] = Some(weight);
        } else if coding.eq_ignore_ascii_case("x-gzip") {
            // The old name of gzip (RFC 9110 §8.4.1.3), counted as gzip unless that is named.
            named[2].get_or_insert(weight);
        }
    }
    let mut best: Option<(Coding, u16)> = None;
    for (coding, weight) in Coding::ALL.into_iter().zip(named) {
        let weight = weight.or(any).unwrap_or(0);
        if weight > 0 && best.is_none_or(|(_, top)| weight > top) {
            best = Some((coding, weight));
        }
    }
    best.map_or(Choice::Identity, |(coding, _)| Choice::Encode(coding))
}

/// The weight of an `Accept-Encoding` element from its parameters, in thousandths: 1000
/// without `q`; `None` for a malformed one, which is ignored.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut weight = 1000;
    for param in params.filter(|param| !param.trim().is_empty()) {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let digits_ok = fraction.len() <= 3 && fraction.bytes().all(|b| b.is_ascii_digit());
        weight = match whole {
            "0" if digits_ok => {
                let padded = format!("{fraction:0<3}");
                padded.parse().ok()?
            }
            "1" if digits_ok && fraction.bytes().all(|b| b == b'0') => 1000,
            _ => return None,
        };
    }
    Some(weight)
}

/// The response to send for `choice`: `Vary: Accept-Encoding` in every case, since the choice
/// depended on it, and the body encoded unless the response is one that must be sent as it is:
///
/// - no body or not a plain one: `1xx` (and `101` tunnels), `204`, `304`;
/// - a part of a representation: `206` or any `Content-Range` (its ranges count the
///   representation's bytes, which encoding would change);
/// - already encoded (`Content-Encoding` other than `identity`);
/// - `Cache-Control: no-transform` (RFC 9110 §7.7: a proxy must not change the content);
/// - declared shorter than [`MIN_LENGTH`];
/// - `text/event-stream`: an encoder holds back what it was given until it has enough to
///   encode, and each event must reach the client when it is sent.
///
/// An encoded response loses its `Content-Length` (it is streamed) and `Accept-Ranges`, and a
/// strong `ETag` becomes weak: the encoded bytes are not those the tag names (RFC 9110 §8.8.1).
pub fn apply(choice: Choice, parts: &mut Parts, body: Body) -> Body {
    add_vary(&mut parts.headers);
    let Choice::Encode(coding) = choice else {
        return body;
    };
    if !encodable(parts.status, &parts.headers) {
        return body;
    }
    let headers = &mut parts.headers;
    headers.remove(CONTENT_LENGTH);
    // A range of the encoded bytes, made anew for each response, could not be served.
    headers.remove(ACCEPT_RANGES);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
    if let Some(tag) = headers.get(ETAG)
        && !tag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(tag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(ETAG, weak);
        }
    }
    encode(coding, body)
}

/// Whether a response with `status` and `headers` may be encoded (see [`apply`]).
fn encodable(status: StatusCode, headers: &HeaderMap) -> bool {
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
        )
        || headers.contains_key(CONTENT_RANGE)
    {
        return false;
    }
    let encoded = headers.get_all(CONTENT_ENCODING).iter().any(|value| {
        !value
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"identity")
    });
    if encoded || has_token(headers, &CACHE_CONTROL, "no-transform") {
        return false;
    }
    let small = headers
        .get(CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok())
        .is_some_and(|length| length < MIN_LENGTH);
    if small {
        return false;
    }
    let event_stream = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim())
        .is_some_and(|media| media.eq_ignore_ascii_case("text/event-stream"));
    !event_stream
}

/// Whether a comma-separated header `name` holds `token` (its parameters aside).
fn has_token(headers: &HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let item = item.split(['=', ';']).next().unwrap_or_default().trim();
            item.eq_ignore_ascii_case(token)
        })
}

/// Adds `Accept-Encoding` to `Vary` unless it is named there already (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap) {
    if has_token(headers, &VARY, "accept-encoding") || has_token(headers, &VARY, "*") {
        return;
    }
    headers.append(VARY, HeaderValue::from_static("accept-encoding"));
}

/// `body`, encoded with `coding` as it streams. Trailers are dropped: they may describe the
/// bytes before encoding.
fn encode(coding: Coding, body: Body) -> Body {
    let read = StreamReader::new(body.into_data_stream().map_err(io::Error::other));
    match coding {
        Coding::Br => streamed(BrotliEncoder::with_quality(
            read,
            Level::Precise(BROTLI_QUALITY),
        )),
        Coding::Zstd => streamed(ZstdEncoder::new(read)),
        Coding::Gzip => streamed(GzipEncoder::new(read)),
    }
}

/// The bytes `encoder` reads, as a body.
fn streamed(encoder: impl AsyncRead + Send + Sync + 'static) -> Body {
    let frames = ReaderStream::new(encoder)
        .map_ok(Frame::data)
        .map_err(BoxError::from);
    StreamBody::new(frames).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(accept: &str) -> Choice {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_str(accept).expect("header"),
        );
        negotiate(&Method::GET, &headers)
    }

    #[test]
    fn the_clients_weight_then_the_gateways_order() {
        assert_eq!(
            choice("gzip, deflate, br, zstd"),
            Choice::Encode(Coding::Br)
        );
        assert_eq!(choice("gzip;q=1, br;q=0.5"), Choice::Encode(Coding::Gzip));
        assert_eq!(choice("gzip, zstd"), Choice::Encode(Coding::Zstd));
        assert_eq!(choice("br;q=0, *"), Choice::Encode(Coding::Zstd));
        assert_eq!(choice("*;q=0.1, gzip;q=0.2"), Choice::Encode(Coding::Gzip));
        assert_eq!(choice("GZIP ; Q=0.001"), Choice::Encode(Coding::Gzip));
        assert_eq!(choice("x-gzip"), Choice::Encode(Coding::Gzip));
    }

    #[test]
    fn refused_unknown_or_malformed_is_identity() {
        assert_eq!(choice("gzip;q=0"), Choice::Identity);
        assert_eq!(choice("*;q=0"), Choice::Identity);
        assert_eq!(choice("identity, deflate"), Choice::Identity);
        assert_eq!(choice("gzip;q=2, br;q=0.0001"), Choice::Identity);
        assert_eq!(choice(""), Choice::Identity);
        assert_eq!(negotiate(&Method::GET, &HeaderMap::new()), Choice::Identity);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(negotiate(&Method::HEAD, &headers), Choice::Identity);
    }

    #[test]
    fn vary_is_extended_once() {
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("origin"));
        add_vary(&mut headers);
        add_vary(&mut headers);
        let vary: Vec<_> = headers.get_all(VARY).iter().collect();
        assert_eq!(vary, ["origin", "accept-encoding"]);
    }
}
