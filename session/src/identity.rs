//! What a session knows beyond its user id: how it signed in and, for a sign-in through an
//! identity provider, the person's name, email and groups ([`Identity`]); and where it was
//! started ([`Device`]), for the list of one's sessions.
//!
//! Both are written once, at login, into the session's value next to the count (the layout is
//! in [`crate::store`]):
//!
//! ```text
//! <count>\n<identity as JSON>\n<device as JSON>
//! ```
//!
//! A read parses the count and the identity only, so what it costs does not grow with the user
//! agent. A value of an older layout (the count alone) reads as [`Method::Unknown`].

use serde::{Deserialize, Serialize};

/// Longest user agent kept: enough to tell browsers apart on the sessions page.
const MAX_AGENT_LEN: usize = 200;

/// How a session signed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The open demo login (no credentials configured).
    Demo,
    /// A user name and password from `AUTH_USERS_FILE`.
    Password,
    /// An OpenID Connect provider (named in [`Identity::provider`]).
    Provider,
    /// Written by an older version, or by a newer one with a method this one does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Demo => "demo",
            Self::Password => "password",
            Self::Provider => "provider",
            Self::Unknown => "unknown",
        }
    }
}

/// Who the session's user is, as far as the login told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default)]
    pub method: Method,
    /// The provider's name in `AUTH_PROVIDERS_FILE` (for [`Method::Provider`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Identity {
    /// A session of the open demo login.
    pub fn demo() -> Self {
        Self {
            method: Method::Demo,
            ..Self::default()
        }
    }

    /// A session of a password login.
    pub fn password() -> Self {
        Self {
            method: Method::Password,
            ..Self::default()
        }
    }

    /// How the session signed in, for people: `password`, `demo`, or the provider's name.
    pub fn signed_in_with(&self) -> &str {
        match (&self.method, &self.provider) {
            (Method::Provider, Some(provider)) => provider,
            (method, _) => method.as_str(),
        }
    }
}

/// Where a session was started: shown on the sessions page, and the provider's session id a
/// back-channel logout may name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The browser's `User-Agent`, cut to a couple of hundred characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The client address as the writer decided it (see the writer's `TRUSTED_GATEWAYS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The identity provider's session id (`sid` of the ID token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_session: Option<String>,
}

impl Device {
    pub fn new(agent: Option<&str>, address: Option<String>) -> Self {
        Self {
            agent: agent.map(|agent| cut(agent, MAX_AGENT_LEN).to_owned()),
            address,
            provider_session: None,
        }
    }
}

/// What a login writes after the count: `\n<identity>\n<device>`.
pub(crate) fn encode_tail(identity: &Identity, device: &Device) -> String {
    // Serializing these plain structs cannot fail; JSON never holds a raw line break, so the
    // lines stay lines.
    let identity = serde_json::to_string(identity).unwrap_or_default();
    let device = serde_json::to_string(device).unwrap_or_default();
    format!("\n{identity}\n{device}")
}

/// The identity lines of [`Identity::demo`] and [`Identity::password`], as written.
const DEMO_LINE: &str = r#"{"method":"demo"}"#;
const PASSWORD_LINE: &str = r#"{"method":"password"}"#;

/// A session's value split into its count, its identity and (still unparsed) its device.
#[derive(Debug)]
pub(crate) struct Value<'a> {
    pub count: i64,
    identity: Option<&'a str>,
    device: Option<&'a str>,
}

impl<'a> Value<'a> {
    /// `None` when the count is not a number (not a value this code wrote).
    pub fn split(raw: &'a str) -> Option<Self> {
        let mut lines = raw.splitn(3, '\n');
        let count = lines.next()?.parse().ok()?;
        Some(Self {
            count,
            identity: lines.next(),
            device: lines.next(),
        })
    }

    /// The identity; an unreadable or missing one is [`Method::Unknown`], never an error: the
    /// session itself is valid.
    pub fn identity(&self) -> Identity {
        match self.identity {
            // Sessions without a provider know only how they signed in: every read of one
            // would otherwise run the JSON parser to learn that (about 1 % of a read).
            Some(DEMO_LINE) => Identity::demo(),
            Some(PASSWORD_LINE) => Identity::password(),
            Some(line) => serde_json::from_str(line).unwrap_or_default(),
            None => Identity::default(),
        }
    }

    pub fn device(&self) -> Device {
        self.device
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_default()
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_a_read_needs_only_the_first_two_lines() {
        let identity = Identity {
            method: Method::Provider,
            provider: Some("corp".into()),
            name: Some("Ann \"A\"\nLee".into()),
            email: Some("ann@example.com".into()),
            groups: vec!["staff".into(), "admins".into()],
        };
        let mut device = Device::new(Some("Mozilla/5.0"), Some("192.0.2.1".into()));
        device.provider_session = Some("sid-1".into());
        let raw = format!("7{}", encode_tail(&identity, &device));
        assert_eq!(raw.lines().count(), 3, "{raw}");
        let value = Value::split(&raw).expect("a value");
        assert_eq!(value.count, 7);
        assert_eq!(value.identity(), identity);
        assert_eq!(value.device(), device);
        assert_eq!(identity.signed_in_with(), "corp");
    }

    #[test]
    fn the_lines_read_without_parsing_are_those_written() {
        for identity in [Identity::demo(), Identity::password()] {
            let raw = format!("3{}", encode_tail(&identity, &Device::default()));
            let value = Value::split(&raw).expect("a value");
            assert!(
                [Some(DEMO_LINE), Some(PASSWORD_LINE)].contains(&value.identity),
                "{raw}"
            );
            assert_eq!(value.identity(), identity);
        }
    }

    #[test]
    fn an_older_value_is_a_count_of_unknown_origin() {
        let value = Value::split("12").expect("a value");
        assert_eq!(value.count, 12);
        assert_eq!(value.identity().method, Method::Unknown);
        assert_eq!(value.device(), Device::default());
        assert!(Value::split("x\n{}").is_none());
        let unknown = Value::split("1\n{\"method\":\"webauthn\"}\n").expect("a value");
        assert_eq!(unknown.identity().method, Method::Unknown);
        assert_eq!(Identity::password().signed_in_with(), "password");
    }

    #[test]
    fn long_user_agents_are_cut_at_a_character() {
        let agent = "é".repeat(150);
        let device = Device::new(Some(&agent), None);
        let kept = device.agent.expect("an agent");
        assert!(kept.len() <= MAX_AGENT_LEN);
        assert!(kept.chars().all(|c| c == 'é'));
    }
}
