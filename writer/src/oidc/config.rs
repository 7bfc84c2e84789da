//! `AUTH_PROVIDERS_FILE`: the OpenID Connect providers users may sign in with, validated at
//! start. A mistake is one line naming the file, the line and the key:
//!
//! ```text
//! AUTH_PROVIDERS_FILE: providers.toml:4: providers.corp.issuer: must be an https:// URL …
//! ```
//!
//! ```toml
//! [providers.corp]                        # the name is used in paths: [a-z0-9-]+
//! issuer = "https://id.example.com"       # discovery: {issuer}/.well-known/openid-configuration
//! client_id = "one-origin"
//! client_secret = "${CORP_CLIENT_SECRET}" # from the environment, never the secret itself
//! label = "Sign in with Corp"             # the login page's button
//! scopes = ["openid", "email", "profile", "groups"]
//! groups_claim = "groups"                 # where the groups are
//! allowed_groups = ["staff"]              # only members may sign in
//! ca = "/etc/one-origin/corp-ca.pem"      # the issuer's CA (else the web's roots)
//! ```
//!
//! CA files are read after the whole file validated, so a typo further down is reported before
//! a missing file.

use std::{
    collections::BTreeMap,
    ops::Range,
    path::{Path, PathBuf},
};

use common::ConfigError;
use serde::Deserialize;
use toml::Spanned;

/// The variable naming the file.
pub const VARIABLE: &str = "AUTH_PROVIDERS_FILE";

/// Scopes asked for when a provider names none.
const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    providers: BTreeMap<String, Spanned<RawProvider>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    issuer: Spanned<String>,
    client_id: Spanned<String>,
    client_secret: Option<Spanned<String>>,
    label: Option<Spanned<String>>,
    scopes: Option<Spanned<Vec<String>>>,
    groups_claim: Option<Spanned<String>>,
    allowed_groups: Option<Spanned<Vec<String>>>,
    ca: Option<Spanned<PathBuf>>,
}

/// One provider, validated.
#[derive(Clone)]
pub struct ProviderConfig {
    /// `[a-z0-9-]+`, used in `/login/<name>` and in what a session records.
    pub name: String,
    /// Exactly as configured: the ID tokens' `iss` must equal it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// The login page's button.
    pub label: String,
    /// `openid` first, always.
    pub scopes: Vec<String>,
    /// The claim that lists the user's groups.
    pub groups_claim: Option<String>,
    /// Only members of one of these may sign in; empty: everyone the provider vouches for.
    pub allowed_groups: Vec<String>,
    /// PEM certificates to trust for the issuer instead of the web's roots.
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client secret stays out of logs.
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Reads and validates the providers file; `environment` looks up `${NAME}` references.
pub fn load(
    path: &Path,
    environment: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let fail = |reason: String| ConfigError::new(VARIABLE, format!("{}:{reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|err| fail(format!(" cannot read: {err}")))?;
    let file = File {
        text: &text,
        environment: &environment,
    };
    let (providers, cas) = file.parse().map_err(|(line, reason)| match line {
        Some(line) => fail(format!("{line}: {reason}")),
        None => fail(format!(" {reason}")),
    })?;
    providers
        .into_iter()
        .zip(cas)
        .map(|(mut provider, ca)| {
            if let Some((ca, line)) = ca {
                let pem = std::fs::read(&ca).map_err(|err| {
                    fail(format!(
                        "{line}: providers.{}.ca: cannot read {}: {err}",
                        provider.name,
                        ca.display()
                    ))
                })?;
                provider.ca = Some(pem);
            }
            Ok(provider)
        })
        .collect()
}

/// A failure: the line (when known) and the reason, which starts with the key.
type Failure = (Option<usize>, String);

struct File<'a, E> {
    text: &'a str,
    environment: &'a E,
}

impl<E: Fn(&str) -> Option<String>> File<'_, E> {
    fn line(&self, span: Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn at<T>(&self, value: &Spanned<T>, key: String, reason: impl Into<String>) -> Failure {
        (
            Some(self.line(value.span())),
            format!("{key}: {}", reason.into()),
        )
    }

    #[allow(clippy::type_complexity)]
    fn parse(&self) -> Result<(Vec<ProviderConfig>, Vec<Option<(PathBuf, usize)>>), Failure> {
        let raw: RawFile = toml::from_str(self.text).map_err(|err| {
            let line = err.span().map(|span| self.line(span));
            (line, err.message().trim().to_owned())
        })?;
        if raw.providers.is_empty() {
            return Err((
                None,
                "names no provider (add a [providers.<name>] table)".into(),
            ));
        }
        let mut providers = Vec::new();
        let mut cas = Vec::new();
        for (name, provider) in &raw.providers {
            let key = |field: &str| format!("providers.{name}.{field}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(self.at(
                    provider,
                    format!("providers.{name}"),
                    "a provider's name is used in paths: only a-z, 0-9 and -",
                ));
            }
            let raw = provider.get_ref();
            cas.push(
                raw.ca
                    .as_ref()
                    .map(|ca| (ca.get_ref().clone(), self.line(ca.span()))),
            );
            providers.push(self.provider(name, raw, &key)?);
        }
        Ok((providers, cas))
    }

    fn provider(
        &self,
        name: &str,
        raw: &RawProvider,
        key: &dyn Fn(&str) -> String,
    ) -> Result<ProviderConfig, Failure> {
        let issuer = self.expand(&raw.issuer, key("issuer"))?;
        check_issuer(&issuer).map_err(|reason| self.at(&raw.issuer, key("issuer"), reason))?;
        let client_id = self.expand(&raw.client_id, key("client_id"))?;
        if client_id.is_empty() {
            return Err(self.at(&raw.client_id, key("client_id"), "must not be empty"));
        }
        let client_secret = raw
            .client_secret
            .as_ref()
            .map(|secret| self.secret(secret, key("client_secret")))
            .transpose()?;
        let label = raw.label.as_ref().map_or_else(
            || format!("Sign in with {name}"),
            |label| label.get_ref().clone(),
        );
        Ok(ProviderConfig {
            name: name.to_owned(),
            issuer,
            client_id,
            client_secret,
            label,
            scopes: self.scopes(raw.scopes.as_ref(), key("scopes"))?,
            groups_claim: self.groups_claim(raw.groups_claim.as_ref(), key("groups_claim"))?,
            allowed_groups: self.groups(raw.allowed_groups.as_ref(), key("allowed_groups"))?,
            ca: None,
        })
    }

    /// `${NAME}` anywhere in the value, replaced by the variable (which must be set).
    fn expand(&self, value: &Spanned<String>, key: String) -> Result<String, Failure> {
        let mut out = String::new();
        let mut rest = value.get_ref().as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                return Err(self.at(value, key, "an unclosed ${ (write ${NAME})"));
            };
            let name = &rest[start + 2..start + end];
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(self.at(value, key, format!("${{{name}}} is not a variable name")));
            }
            let Some(found) = (self.environment)(name).filter(|found| !found.is_empty()) else {
                return Err(self.at(value, key, format!("the variable {name} is not set")));
            };
            out.push_str(&found);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A client secret is always a reference to the environment, so the file can be committed
    /// and mounted without holding it.
    fn secret(&self, value: &Spanned<String>, key: String) -> Result<String, Failure> {
        let text = value.get_ref();
        let reference =
            text.starts_with("${") && text.ends_with('}') && text.matches("${").count() == 1;
        if !reference {
            return Err(self.at(
                value,
                key,
                "write ${NAME} and set NAME in the environment: the file never holds a secret",
            ));
        }
        self.expand(value, key)
    }

    fn scopes(
        &self,
        raw: Option<&Spanned<Vec<String>>>,
        key: String,
    ) -> Result<Vec<String>, Failure> {
        let Some(raw) = raw else {
            return Ok(DEFAULT_SCOPES.map(str::to_owned).to_vec());
        };
        let mut scopes = vec!["openid".to_owned()];
        for scope in raw.get_ref() {
            if scope.is_empty() || scope.bytes().any(|b| b <= b' ' || b == b'"' || b == b'\\') {
                return Err(self.at(raw, key, format!("{scope:?} is not a scope")));
            }
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        Ok(scopes)
    }

    fn groups_claim(
        &self,
        raw: Option<&Spanned<String>>,
        key: String,
    ) -> Result<Option<String>, Failure> {
        match raw {
            Some(claim) if claim.get_ref().is_empty() => {
                Err(self.at(claim, key, "must name a claim"))
            }
            Some(claim) => Ok(Some(claim.get_ref().clone())),
            None => Ok(None),
        }
    }

    fn groups(
        &self,
        raw: Option<&Spanned<Vec<String>>>,
        key: String,
    ) -> Result<Vec<String>, Failure> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        if raw.get_ref().is_empty() {
            return Err(self.at(
                raw,
                key,
                "an empty list would let nobody in (leave it out to let everyone in)",
            ));
        }
        if let Some(bad) = raw
            .get_ref()
            .iter()
            .find(|group| group.is_empty() || group.contains(','))
        {
            return Err(self.at(
                raw,
                key,
                format!("{bad:?} is not a group name (no commas, not empty)"),
            ));
        }
        Ok(raw.get_ref().clone())
    }
}

/// An issuer is `https://…`; plain `http://` only on a loopback host (a provider on the same
/// machine, as in development and the tests). No query, no fragment.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|err| format!("{issuer:?} is not a URL: {err}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "must be an https:// URL (http:// only on loopback), not {issuer:?}"
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn load_text(text: &str) -> Result<Vec<ProviderConfig>, String> {
        let mut file = tempfile::NamedTempFile::new().expect("a temp file");
        file.write_all(text.as_bytes()).expect("written");
        load(file.path(), |name| {
            (name == "CORP_SECRET").then(|| "s3cret".to_owned())
        })
        .map_err(|err| {
            err.to_string()
                .replace(&file.path().display().to_string(), "FILE")
        })
    }

    const GOOD: &str = r#"
[providers.corp]
issuer = "https://id.example.com/realms/one"
client_id = "one-origin"
client_secret = "${CORP_SECRET}"
label = "Sign in with Corp"
scopes = ["email", "groups"]
groups_claim = "groups"
allowed_groups = ["staff"]

[providers.dev]
issuer = "http://127.0.0.1:5556"
client_id = "local"
"#;

    #[test]
    fn a_good_file_reads_with_defaults() {
        let providers = load_text(GOOD).expect("valid");
        let corp = &providers[0];
        assert_eq!(corp.name, "corp");
        assert_eq!(corp.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(corp.scopes, ["openid", "email", "groups"]);
        assert_eq!(corp.allowed_groups, ["staff"]);
        let dev = &providers[1];
        assert_eq!(dev.label, "Sign in with dev");
        assert_eq!(dev.scopes, ["openid", "email", "profile"]);
        assert_eq!(dev.client_secret, None);
        assert!(!format!("{corp:?}").contains("s3cret"), "no secret in logs");
    }

    #[test]
    fn each_mistake_names_the_line_and_the_key() {
        let cases = [
            (
                GOOD.replace("https://id.example.com/realms/one", "http://id.example.com"),
                "FILE:3: providers.corp.issuer: must be an https:// URL",
            ),
            (
                GOOD.replace("\"${CORP_SECRET}\"", "\"hunter2\""),
                "FILE:5: providers.corp.client_secret: write ${NAME}",
            ),
            (
                GOOD.replace("${CORP_SECRET}", "${MISSING}"),
                "FILE:5: providers.corp.client_secret: the variable MISSING is not set",
            ),
            (
                GOOD.replace("[providers.dev]", "[providers.Dev]"),
                "FILE:11: providers.Dev: a provider's name is used in paths",
            ),
            (
                GOOD.replace("allowed_groups = [\"staff\"]", "allowed_groups = []"),
                "FILE:9: providers.corp.allowed_groups: an empty list",
            ),
            (
                GOOD.replace("label =", "lable ="),
                "FILE:6: unknown field `lable`",
            ),
            (
                GOOD.replace("client_id = \"local\"\n", ""),
                "FILE:11: missing field `client_id`",
            ),
            ("".to_owned(), "FILE: names no provider"),
        ];
        for (text, expected) in cases {
            let err = load_text(&text).expect_err(expected);
            assert!(
                err.starts_with(&format!("{VARIABLE}: {expected}")),
                "{err}\nwanted {expected}"
            );
        }
    }

    #[test]
    fn a_ca_file_is_read_after_validation() {
        let with_ca = GOOD.replace(
            "[providers.dev]",
            "ca = \"/nonexistent/ca.pem\"\n\n[providers.dev]",
        );
        let err = load_text(&with_ca).expect_err("no such file");
        assert!(
            err.contains(":11: providers.corp.ca: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        // A mistake further down is reported first.
        let err = load_text(&with_ca.replace("client_id = \"local\"", "client_id = \"\""))
            .expect_err("empty id");
        assert!(
            err.contains("providers.dev.client_id: must not be empty"),
            "{err}"
        );
    }
}
