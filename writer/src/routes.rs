//! The writer's endpoints. Each is a thin mapping from [`CurrentSession`] to the JSON of the
//! HTTP contract in DESIGN.md, or, for a browser, to a page (see [`session::pages`]).

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    cookie::Cookie,
    http::{StatusCode, header},
    web,
};
use serde::Deserialize;
use serde_json::json;
use session::{
    ApiError, CurrentSession, Device, Identity, LoggedIn, LoginAs, Method, Sessions, Transport,
    UserId,
    action::Action,
    audience::Audience,
    metrics::{LoginResult, metrics},
    pages,
    service::resource,
};

use crate::{auth::Users, client::TrustedGateways, oidc::Providers};

/// Registers the endpoints; with `users`, `/login` takes credentials (see [`crate::auth`]),
/// and failures are throttled (see [`session::throttle`]) by the client's address as `gateways`
/// tell it (see [`crate::client`]) and by the browser's known-device cookie; with `providers`, the login page has a button for each and
/// `/login/<name>` signs in with it (see [`crate::oidc`]). Neither: the open demo login.
pub fn configure(
    config: &mut web::ServiceConfig,
    users: Option<Arc<Users>>,
    providers: Option<Arc<Providers>>,
    gateways: TrustedGateways,
) {
    let login = match (users, &providers) {
        (None, None) => resource("/login").get(open_login).post(open_login),
        (Some(users), _) => resource("/login")
            .app_data(web::Data::from(users))
            .get(login_form)
            .post(password_login),
        (None, Some(_)) => resource("/login").get(login_form).post(no_password_login),
    };
    if let Some(providers) = providers {
        config.configure(|config| crate::oidc::configure(config, providers));
    }
    config
        .app_data(web::Data::new(gateways))
        .service(login)
        .service(resource("/increment").get(increment).post(increment))
        .service(resource("/logout").get(logout).post(logout))
        .service(resource("/sessions").get(list_sessions))
        .service(resource("/sessions/others/end").post(end_other_sessions))
        .service(resource("/sessions/{handle}/end").post(end_session));
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    /// `?session=header`: the client keeps its session in a header, not a cookie; the token
    /// comes back in the body.
    #[serde(default)]
    session: Option<String>,
}

impl LoginQuery {
    fn transport(&self, current: &CurrentSession) -> Transport {
        if self.session.as_deref() == Some("header") || current.uses_header() {
            Transport::Header
        } else {
            Transport::Cookie
        }
    }
}

/// The answer to a successful login: JSON (with the token for a header session), or a page.
fn logged_in(audience: Audience, logged_in: &LoggedIn) -> HttpResponse {
    tracing::info!(user = %logged_in.user, renewed = logged_in.renewed, "logged in");
    match audience {
        // A header session's token goes back in JSON, whoever asked.
        _ if logged_in.token.is_some() => {}
        Audience::Api => {}
        Audience::FormPost => return pages::see_other("/").finish(),
        Audience::Page => {
            return pages::session(&logged_in.user, None, logged_in.count, "You are logged in");
        }
    }
    let mut body = json!({
        "message": "you are now logged in",
        "user": { "id": logged_in.user },
    });
    if let Some(token) = &logged_in.token {
        body["session"] = json!(token);
    }
    HttpResponse::Ok().json(body)
}

/// The open demo login: anyone becomes a new user (or stays the user they are).
async fn open_login(
    audience: Audience,
    current: CurrentSession,
    request: HttpRequest,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let transport = query.transport(&current);
    let login = current
        .login(LoginAs::CurrentOrNew, transport, &device(&request))
        .await?;
    Ok(logged_in(audience, &login))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// `POST /login` with `username` and `password`, as JSON or as a form.
async fn password_login(
    audience: Audience,
    current: CurrentSession,
    request: HttpRequest,
    query: web::Query<LoginQuery>,
    users: web::Data<Users>,
    sessions: web::Data<Sessions>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let outcome = verify_and_login(&current, &request, &query, &users, &sessions, &body).await;
    match outcome {
        Ok((login, known_device)) => {
            let mut response = logged_in(audience, &login);
            // A header session sets no cookie at all (its clients keep none).
            if login.token.is_none() {
                response
                    .add_cookie(&known_device)
                    .map_err(|err| ApiError::Unexpected(err.into()))?;
            }
            Ok(response)
        }
        // A browser sees the form again, with the reason.
        Err(err @ (ApiError::InvalidCredentials | ApiError::TooManyAttempts { .. }))
            if audience.is_browser() =>
        {
            let mut page = login_page(&request, err.status_code(), Some(&err.to_string()));
            if let ApiError::TooManyAttempts { retry_after } = err {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, retry_after.as_secs().max(1).into());
            }
            Ok(page)
        }
        // A login form on another site posted here: the credentials are not tried (that
        // would let it log the browser in as its own user); the person gets this site's form.
        Err(ApiError::CrossSite {
            navigation: true, ..
        }) => Ok(login_page(
            &request,
            StatusCode::FORBIDDEN,
            Some("Another site sent you here: log in with this form."),
        )),
        Err(err) => Err(err),
    }
}

/// Checks the credentials under the login throttle (see [`session::throttle`]) and logs in:
/// the login, and the known-device cookie that lets this browser past strangers' failures.
async fn verify_and_login(
    current: &CurrentSession,
    request: &HttpRequest,
    query: &LoginQuery,
    users: &web::Data<Users>,
    sessions: &Sessions,
    body: &[u8],
) -> Result<(LoggedIn, Cookie<'static>), ApiError> {
    // Before the password is checked or a failed attempt counted.
    current.refuse_cross_site(Action::Login)?;
    let credentials = parse_credentials(request, body)?;
    let address = client_address(request);
    let claimed = UserId::parse(&credentials.username).ok();
    let throttle = sessions.login_throttle();
    let known_device = request.cookie(&throttle.device_cookie_name());
    let attempt = match throttle
        .admit(
            claimed.as_ref(),
            address,
            known_device.as_ref().map(Cookie::value),
        )
        .await
    {
        Ok(attempt) => attempt,
        Err(err) => {
            if matches!(err, ApiError::TooManyAttempts { .. }) {
                tracing::warn!(%address, "login refused: too many failures");
                metrics().login(Method::Password, LoginResult::Throttled);
            }
            return Err(err);
        }
    };

    let users = users.clone().into_inner();
    let verified = web::block(move || users.verify(&credentials.username, &credentials.password))
        .await
        .map_err(|err| ApiError::Unexpected(err.into()))?;
    let Some(user) = verified else {
        throttle.failed(&attempt).await?;
        tracing::warn!(%address, known_device = attempt.from_known_device(), "failed login");
        metrics().login(Method::Password, LoginResult::Failure);
        return Err(ApiError::InvalidCredentials);
    };
    let device_cookie = throttle.succeeded(&attempt, &user, address).await?;
    let login = current
        .login(
            LoginAs::User(user, Identity::password()),
            query.transport(current),
            &device(request),
        )
        .await?;
    Ok((login, device_cookie))
}

/// The client's address, as the trusted gateways tell it (see [`crate::client`]).
pub(crate) fn client_address(request: &HttpRequest) -> std::net::IpAddr {
    match request.app_data::<web::Data<TrustedGateways>>() {
        Some(gateways) => gateways.client_address(request),
        None => TrustedGateways::default().client_address(request),
    }
}

/// Where a login comes from: the browser and the client's address, kept with the session.
pub(crate) fn device(request: &HttpRequest) -> Device {
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok());
    Device::new(agent, Some(client_address(request).to_string()))
}

fn parse_credentials(request: &HttpRequest, body: &[u8]) -> Result<Credentials, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let parsed = if content_type.starts_with("application/json") {
        serde_json::from_slice::<Credentials>(body).map_err(|err| err.to_string())
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes::<Credentials>(body).map_err(|err| err.to_string())
    } else {
        Err("send username and password as JSON or as a form".to_owned())
    };
    parsed.map_err(|reason| ApiError::BadRequest(format!("invalid login: {reason}")))
}

/// `GET /login` with credentials or providers configured: the form and a button per provider.
async fn login_form(request: HttpRequest) -> HttpResponse {
    login_page(&request, StatusCode::OK, None)
}

/// The login page: the password form when users are configured, the providers' buttons.
fn login_page(request: &HttpRequest, status: StatusCode, error: Option<&str>) -> HttpResponse {
    let password = request.app_data::<web::Data<Users>>().is_some();
    let buttons = request
        .app_data::<web::Data<Providers>>()
        .map(|providers| providers.buttons())
        .unwrap_or_default();
    pages::login_page(status, error, password, &buttons)
}

/// `POST /login` when only identity providers are configured.
async fn no_password_login() -> Result<HttpResponse, ApiError> {
    Err(ApiError::BadRequest(
        "there are no passwords here: sign in with an identity provider (GET /login)".into(),
    ))
}

async fn increment(audience: Audience, current: CurrentSession) -> Result<HttpResponse, ApiError> {
    let count = match current.increment().await {
        Ok(count) => count,
        Err(ApiError::NotLoggedIn) if audience.is_browser() => return Ok(pages::login_prompt()),
        Err(err) => return Err(err),
    };
    match (audience, current.claimed_user()) {
        (Audience::FormPost, _) => Ok(pages::see_other("/").finish()),
        (Audience::Page, Some(user)) => Ok(pages::session(user, None, count, "Incremented")),
        _ => Ok(HttpResponse::Ok().json(Incremented {
            message: "Incremented Count",
            count,
        })),
    }
}

/// `{"message":"Incremented Count","count":N}`, serialized without an intermediate JSON value.
#[derive(serde::Serialize)]
struct Incremented {
    message: &'static str,
    count: i64,
}

#[derive(Debug, Deserialize)]
struct LogoutQuery {
    /// `?everywhere=true` ends every session of the user, on every device.
    #[serde(default)]
    everywhere: bool,
}

async fn logout(
    audience: Audience,
    current: CurrentSession,
    query: web::Query<LogoutQuery>,
) -> Result<HttpResponse, ApiError> {
    let logout = current.logout(query.everywhere).await?;
    let mut response = match audience {
        Audience::FormPost => pages::see_other("/"),
        Audience::Page | Audience::Api => HttpResponse::Ok(),
    };
    logout.expire_cookie(&mut response);
    Ok(match audience {
        Audience::FormPost => response.finish(),
        Audience::Page => pages::logged_out(response),
        Audience::Api => response.json(json!({ "message": "logged out : count reset" })),
    })
}

/// `GET /sessions`: the user's live sessions (a page, or `{"sessions":[…]}`).
async fn list_sessions(
    audience: Audience,
    current: CurrentSession,
) -> Result<HttpResponse, ApiError> {
    match current.sessions().await {
        Ok(sessions) if audience.is_browser() => Ok(pages::sessions(&sessions)),
        Ok(sessions) => Ok(HttpResponse::Ok().json(json!({ "sessions": sessions }))),
        Err(ApiError::NotLoggedIn) if audience.is_browser() => Ok(pages::login_prompt()),
        Err(err) => Err(err),
    }
}

/// `POST /sessions/<handle>/end`: ends one of the user's sessions.
async fn end_session(
    audience: Audience,
    current: CurrentSession,
    handle: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ended = current.end_session(&handle).await?;
    match audience {
        Audience::FormPost => Ok(pages::see_other("/sessions").finish()),
        _ if !ended => Err(ApiError::NotFound),
        _ => Ok(HttpResponse::Ok().json(json!({ "message": "session ended" }))),
    }
}

/// `POST /sessions/others/end`: ends every session of the user but this one.
async fn end_other_sessions(
    audience: Audience,
    current: CurrentSession,
) -> Result<HttpResponse, ApiError> {
    let ended = current.end_other_sessions().await?;
    match audience {
        Audience::FormPost => Ok(pages::see_other("/sessions").finish()),
        _ => Ok(HttpResponse::Ok().json(json!({ "ended": ended }))),
    }
}
