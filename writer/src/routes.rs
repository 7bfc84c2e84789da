//! The writer's endpoints. Each is a thin mapping from [`CurrentSession`] to the JSON of the
//! HTTP contract in DESIGN.md.

use std::{net::IpAddr, sync::Arc};

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::Deserialize;
use serde_json::json;
use session::{
    ApiError, CurrentSession, LoginAs, Transport, UserId, service::resource,
    throttle::LoginThrottle,
};

use crate::auth::Users;

/// Registers the endpoints; with `users`, `/login` takes credentials (see [`crate::auth`]).
pub fn configure(config: &mut web::ServiceConfig, users: Option<Arc<Users>>) {
    let login = match users {
        None => resource("/login").get(open_login).post(open_login),
        Some(users) => resource("/login")
            .app_data(web::Data::from(users))
            .get(login_form)
            .post(password_login),
    };
    config
        .service(login)
        .service(resource("/increment").get(increment).post(increment))
        .service(resource("/logout").get(logout).post(logout));
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

fn logged_in(logged_in: &session::LoggedIn) -> HttpResponse {
    tracing::info!(user = %logged_in.user, renewed = logged_in.renewed, "logged in");
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
    current: CurrentSession,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let transport = query.transport(&current);
    Ok(logged_in(
        &current.login(LoginAs::CurrentOrNew, transport).await?,
    ))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// `POST /login` with `username` and `password`, as JSON or as a form.
async fn password_login(
    current: CurrentSession,
    request: HttpRequest,
    query: web::Query<LoginQuery>,
    users: web::Data<Users>,
    sessions: web::Data<session::Sessions>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let credentials = parse_credentials(&request, &body)?;
    let address = client_address(&request);
    let claimed = UserId::parse(&credentials.username).ok();
    let throttle = LoginThrottle::new(sessions.store().clone());
    throttle.check(claimed.as_ref(), address).await?;

    let users = users.into_inner();
    let verified = web::block(move || users.verify(&credentials.username, &credentials.password))
        .await
        .map_err(|err| ApiError::Unexpected(err.into()))?;
    let Some(user) = verified else {
        throttle.failed(claimed.as_ref(), address).await?;
        tracing::warn!(%address, "failed login");
        return Err(ApiError::InvalidCredentials);
    };
    throttle.succeeded(&user).await?;
    let transport = query.transport(&current);
    Ok(logged_in(
        &current.login(LoginAs::User(user), transport).await?,
    ))
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

/// The client's address: the last `X-Forwarded-For` entry (added by the gateway, the only way
/// in) or the peer.
fn client_address(request: &HttpRequest) -> IpAddr {
    request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .last()
        .or_else(|| request.peer_addr().map(|peer| peer.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// `GET /login` with credentials configured: a small form for browsers.
async fn login_form() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "content-security-policy",
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(LOGIN_FORM)
}

const LOGIN_FORM: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Log in</title></head>
<body>
<main>
<h1>Log in</h1>
<form method="post" action="/login">
<p><label>Username <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Log in</button></p>
</form>
</main>
</body>
</html>
"#;

async fn increment(current: CurrentSession) -> Result<HttpResponse, ApiError> {
    let count = current.increment().await?;
    Ok(HttpResponse::Ok().json(json!({ "message": "Incremented Count", "count": count })))
}

#[derive(Debug, Deserialize)]
struct LogoutQuery {
    /// `?everywhere=true` ends every session of the user, on every device.
    #[serde(default)]
    everywhere: bool,
}

async fn logout(
    current: CurrentSession,
    query: web::Query<LogoutQuery>,
) -> Result<HttpResponse, ApiError> {
    let logout = current.logout(query.everywhere).await?;
    let mut response = HttpResponse::Ok();
    logout.expire_cookie(&mut response);
    Ok(response.json(json!({ "message": "logged out : count reset" })))
}
