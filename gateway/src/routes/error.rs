//! The one error a routes file is refused with: where (file and line) and why.

use std::path::PathBuf;

/// A routes file that cannot be used, displayed as `file:line: reason`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {reason}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RoutesError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub reason: String,
}
