//! The writer's endpoints. Each is a thin mapping from [`CurrentSession`] to the JSON of the
//! HTTP contract in DESIGN.md.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use session::{ApiError, CurrentSession, LoginAs, service::resource};

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/login").get(login).post(login))
        .service(resource("/increment").get(increment).post(increment))
        .service(resource("/logout").get(logout).post(logout));
}

async fn login(current: CurrentSession) -> Result<HttpResponse, ApiError> {
    let logged_in = current.login(LoginAs::CurrentOrNew).await?;
    tracing::info!(user = %logged_in.user, renewed = logged_in.renewed, "logged in");
    Ok(HttpResponse::Ok().json(json!({
        "message": "you are now logged in",
        "user": { "id": logged_in.user },
    })))
}

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
