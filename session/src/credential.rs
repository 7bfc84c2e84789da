//! Which credential a request carries, and where it came from.
//!
//! In this order: the session header when one is sent (`Authorization: Session <token>` or
//! `X-Session-Id: <token>`, see [`HeaderSessions`]), else the cookie as verified by actix-session
//! (primary key), else the cookie opened with an older key of the ring (rotation), else nothing.
//! Any other value (garbage, truncated, tampered, foreign) is simply "not logged in": it never
//! reaches Redis and never causes an error.

use actix_session::Session;
use actix_web::{HttpRequest, cookie::Cookie};

use crate::{
    config::HeaderSessions, handle::SessionHandle, middleware::HANDLE_ENTRY, sessions::Sessions,
};

/// Where a request's credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The session cookie, sealed with the primary key (actix-session verified it).
    Cookie,
    /// The session cookie, sealed with an older key: valid, to be sealed again.
    RotatedCookie,
    /// The session header; `rotated` when sealed with an older key.
    Header { rotated: bool },
}

/// A session handle a request presented, and how.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub(crate) handle: SessionHandle,
    pub(crate) source: Source,
}

impl Credential {
    /// The credential of `req` (see the module docs): `actix` is its actix-session state,
    /// `raw_cookie` the session cookie it sent, if any.
    pub(crate) fn of(
        req: &HttpRequest,
        sessions: &Sessions,
        actix: &Session,
        raw_cookie: Option<&Cookie<'_>>,
    ) -> Option<Self> {
        match header_token(req, sessions.header()) {
            // A session header is explicit: when it is sent, it alone counts.
            Some(token) => sessions.open(token).map(|(handle, rotated)| Self {
                handle,
                source: Source::Header { rotated },
            }),
            None => actix
                .get::<String>(HANDLE_ENTRY)
                .ok()
                .flatten()
                .and_then(|encoded| SessionHandle::decode(&encoded))
                .map(|handle| Self {
                    handle,
                    source: Source::Cookie,
                })
                .or_else(|| {
                    // actix-session knows only the primary key; an older one may still open it.
                    sessions
                        .open(raw_cookie?.value())
                        .filter(|(_, rotated)| *rotated)
                        .map(|(handle, _)| Self {
                            handle,
                            source: Source::RotatedCookie,
                        })
                }),
        }
    }
}

/// The token of the session header, if the request sends one. `Authorization` headers of other
/// schemes (`Basic`, `Bearer`, …) are not ours and are ignored.
fn header_token(req: &HttpRequest, header: HeaderSessions) -> Option<&str> {
    let value = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    match header {
        HeaderSessions::Disabled => None,
        HeaderSessions::XSessionId => value("x-session-id").map(str::trim),
        HeaderSessions::Authorization => {
            let (scheme, token) = value("authorization")?.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("session").then(|| token.trim())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_session::SessionExt;
    use actix_web::test::TestRequest;

    use super::*;
    use crate::{
        config::{SessionConfig, TEST_SECRETS},
        handle::UserId,
        keys::Keyring,
    };

    struct Setup {
        sessions: Sessions,
        handle: SessionHandle,
        /// The handle sealed with the primary key, and with the older one.
        sealed: String,
        sealed_by_old_key: String,
    }

    fn setup(header: HeaderSessions) -> Setup {
        let mut config = SessionConfig::for_tests();
        config.header = header;
        let sessions = Sessions::new(&config).expect("a lazily connected store");
        let (handle, _) = sessions.new_session(UserId::parse("alice").expect("a user id"));
        let old = Keyring::from_secrets(TEST_SECRETS[1]).expect("a keyring");
        Setup {
            sealed: sessions.seal(&handle),
            sealed_by_old_key: old.seal(sessions.cookie_name(), &handle.encode()),
            sessions,
            handle,
        }
    }

    /// The credential of a request with `headers`, a session cookie `cookie`, and actix-session
    /// state holding `verified` (what the middleware loads from a cookie of the primary key).
    fn credential(
        setup: &Setup,
        headers: &[(&str, &str)],
        cookie: Option<&str>,
        verified: Option<&SessionHandle>,
    ) -> Option<(SessionHandle, Source)> {
        let mut request = TestRequest::get();
        for &(name, value) in headers {
            request = request.insert_header((name, value));
        }
        let req = request.to_http_request();
        let actix = req.get_session();
        if let Some(handle) = verified {
            actix.insert(HANDLE_ENTRY, handle.encode()).expect("state");
        }
        let cookie = cookie.map(|value| Cookie::new("sid", value.to_owned()));
        Credential::of(&req, &setup.sessions, &actix, cookie.as_ref())
            .map(|credential| (credential.handle, credential.source))
    }

    #[actix_web::test]
    async fn a_session_header_alone_counts_when_it_is_sent() {
        let setup = setup(HeaderSessions::Authorization);
        let bearer = format!("Session {}", setup.sealed);
        let header = [("authorization", bearer.as_str())];
        let from_header = Some((setup.handle.clone(), Source::Header { rotated: false }));
        assert_eq!(credential(&setup, &header, None, None), from_header);
        assert_eq!(
            credential(
                &setup,
                &[("authorization", "Session garbage")],
                None,
                Some(&setup.handle)
            ),
            None,
            "a header that does not open is not logged in, whatever the cookie says"
        );
        let old = format!("session  {} ", setup.sealed_by_old_key);
        assert_eq!(
            credential(&setup, &[("authorization", old.as_str())], None, None),
            Some((setup.handle.clone(), Source::Header { rotated: true }))
        );
    }

    #[actix_web::test]
    async fn other_schemes_and_unconfigured_headers_are_not_sessions() {
        let authorization = setup(HeaderSessions::Authorization);
        let bearer = format!("Bearer {}", authorization.sealed);
        let x_session_id = [("x-session-id", authorization.sealed.as_str())];
        assert_eq!(
            credential(
                &authorization,
                &[("authorization", bearer.as_str())],
                None,
                None
            ),
            None
        );
        assert_eq!(credential(&authorization, &x_session_id, None, None), None);

        let x_session = setup(HeaderSessions::XSessionId);
        let x_session_id = [("x-session-id", x_session.sealed.as_str())];
        assert_eq!(
            credential(&x_session, &x_session_id, None, None),
            Some((x_session.handle.clone(), Source::Header { rotated: false }))
        );

        let disabled = setup(HeaderSessions::Disabled);
        let session = format!("Session {}", disabled.sealed);
        assert_eq!(
            credential(
                &disabled,
                &[("authorization", session.as_str())],
                None,
                None
            ),
            None
        );
    }

    #[actix_web::test]
    async fn the_cookie_counts_as_verified_or_as_opened_by_an_older_key() {
        let setup = setup(HeaderSessions::Authorization);
        assert_eq!(
            credential(&setup, &[], Some(&setup.sealed), Some(&setup.handle)),
            Some((setup.handle.clone(), Source::Cookie))
        );
        assert_eq!(
            credential(&setup, &[], Some(&setup.sealed_by_old_key), None),
            Some((setup.handle.clone(), Source::RotatedCookie))
        );
        assert_eq!(
            credential(&setup, &[], Some(&setup.sealed), None),
            None,
            "a cookie of the primary key counts only as actix-session verified it"
        );
        assert_eq!(credential(&setup, &[], Some("garbage"), None), None);
        assert_eq!(credential(&setup, &[], None, None), None);
    }
}
