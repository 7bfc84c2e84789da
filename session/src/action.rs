//! What a request that changes a session asks for: logging in, incrementing, logging out or
//! ending sessions from the list of one's sessions.
//! A refused cross-site request names it (see [`crate::cross_site`]), and so does the page that
//! asks the person to confirm it.
//!
//! A leaf, like [`crate::audience`]: the session operations, the errors and the pages import it.

use std::fmt;

/// A request that changes a session, named for the page that asks to confirm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    Increment,
    Logout {
        everywhere: bool,
    },
    /// Ending one session from the list of one's sessions.
    EndSession,
    /// Ending every session but the current one.
    EndOthers,
}

impl Action {
    /// What the person is asked whether they want, completing "Another site sent you here to …".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Login => "log in",
            Self::Increment => "increment your count",
            Self::Logout { everywhere: false } => "log out",
            Self::Logout { everywhere: true } => "log out on every device",
            Self::EndSession => "end one of your sessions",
            Self::EndOthers => "end all your other sessions",
        }
    }

    /// The label of the button that confirms.
    pub fn button(self) -> &'static str {
        match self {
            Self::Login => "Log in",
            Self::Increment => "Increment",
            Self::Logout { .. } => "Log out",
            Self::EndSession => "End the session",
            Self::EndOthers => "End the other sessions",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}
