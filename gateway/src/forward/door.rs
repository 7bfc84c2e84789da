//! Between admission and sending: the door check of a route that says `auth = "<name>"`
//! ([`DoorCheck`]), as Traefik's ForwardAuth and nginx's `auth_request` do it.
//!
//! The gateway asks the check's upstream (for sessions: the reader's `GET /session`) with the
//! request's own headers, already rewritten for an upstream (so the cookie and any session
//! header go along, hop-by-hop headers do not), no body, and what the check may want to know of
//! the original request: `X-Forwarded-Method` and `X-Forwarded-Uri` (`X-Forwarded-Host` and
//! `-Proto` are among the rewritten headers already). A 2xx answer lets the request through with
//! the answer's named headers (`X-User-Id`) set on it; any other answer, a 401 or the session
//! store's 503, goes back to the client as it is. The gateway itself knows no session format,
//! and caches nothing: a logout takes effect at the door with the next request. A route with
//! `allow_groups` also wants one of its groups among those the passing answer names in
//! `X-User-Groups`; without one the request is forbidden (403) and goes nowhere.
//!
//! What the client sent under a vouched name, or under any `x-user-` name, never gets through,
//! however it is spelled: CGI, WSGI, PHP and Rack turn `X-User-Id`, `x-user-id` and `X_User_Id`
//! into the one variable `HTTP_X_USER_ID`, so every spelling is removed, from the headers and
//! from the trailers of the body. And the route's upstream does not get the session itself (the
//! cookie, a session header), a credential for the whole origin, unless the check says
//! `pass_session = true`.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header, uri::PathAndQuery};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use crate::{
    capacity::Tickets,
    error::GatewayError,
    forward::{
        Served,
        admit::Outgoing,
        send::{self, Sent},
    },
    generation::Generation,
    http_ext::body::{self, Body, BoxError},
    routes::DoorCheck,
    upstream::streamed::Streamed,
};

/// What the method and the target of the checked request are sent as.
pub static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The most of a passing answer's body the gateway reads (and drops) to keep its connection.
const PASSING_BODY_LIMIT: usize = 64 * 1024;

/// Where the groups of a passing answer are: comma-separated, as the reader writes them.
static X_USER_GROUPS: HeaderName = HeaderName::from_static("x-user-groups");

/// The names every door check keeps for itself, whatever its `headers`: identity headers are
/// named so, and an upstream behind the door may read any of them (`X-User-Admin`) as vouched.
const USER_PREFIX: &[u8] = b"x-user-";

/// The check's verdict on one request.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it: the check's headers are on it now.
    Pass,
    /// Answer the client with the check's own answer.
    Refuse(Sent),
    /// The check passed, but the user is in none of the route's `allow_groups`.
    Forbidden,
}

/// Asks `check` about the request in `outgoing` (whose target as the client sent it is
/// `client_target`), and on a pass, when the route lets the user's groups in, sets the check's
/// headers on it.
pub async fn check(
    worker: usize,
    generation: &Generation,
    check: &DoorCheck,
    outgoing: &mut Outgoing<'_>,
    client_target: &PathAndQuery,
) -> Result<Verdict, GatewayError> {
    scrub(
        outgoing,
        check,
        generation.table.settings.underscores_in_headers,
    );
    let asking = asking(generation, check, outgoing, client_target)?;
    let mut served = Served::default();
    let sent = send::send(worker, generation, asking, &mut served)
        .await
        .map_err(|err| GatewayError::CheckUnavailable {
            check: check.name.clone(),
            cause: Box::new(err),
        })?;
    if !sent.response.status().is_success() {
        return Ok(Verdict::Refuse(sent));
    }
    let Sent {
        response,
        connection,
        in_flight,
    } = sent;
    let (parts, body) = response.into_parts();
    let verdict = match &outgoing.route.allow_groups {
        Some(allowed) if !in_any_group(&parts.headers, allowed) => Verdict::Forbidden,
        _ => {
            let_through(outgoing, check, &parts.headers);
            Verdict::Pass
        }
    };
    // Read the (normally empty) body to its end, so that the connection goes back to the pool.
    let body = Limited::new(
        Streamed::new(body, connection, in_flight, Tickets::default()),
        PASSING_BODY_LIMIT,
    );
    if let Err(err) = body.collect().await {
        tracing::debug!(check = %check.name, error = %err, "a passing check's body was not read to its end");
    }
    Ok(verdict)
}

/// Whether the groups a passing answer names in `X-User-Groups` (comma-separated, each
/// trimmed; absent: none) include one of `allowed`. Compared as bytes, without copying: a
/// provider's group names may be any UTF-8, which a header value carries as it is.
fn in_any_group(answer: &HeaderMap, allowed: &[String]) -> bool {
    answer
        .get_all(&X_USER_GROUPS)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .any(|group| allowed.iter().any(|name| name.as_bytes() == group))
}

/// Whatever the client sent under the names the check vouches for, or under any `x-user-`
/// name, in any spelling, is never believed, pass or not: neither the check nor the upstream
/// sees it. Removes them from the headers, from the trailers `Trailer` announces, and from the
/// trailers of the body.
fn scrub(outgoing: &mut Outgoing<'_>, check: &DoorCheck, underscores: bool) {
    remove_spellings(&mut outgoing.headers, &check.headers);
    announce_no_vouched_trailers(&mut outgoing.headers, &check.headers);
    let body = std::mem::replace(&mut outgoing.body, body::empty());
    outgoing.body = ScrubbedTrailers {
        body,
        vouched: Arc::clone(&check.headers),
        underscores,
    }
    .boxed();
}

/// The request that asks `check` about `outgoing`: its headers without a body, and the
/// original method and target.
fn asking<'a>(
    generation: &'a Generation,
    check: &'a DoorCheck,
    outgoing: &Outgoing<'_>,
    client_target: &PathAndQuery,
) -> Result<Outgoing<'a>, GatewayError> {
    let pool = generation
        .pool(&check.route.upstream.name)
        .ok_or(GatewayError::NoRoute)?;
    let mut headers = outgoing.headers.clone();
    for framing in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING] {
        headers.remove(framing);
    }
    set(&mut headers, &X_FORWARDED_METHOD, outgoing.method.as_str());
    set(&mut headers, &X_FORWARDED_URI, client_target.as_str());
    Ok(Outgoing {
        route: &check.route,
        pool,
        method: Method::GET,
        headers,
        path_and_query: check.target.clone(),
        body: body::empty(),
        upgrade: false,
    })
}

/// A pass: the check's named headers (from its `answer`) go onto the request, and the session
/// comes off it unless the check passes it on.
fn let_through(outgoing: &mut Outgoing<'_>, check: &DoorCheck, answer: &HeaderMap) {
    for name in check.headers.iter() {
        for value in answer.get_all(name) {
            outgoing.headers.append(name.clone(), value.clone());
        }
    }
    if !check.pass_session {
        withhold_session(&mut outgoing.headers, &check.session_cookie);
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), value);
    }
}

/// Whether the field name `name` is a spelling of `vouched` that CGI-style servers read as the
/// same variable: `_` for `-` (names are lower case already).
fn spells(name: &str, vouched: &HeaderName) -> bool {
    let vouched = vouched.as_str();
    name.len() == vouched.len()
        && name
            .bytes()
            .zip(vouched.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Whether the field name `name` starts with `x-user-` as CGI-style servers read it (`_` for
/// `-`; names are lower case already).
fn is_user_field(name: &str) -> bool {
    name.as_bytes()
        .get(..USER_PREFIX.len())
        .is_some_and(|start| {
            start
                .iter()
                .zip(USER_PREFIX)
                .all(|(&a, &b)| a == b || (a == b'_' && b == b'-'))
        })
}

/// Whether a field named `name` is the check's to set: an `x-user-` name, or a spelling of
/// one of `vouched`.
fn is_vouched(name: &str, vouched: &[HeaderName]) -> bool {
    is_user_field(name) || vouched.iter().any(|vouched| spells(name, vouched))
}

/// Removes every field whose name is an `x-user-` name or spells one of `vouched`.
fn remove_spellings(headers: &mut HeaderMap, vouched: &[HeaderName]) {
    let spelled: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_vouched(name.as_str(), vouched))
        .cloned()
        .collect();
    for name in spelled {
        headers.remove(name);
    }
}

/// `Trailer` announces the trailer fields to come (RFC 9110 §6.6.2): vouched and `x-user-`
/// names are taken out of it, as they are out of the trailers themselves.
fn announce_no_vouched_trailers(headers: &mut HeaderMap, vouched: &[HeaderName]) {
    if !headers.contains_key(header::TRAILER) {
        return;
    }
    let announced: Vec<String> = headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty() && !is_vouched(name, vouched))
        .collect();
    headers.remove(header::TRAILER);
    if !announced.is_empty() {
        set(headers, &header::TRAILER, &announced.join(", "));
    }
}

/// Takes the session out of a request for the route's upstream: the session cookie (others
/// stay), `Authorization: Session …` and `X-Session-Id`.
fn withhold_session(headers: &mut HeaderMap, cookie: &str) {
    if headers.contains_key(header::COOKIE) {
        let kept: Vec<&str> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .map(str::trim)
            .filter(|pair| {
                !pair.is_empty() && pair.split_once('=').map_or(*pair, |(name, _)| name) != cookie
            })
            .collect();
        let kept = kept.join("; ");
        headers.remove(header::COOKIE);
        if !kept.is_empty() {
            set(headers, &header::COOKIE, &kept);
        }
    }
    let session_scheme = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_whitespace().next())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("session"));
    if session_scheme {
        headers.remove(header::AUTHORIZATION);
    }
    headers.remove(&X_SESSION_ID);
}

static X_SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");

/// A request body whose trailers lose every spelling of the vouched and `x-user-` names (and,
/// unless `underscores`, every name with `_`), as the headers did.
struct ScrubbedTrailers {
    body: Body,
    vouched: Arc<[HeaderName]>,
    underscores: bool,
}

impl HttpBody for ScrubbedTrailers {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let Poll::Ready(Some(Ok(frame))) = polled else {
            return polled;
        };
        let frame = match frame.into_trailers() {
            Ok(mut trailers) => {
                remove_spellings(&mut trailers, &self.vouched);
                if !self.underscores {
                    let underscored: Vec<HeaderName> = trailers
                        .keys()
                        .filter(|name| name.as_str().contains('_'))
                        .cloned()
                        .collect();
                    for name in underscored {
                        trailers.remove(name);
                    }
                }
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_str(value).expect("value"),
                )
            })
            .collect()
    }

    #[test]
    fn every_spelling_of_a_vouched_name_is_removed() {
        let vouched = [
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("x-auth-role"),
        ];
        let mut headers = map(&[
            ("x-user-id", "a"),
            ("X_User_Id", "b"),
            ("x_user-id", "c"),
            ("x-auth-role", "d"),
            ("X_Auth_Role", "e"),
            ("x-auth-rolex", "kept"),
            ("x-user", "kept"),
            ("x-username", "kept"),
        ]);
        remove_spellings(&mut headers, &vouched);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-auth-rolex", "x-user", "x-username"]);
    }

    /// Every `x-user-` name is the check's, in its `headers` or not: an upstream may trust
    /// `X-User-Admin` as much as `X-User-Id`.
    #[test]
    fn every_x_user_name_is_removed_whatever_the_check_vouches_for() {
        let vouched = [HeaderName::from_static("x-user-id")];
        let mut headers = map(&[
            ("X-User-Groups", "admins"),
            ("X-User-Admin", "true"),
            ("x_user_email", "boss@example.com"),
            ("x-user_name", "Boss"),
            ("X_USER-", "odd"),
            ("x-user", "kept"),
            ("x-userx-id", "kept"),
            ("x-users-id", "kept"),
            ("accept", "kept"),
        ]);
        remove_spellings(&mut headers, &vouched);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-user", "x-users-id", "x-userx-id"]);
    }

    #[test]
    fn vouched_names_are_not_announced_as_trailers() {
        let vouched = [HeaderName::from_static("x-user-id")];
        let mut headers = map(&[(
            "trailer",
            "X-User-Id, x-checksum, X_USER_ID, X-User-Groups, x_user_admin",
        )]);
        announce_no_vouched_trailers(&mut headers, &vouched);
        assert_eq!(headers["trailer"], "x-checksum");
        let mut only = map(&[("trailer", "x-user-id")]);
        announce_no_vouched_trailers(&mut only, &vouched);
        assert!(!only.contains_key("trailer"));
    }

    /// The trailers of a body lose the same names as the headers.
    #[tokio::test]
    async fn vouched_and_x_user_trailers_are_removed_from_the_body() {
        let trailers = map(&[
            ("x-user-groups", "admins"),
            ("x_user_id", "forged"),
            ("x-checksum", "1"),
        ]);
        let body = http_body_util::StreamBody::new(futures_util::stream::iter([
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"body"))),
            Ok(Frame::trailers(trailers)),
        ]));
        let scrubbed = ScrubbedTrailers {
            body: body.boxed(),
            vouched: Arc::from([HeaderName::from_static("x-user-id")]),
            underscores: true,
        };
        let collected = scrubbed.collect().await.expect("body");
        let left = collected.trailers().expect("trailers");
        assert_eq!(
            left.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-checksum"]
        );
    }

    #[test]
    fn groups_are_read_from_a_comma_separated_answer() {
        let allowed = ["admins".to_owned(), "Domain Admins".to_owned()];
        for (groups, member) in [
            (&[][..], false),
            (&["staff"][..], false),
            (&["staff,admins"][..], true),
            (&[" staff , admins "][..], true),
            (&["staff", "admins"][..], true),
            (&["Domain Admins"][..], true),
            (&["admin,sadmins,admins2"][..], false),
            (&["Admins"][..], false),
            (&[""][..], false),
        ] {
            let answer: Vec<(&str, &str)> = groups
                .iter()
                .map(|group| ("x-user-groups", *group))
                .collect();
            assert_eq!(in_any_group(&map(&answer), &allowed), member, "{groups:?}");
        }
        let utf8 = HeaderValue::from_bytes("staff,Équipe".as_bytes()).expect("obs-text");
        let mut answer = HeaderMap::new();
        answer.insert(&X_USER_GROUPS, utf8);
        assert!(in_any_group(&answer, &["Équipe".to_owned()]));
    }

    #[test]
    fn the_session_is_withheld_and_everything_else_kept() {
        let mut headers = map(&[
            ("cookie", "theme=dark; sid=sealed; lang=en"),
            ("authorization", "Session sealed"),
            ("x-session-id", "sealed"),
        ]);
        withhold_session(&mut headers, "sid");
        assert_eq!(headers["cookie"], "theme=dark; lang=en");
        assert!(!headers.contains_key("authorization"));
        assert!(!headers.contains_key("x-session-id"));

        let mut own = map(&[("cookie", "sid=sealed"), ("authorization", "Bearer api")]);
        withhold_session(&mut own, "sid");
        assert!(!own.contains_key("cookie"), "no empty Cookie is left");
        assert_eq!(own["authorization"], "Bearer api", "other schemes pass");
    }
}
