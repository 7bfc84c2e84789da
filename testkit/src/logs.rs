//! Reading what a process logged: the tests' processes log to files in the test's directory.

use std::path::Path;

/// The first value `find` returns for a line of the file at `path` (`None` when no line
/// matches yet, or the file does not exist yet).
pub fn find_line<T>(path: &Path, find: impl FnMut(&str) -> Option<T>) -> Option<T> {
    std::fs::read_to_string(path).ok()?.lines().find_map(find)
}

/// The file at `path`, or an empty string when it does not exist (for failure messages).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
