//! [`CurrentSession`]: what a handler knows about the session of its request, and the only way
//! handlers touch the store.
//!
//! A request's credential is its session header when it sends one, else its cookie (the order
//! and the key rotation are in `credential.rs`). Anything that does not open is simply "not
//! logged in": it never reaches Redis and never causes an error.

use std::{future::Future, time::Duration};

use actix_session::{Session, SessionExt};
use actix_web::{
    FromRequest, HttpMessage, HttpRequest, HttpResponseBuilder, cookie::Cookie, dev::Payload, web,
};
use futures_util::future::{Ready, ready};

use crate::{
    action::Action,
    credential::{Credential, Source},
    cross_site::{self, Verdict},
    error::ApiError,
    handle::{SessionHandle, UserId},
    identity::{self, Device, Identity, Method, Value},
    metrics::{EndReason, LoginResult, metrics},
    middleware::HANDLE_ENTRY,
    sessions::Sessions,
    store::{RedisStore, StoreError},
};

/// Response header carrying a header session's token sealed again with the current key, after
/// a request that used a token sealed with an older one.
pub const REFRESHED_TOKEN_HEADER: &str = "x-session-token";

/// A token to send back in [`REFRESHED_TOKEN_HEADER`] (set by [`CurrentSession`], written into
/// the response by the service middleware).
#[derive(Debug, Clone)]
pub struct RefreshedToken(pub String);

/// The session of the current request, extracted from its header or cookie (see the module
/// docs).
#[derive(Clone)]
pub struct CurrentSession {
    pub(crate) sessions: Sessions,
    actix: Session,
    request: HttpRequest,
    pub(crate) credential: Option<Credential>,
    /// A cookie with the session cookie's name was sent, valid or not.
    cookie_sent: bool,
}

impl std::fmt::Debug for CurrentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentSession")
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub user: UserId,
    pub count: i64,
    /// True when the request was already logged in as this user (the session was renewed).
    pub renewed: bool,
    /// For a header session: the token to send in the session header from now on.
    pub token: Option<String>,
}

/// How the client keeps its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A cookie, set by the response (browsers).
    Cookie,
    /// A token in the login response's body, sent back in the session header (API and mobile
    /// clients). No cookie is set.
    Header,
}

/// What a logout has to add to its response.
#[derive(Debug)]
#[must_use = "the cookie must be expired on the response"]
pub struct Logout {
    removal: Option<Cookie<'static>>,
}

impl Logout {
    /// Adds the `Set-Cookie` that expires the session cookie when actix-session will not (it only
    /// does so for cookies it could verify itself).
    pub fn expire_cookie(&self, response: &mut HttpResponseBuilder) {
        if let Some(removal) = &self.removal {
            response.cookie(removal.clone());
        }
    }
}

/// Who a login is for.
#[derive(Debug, Clone)]
pub enum LoginAs {
    /// The open demo login: the current user if logged in, else a new random user.
    CurrentOrNew,
    /// A user who proved who they are here (a password).
    User(UserId, Identity),
    /// A user an identity provider vouched for, coming back from it. The request is a
    /// navigation from the provider's site, so the cross-site rule cannot tell it from an
    /// attack; the pending login bound to this browser shows that this site started it.
    FromProvider(UserId, Identity),
}

impl LoginAs {
    fn user(&self) -> Option<&UserId> {
        match self {
            Self::CurrentOrNew => None,
            Self::User(user, _) | Self::FromProvider(user, _) => Some(user),
        }
    }
}

/// A live session as a read finds it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub user: UserId,
    pub count: i64,
    pub identity: Identity,
}

impl CurrentSession {
    /// Whether the request's credential came in the session header (an API or mobile client).
    pub fn uses_header(&self) -> bool {
        matches!(
            self.credential,
            Some(Credential {
                source: Source::Header { .. },
                ..
            })
        )
    }

    /// The logged-in user, as far as the credential says. The session may still have ended
    /// server-side; only the store operations below know for sure.
    pub fn claimed_user(&self) -> Option<&UserId> {
        self.credential
            .as_ref()
            .map(|credential| credential.handle.user())
    }

    /// The user, count and identity of a live session, restarting its idle timeout. One Redis
    /// command.
    pub async fn read(&self) -> Result<LiveSession, ApiError> {
        let (credential, raw) = self.on_live_session(RedisStore::read).await?;
        let value = Value::split(&raw).ok_or_else(|| {
            ApiError::Unexpected(anyhow::anyhow!("a session value without a count"))
        })?;
        Ok(LiveSession {
            user: credential.handle.user().clone(),
            count: value.count,
            identity: value.identity(),
        })
    }

    /// Adds one to the count of a live session and returns the new count. One Redis command.
    pub async fn increment(&self) -> Result<i64, ApiError> {
        self.refuse_cross_site(Action::Increment)?;
        let (_, count) = self.on_live_session(RedisStore::increment).await?;
        Ok(count)
    }

    /// Runs a store operation on the request's live session (its handle and how long it may
    /// still live), which answers or `None` when the session is gone; then seals a credential
    /// from an older key again. Not logged in, or gone: [`ApiError::NotLoggedIn`].
    async fn on_live_session<'a, T, F, Fut>(
        &'a self,
        operation: F,
    ) -> Result<(&'a Credential, T), ApiError>
    where
        F: FnOnce(&'a RedisStore, &'a SessionHandle, Duration) -> Fut,
        Fut: Future<Output = Result<Option<T>, StoreError>>,
    {
        let credential = self.credential.as_ref().ok_or(ApiError::NotLoggedIn)?;
        let lifetime = self
            .sessions
            .lifetime(&credential.handle)
            .ok_or(ApiError::NotLoggedIn)?;
        let count = operation(self.sessions.store(), &credential.handle, lifetime)
            .await?
            .ok_or(ApiError::NotLoggedIn)?;
        self.reseal_if_rotated(credential);
        Ok((credential, count))
    }

    /// Logs in: always a new session id (the pre-login cookie is dead afterwards), never an id
    /// sent by the client. A live session of the same user is replaced and keeps its count; a
    /// live session of another user is ended. The session keeps `device` (where it started)
    /// and what `who` says of the user.
    pub async fn login(
        &self,
        who: LoginAs,
        transport: Transport,
        device: &Device,
    ) -> Result<LoggedIn, ApiError> {
        if !matches!(who, LoginAs::FromProvider(..)) {
            self.refuse_cross_site(Action::Login)?;
        }
        let (tail, method) = match &who {
            LoginAs::CurrentOrNew => (
                identity::encode_tail(&Identity::demo(), device),
                Method::Demo,
            ),
            LoginAs::User(_, identity) | LoginAs::FromProvider(_, identity) => {
                (identity::encode_tail(identity, device), identity.method)
            }
        };
        let logged_in = self.login_with(who, transport, &tail).await;
        if logged_in.is_ok() {
            metrics().login(method, LoginResult::Success);
        }
        logged_in
    }

    /// [`Self::login`] once the session's value (after the count) is known.
    async fn login_with(
        &self,
        who: LoginAs,
        transport: Transport,
        tail: &str,
    ) -> Result<LoggedIn, ApiError> {
        let previous = self
            .credential
            .as_ref()
            .map(|credential| &credential.handle)
            .filter(|previous| self.sessions.lifetime(previous).is_some());

        if let Some(previous) = previous {
            let same_user = who.user().is_none_or(|user| user == previous.user());
            if !same_user {
                self.sessions.store().logout(previous).await?;
            } else if let Some(renewed) = self.renew(previous, transport, tail).await? {
                return Ok(renewed);
            }
            // Otherwise the previous session ended meanwhile: this is a fresh login.
        }

        let user = match who {
            LoginAs::CurrentOrNew => UserId::random(),
            LoginAs::User(user, _) | LoginAs::FromProvider(user, _) => user,
        };
        self.start(user, transport, tail).await
    }

    /// Replaces `previous` with a new session of the same user that keeps its count; `None`
    /// when `previous` ended meanwhile.
    async fn renew(
        &self,
        previous: &SessionHandle,
        transport: Transport,
        tail: &str,
    ) -> Result<Option<LoggedIn>, ApiError> {
        let (handle, lifetime) = self.sessions.new_session(previous.user().clone());
        let max_per_user = self.sessions.max_per_user();
        let renewed = self
            .sessions
            .store()
            .login(&handle, lifetime, max_per_user, Some(previous), tail)
            .await?;
        renewed
            .map(|count| self.logged_in(&handle, count, true, transport))
            .transpose()
    }

    /// A fresh session of `user`.
    async fn start(
        &self,
        user: UserId,
        transport: Transport,
        tail: &str,
    ) -> Result<LoggedIn, ApiError> {
        let (handle, lifetime) = self.sessions.new_session(user);
        let max_per_user = self.sessions.max_per_user();
        let count = self
            .sessions
            .store()
            .login(&handle, lifetime, max_per_user, None, tail)
            .await?
            .unwrap_or(0);
        self.logged_in(&handle, count, false, transport)
    }

    /// Hands the new session `handle` out (see [`Self::hand_out`]) and tells the handler.
    fn logged_in(
        &self,
        handle: &SessionHandle,
        count: i64,
        renewed: bool,
        transport: Transport,
    ) -> Result<LoggedIn, ApiError> {
        let token = self.hand_out(handle, transport)?;
        Ok(LoggedIn {
            user: handle.user().clone(),
            count,
            renewed,
            token,
        })
    }

    /// Ends the session (or, with `everywhere`, every session of its user) and expires the
    /// cookie. Without a valid session it changes nothing in Redis and still succeeds.
    pub async fn logout(&self, everywhere: bool) -> Result<Logout, ApiError> {
        self.refuse_cross_site(Action::Logout { everywhere })?;
        if let Some(credential) = &self.credential {
            if everywhere {
                let ended = self
                    .sessions
                    .store()
                    .logout_everywhere(&credential.handle)
                    .await?;
                tracing::info!(user = %credential.handle.user(), ended, "logged out everywhere");
                metrics().ended(EndReason::Everywhere, ended);
            } else {
                self.sessions.store().logout(&credential.handle).await?;
                metrics().ended(EndReason::Logout, 1);
            }
        }
        // actix-session expires the cookie itself only when it could verify it.
        self.actix.purge();
        let actix_knows_cookie =
            matches!(&self.credential, Some(credential) if credential.source == Source::Cookie);
        let removal =
            (self.cookie_sent && !actix_knows_cookie).then(|| self.sessions.removal_cookie());
        Ok(Logout { removal })
    }

    /// Refuses `action` when another site made the browser send this request (see
    /// [`cross_site`]). Every operation that changes a session calls it before touching Redis;
    /// a handler with work of its own before that (checking a password) calls it first.
    pub fn refuse_cross_site(&self, action: Action) -> Result<(), ApiError> {
        match cross_site::judge(&self.request, self.sessions.trusted_origins()) {
            Verdict::Allowed => Ok(()),
            Verdict::Navigation => Err(ApiError::CrossSite {
                action,
                navigation: true,
            }),
            Verdict::Refused => Err(ApiError::CrossSite {
                action,
                navigation: false,
            }),
        }
    }

    /// Hands the new session to the client: a token to return for a header session, else a
    /// cookie set by actix-session at the end of the request (sealed with the primary key,
    /// under a new cookie value).
    fn hand_out(
        &self,
        handle: &SessionHandle,
        transport: Transport,
    ) -> Result<Option<String>, ApiError> {
        if transport == Transport::Header {
            return Ok(Some(self.sessions.seal(handle)));
        }
        self.actix.renew();
        self.actix
            .insert(HANDLE_ENTRY, handle.encode())
            .map_err(|err| ApiError::Unexpected(anyhow::anyhow!("{err}")))?;
        Ok(None)
    }

    /// A credential sealed with an older key is sealed again with the primary one, so that
    /// dropping the old secret later only logs out sessions that were not used in between:
    /// a cookie is set again; a header client gets the new token in `X-Session-Token`.
    fn reseal_if_rotated(&self, credential: &Credential) {
        match credential.source {
            Source::RotatedCookie => {
                if let Err(err) = self.actix.insert(HANDLE_ENTRY, credential.handle.encode()) {
                    tracing::warn!(error = %err, "could not re-seal a rotated session cookie");
                }
            }
            Source::Header { rotated: true } => {
                let token = self.sessions.seal(&credential.handle);
                self.request.extensions_mut().insert(RefreshedToken(token));
            }
            Source::Cookie | Source::Header { rotated: false } => {}
        }
    }
}

impl FromRequest for CurrentSession {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req))
    }
}

fn extract(req: &HttpRequest) -> Result<CurrentSession, ApiError> {
    let sessions = req
        .app_data::<web::Data<Sessions>>()
        .map(|data| data.get_ref().clone())
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("Sessions is not registered")))?;
    let actix = req.get_session();
    let raw_cookie = req.cookie(sessions.cookie_name());
    let credential = Credential::of(req, &sessions, &actix, raw_cookie.as_ref());
    Ok(CurrentSession {
        sessions,
        actix,
        request: req.clone(),
        credential,
        cookie_sent: raw_cookie.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use actix_web::{HttpResponse, test::TestRequest};

    use super::*;
    use crate::config::SessionConfig;

    /// The test settings' sessions: a store nobody listens on, so an operation that reached
    /// Redis would fail with `StoreUnavailable`, not with the answer asserted.
    fn sessions() -> Sessions {
        Sessions::new(&SessionConfig::for_tests()).expect("a lazily connected store")
    }

    fn current(request: TestRequest, sessions: &Sessions) -> CurrentSession {
        let req = request
            .app_data(web::Data::new(sessions.clone()))
            .to_http_request();
        extract(&req).expect("a current session")
    }

    fn alice(sessions: &Sessions) -> (UserId, String) {
        let user = UserId::parse("alice").expect("a user id");
        let (handle, _) = sessions.new_session(user.clone());
        (user, format!("Session {}", sessions.seal(&handle)))
    }

    #[actix_web::test]
    async fn without_sessions_registered_there_is_no_current_session() {
        let req = TestRequest::default().to_http_request();
        assert!(matches!(extract(&req), Err(ApiError::Unexpected(_))));
    }

    #[actix_web::test]
    async fn the_credential_names_the_user_before_the_store_is_asked() {
        let sessions = sessions();
        let (user, authorization) = alice(&sessions);
        let request = TestRequest::default().insert_header(("authorization", authorization));
        let by_header = current(request, &sessions);
        assert!(by_header.uses_header());
        assert_eq!(by_header.claimed_user(), Some(&user));

        let anonymous = current(TestRequest::default(), &sessions);
        assert!(!anonymous.uses_header());
        assert_eq!(anonymous.claimed_user(), None);
    }

    #[actix_web::test]
    async fn without_a_credential_nothing_reaches_the_store() {
        let sessions = sessions();
        let request = TestRequest::default().cookie(Cookie::new("sid", "tampered"));
        let tampered = current(request, &sessions);
        assert!(matches!(tampered.read().await, Err(ApiError::NotLoggedIn)));
        assert!(matches!(
            tampered.increment().await,
            Err(ApiError::NotLoggedIn)
        ));
    }

    #[actix_web::test]
    async fn cross_site_requests_are_refused_before_the_store_is_asked() {
        let sessions = sessions();
        let (_, authorization) = alice(&sessions);
        let link = TestRequest::default()
            .insert_header(("authorization", authorization.as_str()))
            .insert_header(("sec-fetch-site", "cross-site"))
            .insert_header(("sec-fetch-mode", "navigate"));
        let linked = current(link, &sessions);
        let refused = |result: Result<_, ApiError>, expected: Action, navigation: bool| {
            assert!(
                matches!(result, Err(ApiError::CrossSite { action, navigation: n })
                    if action == expected && n == navigation),
                "{expected:?}"
            );
        };
        refused(linked.increment().await.map(drop), Action::Increment, true);
        let login = linked
            .login(LoginAs::CurrentOrNew, Transport::Cookie, &Device::default())
            .await;
        refused(login.map(drop), Action::Login, true);
        let logout = linked.logout(true).await;
        refused(logout.map(drop), Action::Logout { everywhere: true }, true);

        let fetch = TestRequest::default()
            .insert_header(("authorization", authorization.as_str()))
            .insert_header(("sec-fetch-site", "cross-site"))
            .insert_header(("sec-fetch-mode", "cors"));
        let fetched = current(fetch, &sessions);
        refused(
            fetched.logout(false).await.map(drop),
            Action::Logout { everywhere: false },
            false,
        );
    }

    #[actix_web::test]
    async fn a_logout_without_a_session_expires_the_cookie_that_was_sent() {
        let sessions = sessions();
        let sent = TestRequest::default().cookie(Cookie::new("sid", "expired-or-foreign"));
        let logout = current(sent, &sessions)
            .logout(false)
            .await
            .expect("a logout");
        let mut response = HttpResponse::Ok();
        logout.expire_cookie(&mut response);
        let response = response.finish();
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .expect("a Set-Cookie");
        assert!(set_cookie.starts_with("sid=;"), "{set_cookie}");
        assert!(set_cookie.contains("Max-Age=0"), "{set_cookie}");

        let nothing_sent = current(TestRequest::default(), &sessions);
        let logout = nothing_sent.logout(false).await.expect("a logout");
        assert!(logout.removal.is_none(), "no cookie to expire");
    }
}
