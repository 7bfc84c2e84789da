//! One OpenID Connect provider at run time: its discovered metadata and keys, the client the
//! `openidconnect` crate builds from them, and the checks an ID token has to pass.
//!
//! Discovery happens in the background from start on and is tried again until it works, so a
//! provider that is down when the writer starts only greys out its button. The keys (JWKS) are
//! fetched again when a token names a key id the writer does not know, so the provider can
//! rotate keys without anyone restarting anything; at most once per [`JWKS_REFRESH_PAUSE`],
//! because anyone can post a logout token with an invented key id.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
        CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken,
        CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
    },
};
use serde::{Deserialize, Serialize};
use session::{Identity, Method, UserId};
use sha2::{Digest, Sha256};

use super::{config::ProviderConfig, error::SignInError};

/// How far a provider's clock may be from ours.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Least time between two fetches of a provider's keys.
const JWKS_REFRESH_PAUSE: Duration = Duration::from_secs(10);
/// Longest wait for the provider (discovery, keys, token exchange).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery retries: the first pause, doubled up to the last.
const DISCOVERY_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Every claim of an ID token that is not a standard one: where the groups are, by a name the
/// configuration chooses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

type Fields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
/// The crate's client, as built from discovered metadata: authorization endpoint known, token
/// and userinfo endpoints as the provider says.
type OidcClient = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;
pub(super) type IdToken = openidconnect::IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub(super) type IdTokenClaims = openidconnect::IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// A provider and what the writer learned of it.
pub struct Provider {
    pub config: ProviderConfig,
    http: reqwest::Client,
    redirect: RedirectUrl,
    metadata: ArcSwapOption<CoreProviderMetadata>,
    keys_fetched: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .field("discovered", &self.available())
            .finish_non_exhaustive()
    }
}

/// The start of a sign-in: where to send the browser, and what the callback needs.
/// (No `Debug`: it holds the PKCE verifier.)
#[allow(missing_debug_implementations)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// A verified sign-in.
#[derive(Debug)]
pub struct SignedIn {
    pub user: UserId,
    pub identity: Identity,
    /// The provider's session id (`sid`), which a back-channel logout may name.
    pub provider_session: Option<String>,
}

impl Provider {
    /// `public_url` is the origin the browser sees (`PUBLIC_URL`).
    pub fn new(config: ProviderConfig, public_url: &str) -> Result<Self, String> {
        let redirect = RedirectUrl::new(format!("{public_url}/login/{}/callback", config.name))
            .map_err(|err| format!("PUBLIC_URL makes no redirect URI: {err}"))?;
        Ok(Self {
            http: http_client(config.ca.as_deref())?,
            config,
            redirect,
            metadata: ArcSwapOption::empty(),
            keys_fetched: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether discovery has succeeded (the login page's button works).
    pub fn available(&self) -> bool {
        self.metadata.load().is_some()
    }

    /// The redirect URI registered at the provider.
    pub fn redirect_uri(&self) -> &str {
        self.redirect.as_str()
    }

    /// Discovers the provider until it answers, pausing longer after each failure.
    pub async fn discover_until_known(&self) {
        let mut pause = DISCOVERY_RETRY.0;
        while !self.available() {
            match self.discover().await {
                Ok(()) => tracing::info!(provider = self.name(), "identity provider discovered"),
                Err(err) => {
                    tracing::warn!(provider = self.name(), error = %err, retry_in = ?pause, "identity provider not reachable");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(DISCOVERY_RETRY.1);
                }
            }
        }
    }

    /// `{issuer}/.well-known/openid-configuration`, then the keys; the crate checks that the
    /// document names the configured issuer.
    async fn discover(&self) -> Result<(), String> {
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|err| err.to_string())?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|err| error_chain(&err))?;
        // Not counted as a key fetch: the first unknown key id after discovery may fetch again
        // at once (a rotation right after start).
        self.metadata.store(Some(Arc::new(metadata)));
        Ok(())
    }

    fn client(&self) -> Result<(OidcClient, Arc<CoreProviderMetadata>), SignInError> {
        let metadata = self
            .metadata
            .load_full()
            .ok_or_else(|| SignInError::ProviderUnavailable(self.config.label.clone()))?;
        let client = OidcClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone());
        Ok((client, metadata))
    }

    /// The authorization request: code flow, PKCE S256, fresh `state` and `nonce`.
    pub fn authorize(&self) -> Result<Authorization, SignInError> {
        let (client, _) = self.client()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code, verifies the ID token against the nonce of the login started at
    /// `started`, and says who signed in.
    pub async fn finish(
        &self,
        code: String,
        verifier: String,
        nonce: &str,
        started: DateTime<Utc>,
    ) -> Result<SignedIn, SignInError> {
        let (client, _) = self.client()?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|err| SignInError::ProviderFailed(err.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|err| SignInError::ProviderFailed(error_chain(&err)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SignInError::TokenRejected("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let claims = self
            .verified(|client| {
                id_token
                    .claims(&self.verifier(client, started), &nonce)
                    .cloned()
            })
            .await?;
        // Built again: the verification may have fetched new keys.
        let (client, _) = self.client()?;
        check_access_token(&client, id_token, &claims, tokens.access_token())?;
        self.signed_in(&claims)
    }

    /// Runs `verify` with a client holding the keys known now; when the token names a key
    /// this writer does not know, once more after fetching the keys again.
    async fn verified<T>(
        &self,
        verify: impl Fn(&OidcClient) -> Result<T, ClaimsVerificationError>,
    ) -> Result<T, SignInError> {
        let (client, _) = self.client()?;
        let first = verify(&client);
        let unknown_key = matches!(
            first,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey
            ))
        );
        if !unknown_key || !self.refresh_keys().await {
            return first.map_err(|err| SignInError::TokenRejected(err.to_string()));
        }
        let (client, _) = self.client()?;
        verify(&client).map_err(|err| SignInError::TokenRejected(err.to_string()))
    }

    /// A back-channel logout token (Back-Channel Logout 1.0 §2.6): signed by the provider's
    /// keys, `iss` and `aud` ours, `iat` recent and `exp` ahead (with [`CLOCK_SKEW`]), no
    /// `nonce`, the back-channel logout event. Who is to be logged out, and which provider
    /// session (`sid`) if it names one.
    ///
    /// The token is read with the crate's ID token type, which wants a `sub`: a token naming
    /// only a `sid` is refused (every provider we know sends `sub` too).
    pub async fn logout_token(&self, token: &str) -> Result<(UserId, Option<String>), SignInError> {
        let token: IdToken = token.parse().map_err(|err: serde_json::Error| {
            SignInError::TokenRejected(format!("not a logout token with a sub: {err}"))
        })?;
        let claims = self
            .verified(|client| {
                let no_nonce = |nonce: Option<&Nonce>| match nonce {
                    Some(_) => Err("a logout token must not carry a nonce".to_owned()),
                    None => Ok(()),
                };
                token.claims(&logout_verifier(client), no_nonce).cloned()
            })
            .await?;
        let other = &claims.additional_claims().claims;
        let event = other
            .get("events")
            .and_then(|events| events.get(LOGOUT_EVENT))
            .is_some_and(serde_json::Value::is_object);
        if !event {
            return Err(SignInError::TokenRejected(
                "no back-channel logout event in `events`".into(),
            ));
        }
        let sid = other
            .get("sid")
            .and_then(|sid| sid.as_str())
            .map(str::to_owned);
        Ok((user_id(&self.config.issuer, claims.subject().as_str()), sid))
    }

    /// The crate's checks (signature, `iss`, `aud`, `exp`, the nonce), with [`CLOCK_SKEW`] of
    /// leeway; and `iat` no earlier than the login started (a token issued before it is a
    /// replayed one) nor later than now.
    fn verifier<'a>(
        &self,
        client: &'a OidcClient,
        started: DateTime<Utc>,
    ) -> openidconnect::IdTokenVerifier<'a, CoreJsonWebKey> {
        let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        client
            .id_token_verifier()
            .set_time_fn(move || Utc::now() - skew)
            .set_issue_time_verifier_fn(move |issued| {
                if issued > Utc::now() + skew {
                    Err(format!("issued in the future ({issued})"))
                } else if issued < started - skew {
                    Err(format!(
                        "stale: issued at {issued}, before this sign-in began"
                    ))
                } else {
                    Ok(())
                }
            })
    }

    /// Fetches the provider's keys again, unless that happened less than
    /// [`JWKS_REFRESH_PAUSE`] ago. Whether there are new keys to try.
    pub(super) async fn refresh_keys(&self) -> bool {
        {
            let mut fetched = self.keys_fetched.lock().unwrap_or_else(|e| e.into_inner());
            if fetched.is_some_and(|at| at.elapsed() < JWKS_REFRESH_PAUSE) {
                return false;
            }
            *fetched = Some(Instant::now());
        }
        let Some(metadata) = self.metadata.load_full() else {
            return false;
        };
        let fetch = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http);
        match tokio::time::timeout(PROVIDER_TIMEOUT, fetch).await {
            Ok(Ok(keys)) => {
                tracing::info!(
                    provider = self.name(),
                    "identity provider keys fetched again"
                );
                self.metadata
                    .store(Some(Arc::new((*metadata).clone().set_jwks(keys))));
                true
            }
            Ok(Err(err)) => {
                tracing::warn!(provider = self.name(), error = %error_chain(&err), "could not fetch the provider's keys");
                false
            }
            Err(_) => false,
        }
    }

    /// The user and identity of verified claims, if `allowed_groups` lets them in.
    fn signed_in(&self, claims: &IdTokenClaims) -> Result<SignedIn, SignInError> {
        let client_id = &self.config.client_id;
        // Core §3.1.3.7 steps 4-5, which the crate leaves to its users: with several
        // audiences the token must say it was issued to us.
        let several = claims.audiences().len() > 1;
        match claims.authorized_party() {
            Some(party) if party.as_str() != client_id => {
                return Err(SignInError::TokenRejected(format!(
                    "issued to {}, not to this client",
                    party.as_str()
                )));
            }
            None if several => {
                return Err(SignInError::TokenRejected(
                    "several audiences and no azp".into(),
                ));
            }
            _ => {}
        }
        let groups = self.groups(claims.additional_claims());
        let allowed = &self.config.allowed_groups;
        if !allowed.is_empty() && !groups.iter().any(|group| allowed.contains(group)) {
            return Err(SignInError::NotAllowed);
        }
        let name = claims
            .name()
            .and_then(|name| name.get(None))
            .map(|name| name.as_str().to_owned())
            .or_else(|| {
                claims
                    .preferred_username()
                    .map(|name| name.as_str().to_owned())
            });
        let identity = Identity {
            method: Method::Provider,
            provider: Some(self.config.name.clone()),
            name,
            email: claims.email().map(|email| email.as_str().to_owned()),
            groups,
        };
        let provider_session = claims
            .additional_claims()
            .claims
            .get("sid")
            .and_then(|sid| sid.as_str())
            .map(str::to_owned);
        Ok(SignedIn {
            user: user_id(&self.config.issuer, claims.subject().as_str()),
            identity,
            provider_session,
        })
    }

    /// The groups claim: a list of strings, or one string.
    fn groups(&self, claims: &OtherClaims) -> Vec<String> {
        let Some(claim) = &self.config.groups_claim else {
            return Vec::new();
        };
        match claims.claims.get(claim) {
            Some(serde_json::Value::Array(groups)) => groups
                .iter()
                .filter_map(|group| group.as_str())
                .filter(|group| !group.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(serde_json::Value::String(group)) if !group.is_empty() => vec![group.clone()],
            _ => Vec::new(),
        }
    }
}

/// The event a logout token carries (Back-Channel Logout 1.0 §2.4).
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old a logout token may be.
const LOGOUT_TOKEN_AGE: Duration = Duration::from_secs(10 * 60);

/// The checks of a logout token beyond the ID token's: its `typ` may be `logout+jwt`, and it
/// must have been issued within [`LOGOUT_TOKEN_AGE`].
fn logout_verifier(client: &OidcClient) -> openidconnect::IdTokenVerifier<'_, CoreJsonWebKey> {
    let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
    let age = chrono::Duration::from_std(LOGOUT_TOKEN_AGE).unwrap_or_default();
    let types = ["application/jwt", "application/jose", "logout+jwt"]
        .into_iter()
        .filter_map(|kind| {
            openidconnect::JsonWebTokenType::new(kind.to_owned())
                .normalize()
                .ok()
        });
    client
        .id_token_verifier()
        .set_allowed_jose_types(types)
        .set_time_fn(move || Utc::now() - skew)
        .set_issue_time_verifier_fn(move |issued| {
            let now = Utc::now();
            if issued > now + skew {
                Err(format!("issued in the future ({issued})"))
            } else if issued < now - age - skew {
                Err(format!("stale: issued at {issued}"))
            } else {
                Ok(())
            }
        })
}

/// Core §3.1.3.8: when the ID token carries `at_hash`, the access token must match it (no one
/// swapped it for another user's).
fn check_access_token(
    client: &OidcClient,
    id_token: &IdToken,
    claims: &IdTokenClaims,
    access_token: &openidconnect::AccessToken,
) -> Result<(), SignInError> {
    let Some(expected) = claims.access_token_hash() else {
        return Ok(());
    };
    let verifier = client.id_token_verifier();
    let reject = |err: String| SignInError::TokenRejected(format!("access token hash: {err}"));
    let alg = id_token
        .signing_alg()
        .map_err(|err| reject(err.to_string()))?;
    let key = id_token
        .signing_key(&verifier)
        .map_err(|err| reject(err.to_string()))?;
    let actual = AccessTokenHash::from_token(access_token, alg, key)
        .map_err(|err| reject(err.to_string()))?;
    if actual != *expected {
        return Err(reject("does not match".into()));
    }
    Ok(())
}

/// The user id of (issuer, subject): the same person is the same user on every device and
/// every login, and a user of another issuer with the same `sub` is someone else. `oidc.` and
/// 40 hex digits (160 bits of SHA-256): within the user id's character set and length, and a
/// prefix a password user may not take (see `crate::auth`).
pub fn user_id(issuer: &str, subject: &str) -> UserId {
    let mut hash = Sha256::new();
    hash.update(issuer.as_bytes());
    hash.update([0]);
    hash.update(subject.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
    UserId::parse(&format!("{USER_PREFIX}{hex}")).unwrap_or_else(|_| UserId::random())
}

/// The prefix of every user id an identity provider vouched for.
pub const USER_PREFIX: &str = "oidc.";

/// The HTTP client for one provider: no redirects (the crate's advice: following them opens
/// the door to SSRF), a bounded wait, and the configured CA or the web's roots.
fn http_client(ca: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .connect_timeout(PROVIDER_TIMEOUT);
    if let Some(pem) = ca {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|err| format!("the CA file holds no PEM certificate: {err}"))?;
        if certificates.is_empty() {
            return Err("the CA file holds no PEM certificate".into());
        }
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|err| err.to_string())
}

/// An error with its causes, for logs and pages: `discovery failed: connection refused`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_one_per_issuer_and_subject() {
        let a = user_id("https://id.example.com", "248289761001");
        assert_eq!(a, user_id("https://id.example.com", "248289761001"));
        assert_ne!(a, user_id("https://other.example.com", "248289761001"));
        assert_ne!(a, user_id("https://id.example.com", "248289761002"));
        assert!(a.as_str().starts_with("oidc."));
        assert_eq!(a.as_str().len(), 45);
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(user_id("ab", "c"), user_id("a", "bc"));
    }
}
