//! The service binaries (`writer`, `reader`, `gateway`), built with the caller's cargo profile.
//!
//! The launcher and the end-to-end tests start the real binaries, so they ask cargo to build
//! them first: a no-op when they are fresh, and never a stale binary after an edit.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// `tool` found in a directory of `PATH`, as a shell would find it.
pub fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// The packages whose binaries make up the stack.
pub const SERVICES: [&str; 3] = ["writer", "reader", "gateway"];

/// The directory holding the binaries of the running executable's profile: `target/<profile>`,
/// also when called from a test binary in `target/<profile>/deps`.
pub fn profile_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| std::io::Error::other("the executable has no directory"))?
        .to_owned();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Builds the service binaries into [`profile_dir`] with the same profile (`release` when the
/// directory is called `release`), showing cargo's progress unless `quiet`.
pub fn build(quiet: bool) -> Result<PathBuf, String> {
    let dir = profile_dir().map_err(|err| err.to_string())?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command.arg("build");
    if dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    for service in SERVICES {
        command.args(["-p", service]);
    }
    if quiet {
        command.arg("--quiet");
    }
    if let Some(workspace) = workspace_root() {
        command.current_dir(workspace);
    }
    let status = command
        .status()
        .map_err(|err| format!("cannot run {}: {err}", Path::new(&cargo).display()))?;
    if !status.success() {
        return Err(format!(
            "building {} failed ({status})",
            SERVICES.join(", ")
        ));
    }
    Ok(dir)
}

/// The path of service `name` in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The workspace root, known at compile time (this crate is one of its members).
pub fn workspace_root() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
}
