//! Supervised child processes.
//!
//! Every process started here is owned by a [`Supervised`] guard: dropping it sends SIGTERM,
//! waits up to [`STOP_GRACE`] for a clean exit (services drain their requests), then SIGKILLs and
//! reaps it. No process is ever found by name (`pkill`): only the PIDs we started are signalled.
//!
//! Each child leads a process group of its own. A terminal's Ctrl-C goes to its whole
//! foreground process group; in ours it would reach every part at once, and then the launcher's
//! own SIGTERM a second time (Redis then "insists" and exits without its shutdown save). Apart,
//! the launcher alone gets it and stops the parts in order.

use std::{
    ffi::OsString,
    fs::File,
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::listening::{self, Listeners};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

/// How long a stopped process gets to exit before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where a child's stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Output {
    /// To our stderr, each line prefixed with the process name (`writer  | …`).
    Prefixed,
    /// Appended to a file.
    File(PathBuf),
    /// Both: prefixed to our stderr and appended to a file (tests that read their logs, run
    /// with the logs shown).
    PrefixedAndFile(PathBuf),
    /// Discarded.
    Null,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
    /// Variables removed from the inherited environment (so a developer's shell cannot leak
    /// settings into a test).
    pub env_remove: Vec<String>,
    pub current_dir: Option<PathBuf>,
    pub output: Output,
}

impl Spec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            current_dir: None,
            output: Output::Null,
        }
    }

    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    #[must_use]
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    #[must_use]
    pub fn env_remove(mut self, name: &str) -> Self {
        self.env_remove.push(name.to_owned());
        self
    }

    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    #[must_use]
    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// The value this spec gives variable `name`, if it sets one.
    pub fn env_value(&self, name: &str) -> Option<&OsString> {
        self.env
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Where the process will say it listens: the file its `LISTEN_ADDR_FILE` names.
    pub fn listen_addr_file(&self) -> Option<PathBuf> {
        self.env_value(listening::VARIABLE).map(PathBuf::from)
    }
}

/// A running child process, stopped and reaped on drop.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    spec: Spec,
}

impl Supervised {
    /// Starts `spec`. A stale `LISTEN_ADDR_FILE` of an earlier run is removed first, so that
    /// [`Supervised::listeners`] only ever reads what this process wrote.
    pub fn spawn(spec: Spec) -> std::io::Result<Self> {
        if let Some(file) = spec.listen_addr_file() {
            match std::fs::remove_file(&file) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        let mut child = command(&spec)?.spawn().map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!(
                    "cannot start {} ({}): {err}",
                    spec.name,
                    spec.program.display()
                ),
            )
        })?;
        copy_output(&spec, &mut child)?;
        Ok(Self {
            name: spec.name.clone(),
            child,
            spec,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the process listens, as it wrote to its `LISTEN_ADDR_FILE` once every listener was
    /// bound (started with port 0, it is the only one who knows): waits up to `timeout` for the
    /// file. An error says the process exited first, or took too long, or sets no such file.
    pub fn listeners(&mut self, timeout: Duration) -> Result<Listeners, String> {
        let file = self
            .spec
            .listen_addr_file()
            .ok_or_else(|| format!("{} was started without {}", self.name, listening::VARIABLE))?;
        let deadline = Instant::now() + timeout;
        loop {
            match Listeners::read(&file) {
                Ok(Some(listeners)) => return Ok(listeners),
                Ok(None) => {}
                Err(err) => return Err(format!("{}: {err}", self.name)),
            }
            if let Some(status) = self.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before it listened",
                    self.name
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not say where it listens within {timeout:?} ({} is still missing)",
                    self.name,
                    file.display()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal (for example SIGHUP) to the process.
    pub fn signal(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Sends a signal to the process's whole process group, as a terminal's Ctrl-C does (the
    /// process leads its group; see the module docs).
    pub fn signal_group(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// Stops the process: SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL. Returns its exit
    /// status (`None` if it had to be killed).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.try_wait() {
            return Some(status);
        }
        self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_timeout(STOP_GRACE) {
            return Some(status);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process and starts it again with the same spec.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.restart_with(self.spec.clone())
    }

    /// Stops the process and starts `spec` in its place.
    pub fn restart_with(&mut self, spec: Spec) -> std::io::Result<()> {
        self.stop();
        *self = Self::spawn(spec)?;
        Ok(())
    }

    /// What this process was started with.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The command that starts `spec`, in a process group of its own, its output wired as
/// `spec.output` says (a prefixed copy is pumped by [`copy_output`] once it runs).
fn command(spec: &Spec) -> std::io::Result<Command> {
    let mut command = Command::new(&spec.program);
    command.args(&spec.args).stdin(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    for name in &spec.env_remove {
        command.env_remove(name);
    }
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &spec.current_dir {
        command.current_dir(dir);
    }
    match &spec.output {
        Output::Prefixed | Output::PrefixedAndFile(_) => {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        Output::File(path) => {
            let file = File::options().create(true).append(true).open(path)?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        Output::Null => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    Ok(command)
}

/// For prefixed output: copies the child's stdout and stderr to ours, each line prefixed with
/// its name, and to the file `spec.output` names, if any.
fn copy_output(spec: &Spec, child: &mut Child) -> std::io::Result<()> {
    let file = match &spec.output {
        Output::Prefixed => None,
        Output::PrefixedAndFile(path) => Some(path),
        Output::File(_) | Output::Null => return Ok(()),
    };
    let width = spec.name.len().max(7);
    let prefix = format!("{:width$} | ", spec.name);
    let open = || {
        file.map(|path| File::options().create(true).append(true).open(path))
            .transpose()
    };
    if let Some(stdout) = child.stdout.take() {
        pump(prefix.clone(), stdout, open()?);
    }
    if let Some(stderr) = child.stderr.take() {
        pump(prefix, stderr, open()?);
    }
    Ok(())
}

/// Copies lines from `reader` to our stderr with `prefix`, on a thread of its own.
fn pump(prefix: String, reader: impl std::io::Read + Send + 'static, mut file: Option<File>) {
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = &mut file {
                // One write per line: the stdout and stderr pumps share the file.
                let _ = file.write_all(format!("{line}\n").as_bytes());
            }
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{prefix}{line}");
        }
    });
}
