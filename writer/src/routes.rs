//! The writer's endpoints. Each is a thin mapping from [`CurrentSession`] to the JSON of the
//! HTTP contract in DESIGN.md, or, for a browser, to a page (see [`session::pages`]).

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{StatusCode, header},
    web,
};
use serde::Deserialize;
use serde_json::json;
use session::{
    ApiError, CurrentSession, LoggedIn, LoginAs, Sessions, Transport, UserId, action::Action,
    audience::Audience, pages, service::resource,
};

use crate::{auth::Users, client::TrustedGateways};

/// Registers the endpoints; with `users`, `/login` takes credentials (see [`crate::auth`]),
/// and failures are throttled per client address (as `gateways` tell it, see
/// [`crate::client`]).
pub fn configure(
    config: &mut web::ServiceConfig,
    users: Option<Arc<Users>>,
    gateways: TrustedGateways,
) {
    let login = match users {
        None => resource("/login").get(open_login).post(open_login),
        Some(users) => resource("/login")
            .app_data(web::Data::from(users))
            .app_data(web::Data::new(gateways))
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

/// The answer to a successful login: JSON (with the token for a header session), or a page.
fn logged_in(audience: Audience, logged_in: &LoggedIn) -> HttpResponse {
    tracing::info!(user = %logged_in.user, renewed = logged_in.renewed, "logged in");
    match audience {
        // A header session's token goes back in JSON, whoever asked.
        _ if logged_in.token.is_some() => {}
        Audience::Api => {}
        Audience::FormPost => return pages::see_other("/").finish(),
        Audience::Page => {
            return pages::session(&logged_in.user, logged_in.count, "You are logged in");
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
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let transport = query.transport(&current);
    let login = current.login(LoginAs::CurrentOrNew, transport).await?;
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
        Ok(login) => Ok(logged_in(audience, &login)),
        // A browser sees the form again, with the reason.
        Err(err @ (ApiError::InvalidCredentials | ApiError::TooManyAttempts { .. }))
            if audience.is_browser() =>
        {
            let mut page = pages::login_form(err.status_code(), Some(&err.to_string()));
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
        }) => Ok(pages::login_form(
            StatusCode::FORBIDDEN,
            Some("Another site sent you here: log in with this form."),
        )),
        Err(err) => Err(err),
    }
}

async fn verify_and_login(
    current: &CurrentSession,
    request: &HttpRequest,
    query: &LoginQuery,
    users: &web::Data<Users>,
    sessions: &Sessions,
    body: &[u8],
) -> Result<LoggedIn, ApiError> {
    // Before the password is checked or a failed attempt counted.
    current.refuse_cross_site(Action::Login)?;
    let credentials = parse_credentials(request, body)?;
    let address = match request.app_data::<web::Data<TrustedGateways>>() {
        Some(gateways) => gateways.client_address(request),
        None => TrustedGateways::default().client_address(request),
    };
    let claimed = UserId::parse(&credentials.username).ok();
    let throttle = sessions.login_throttle();
    throttle.check(claimed.as_ref(), address).await?;

    let users = users.clone().into_inner();
    let verified = web::block(move || users.verify(&credentials.username, &credentials.password))
        .await
        .map_err(|err| ApiError::Unexpected(err.into()))?;
    let Some(user) = verified else {
        throttle.failed(claimed.as_ref(), address).await?;
        tracing::warn!(%address, "failed login");
        return Err(ApiError::InvalidCredentials);
    };
    throttle.succeeded(&user).await?;
    current
        .login(LoginAs::User(user), query.transport(current))
        .await
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

/// `GET /login` with credentials configured: the form.
async fn login_form() -> HttpResponse {
    pages::login_form(StatusCode::OK, None)
}

async fn increment(audience: Audience, current: CurrentSession) -> Result<HttpResponse, ApiError> {
    let count = match current.increment().await {
        Ok(count) => count,
        Err(ApiError::NotLoggedIn) if audience.is_browser() => return Ok(pages::login_prompt()),
        Err(err) => return Err(err),
    };
    match (audience, current.claimed_user()) {
        (Audience::FormPost, _) => Ok(pages::see_other("/").finish()),
        (Audience::Page, Some(user)) => Ok(pages::session(user, count, "Incremented")),
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
