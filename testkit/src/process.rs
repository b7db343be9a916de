//! Herald binaries as real child processes, for the tests that kill or
//! signal them.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago (bind to 0, read it, let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Another package's binary of this workspace, beside the test's own
/// (`target/debug/<name>`); `cargo test --workspace` builds them all.
///
/// # Panics
/// When it has not been built.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/<test> → target/debug/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("the target directory");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bins` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// A running binary; killed (SIGKILL) if dropped while still running.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
}

impl ChildProcess {
    /// Starts `binary` with exactly the given `HERALD__…` variables (plus
    /// `PATH` and `RUST_LOG`).
    pub fn spawn(binary: impl AsRef<Path>, args: &[&str], vars: &HashMap<String, String>) -> Self {
        Self::start(binary.as_ref(), args, vars, None)
    }

    /// Like `spawn`, with `RUST_LOG=rust_log` and everything the process
    /// writes (stdout and stderr) going to the file `log`.
    pub fn spawn_logged(
        binary: impl AsRef<Path>,
        args: &[&str],
        vars: &HashMap<String, String>,
        rust_log: &str,
        log: &Path,
    ) -> Self {
        Self::start(binary.as_ref(), args, vars, Some((rust_log, log)))
    }

    fn start(
        binary: &Path,
        args: &[&str],
        vars: &HashMap<String, String>,
        logged: Option<(&str, &Path)>,
    ) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .envs(vars)
            .stdin(Stdio::null());
        if let Some((rust_log, log)) = logged {
            let file = std::fs::File::create(log).expect("create the log file");
            let err = file.try_clone().expect("clone the log file");
            command
                .env("RUST_LOG", rust_log)
                .stdout(Stdio::from(file))
                .stderr(Stdio::from(err));
        }
        let child = command.spawn().expect("spawn Herald binary");
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the process should drain and exit by itself.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits for the process to exit; `None` if it is still running after
    /// `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
