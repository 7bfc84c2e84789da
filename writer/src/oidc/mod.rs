//! Sign-in with OpenID Connect providers (`AUTH_PROVIDERS_FILE`), several at once:
//!
//! - `config`: the providers file, validated at start;
//! - `provider`: discovery, keys, the token exchange and the ID token's checks;
//! - `flow`: `GET /login/<name>` and its callback;
//! - `backchannel`: `POST /logout/<name>/backchannel`, the provider logging a user out;
//! - `error`: why a sign-in failed, as a page.
//!
//! A provider's user is `oidc.` + a hash of (issuer, subject) (see [`provider::user_id`]);
//! their name, email and groups are kept with the session (see [`session::identity`]).

mod backchannel;
pub mod config;
mod error;
mod flow;
pub mod provider;

use std::sync::Arc;

use actix_web::web;
use session::{pages::ProviderButton, service::resource};

pub use self::{config::ProviderConfig, error::SignInError, provider::Provider};

/// Every configured provider, in the file's order (by name).
#[derive(Debug)]
pub struct Providers {
    list: Vec<Arc<Provider>>,
}

impl Providers {
    /// `public_url`: the origin the browser sees (`PUBLIC_URL`), which the redirect URIs
    /// start with.
    pub fn new(configs: Vec<ProviderConfig>, public_url: &str) -> Result<Self, String> {
        let list = configs
            .into_iter()
            .map(|config| {
                let name = config.name.clone();
                Provider::new(config, public_url)
                    .map(Arc::new)
                    .map_err(|err| format!("providers.{name}: {err}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { list })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|provider| provider.name() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.list.iter()
    }

    /// The login page's buttons.
    pub fn buttons(&self) -> Vec<ProviderButton> {
        self.list
            .iter()
            .map(|provider| ProviderButton {
                name: provider.name().to_owned(),
                label: provider.config.label.clone(),
                available: provider.available(),
            })
            .collect()
    }

    /// Discovers every provider, each until it answers (see
    /// [`Provider::discover_until_known`]); runs in the background from start on.
    pub async fn discover(self: Arc<Self>) {
        let each = self
            .list
            .iter()
            .map(|provider| provider.discover_until_known());
        futures_util::future::join_all(each).await;
    }
}

/// `GET /login/<name>`, `GET /login/<name>/callback` and `POST /logout/<name>/backchannel`.
pub fn configure(config: &mut web::ServiceConfig, providers: Arc<Providers>) {
    config
        .app_data(web::Data::from(providers))
        .service(resource("/login/{provider}").get(flow::start))
        .service(resource("/login/{provider}/callback").get(flow::callback))
        .service(resource("/logout/{provider}/backchannel").post(backchannel::logout));
}
