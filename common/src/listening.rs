//! Telling whoever started a service where it listens.
//!
//! Every `*_ADDR` may name port 0: the kernel then picks a free port as the listener is bound,
//! and no other program can take that number in between. The service logs it (`listening …
//! addr=127.0.0.1:40309`); for programs there is `LISTEN_ADDR_FILE`: once every listener is
//! bound, the service writes one `name=address` line per listener to that file,
//!
//! ```text
//! addr=127.0.0.1:40309
//! admin=127.0.0.1:43775
//! ```
//!
//! (`addr` is the public listener; the gateway adds `admin` and, with HTTPS, `https`). The file
//! is written whole under another name and renamed into place, so a reader never sees half of it.
//! A supervisor removes a stale one before it starts the service, then waits for it to appear:
//! the launcher (`cargo run`) and the tests do.

use std::{io, net::SocketAddr, path::Path};

use crate::{ConfigError, env};

/// The variable naming the file.
pub const VARIABLE: &str = "LISTEN_ADDR_FILE";

/// Writes `listeners` (name, bound address) to the file `LISTEN_ADDR_FILE` names; nothing when
/// it is unset. The error names the variable and the file.
pub fn announce(listeners: &[(&str, SocketAddr)]) -> Result<(), ConfigError> {
    let Some(path) = env::optional(VARIABLE)? else {
        return Ok(());
    };
    write(Path::new(&path), listeners)
        .map_err(|err| ConfigError::new(VARIABLE, format!("{path}: {err}")))
}

/// Writes `listeners` to `path` as `name=address` lines, atomically (a temporary file in the
/// same directory, renamed over `path`).
pub fn write(path: &Path, listeners: &[(&str, SocketAddr)]) -> io::Result<()> {
    let text: String = listeners
        .iter()
        .map(|(name, addr)| format!("{name}={addr}\n"))
        .collect();
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// The listeners a file written by [`write`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners(Vec<(String, SocketAddr)>);

impl Listeners {
    /// Reads `path`: `None` while it does not exist (the service has not bound yet).
    pub fn read(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map(Some).map_err(|line| {
                io::Error::other(format!("{}: not name=address: {line:?}", path.display()))
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Parses `name=address` lines; `Err` carries the first line that is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let (name, addr) = line.split_once('=').ok_or_else(|| line.to_owned())?;
                let addr = addr.trim().parse().map_err(|_| line.to_owned())?;
                Ok((name.trim().to_owned(), addr))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The address of listener `name` (`addr`, `admin`, `https`).
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.0
            .iter()
            .find(|(listener, _)| listener == name)
            .map(|(_, addr)| *addr)
    }

    /// The public listener (`addr`).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.get("addr")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_whole() {
        let dir = std::env::temp_dir().join(format!("listening-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("addr");
        assert_eq!(Listeners::read(&path).expect("read"), None, "not there yet");
        let (public, admin) = (
            "127.0.0.1:40309".parse().expect("addr"),
            "[::1]:43775".parse().expect("addr"),
        );
        write(&path, &[("addr", public), ("admin", admin)]).expect("write");
        let listeners = Listeners::read(&path).expect("read").expect("there");
        assert_eq!(listeners.addr(), Some(public));
        assert_eq!(listeners.get("admin"), Some(admin));
        assert_eq!(listeners.get("https"), None);
        // Nothing is left beside it.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["addr"]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_line_that_is_not_name_and_address_is_an_error() {
        assert_eq!(
            Listeners::parse("addr=127.0.0.1:1\nadmin=nowhere\n"),
            Err("admin=nowhere".to_owned())
        );
        assert_eq!(
            Listeners::parse("127.0.0.1:1"),
            Err("127.0.0.1:1".to_owned())
        );
    }
}
