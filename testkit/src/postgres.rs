//! A Postgres server of a test's own on loopback, from the machine's
//! Debian package (`/usr/lib/postgresql/<version>/bin`), for the tests that
//! crash the database while events flow. The machine's own server (5432)
//! is not touched.
//!
//! Its data directory, socket and log live in one temporary directory.
//! Started as root, every command runs as the `postgres` user (`runuser`),
//! who owns the directory: Postgres refuses to run as root. `initdb` runs
//! with `--no-sync` (a test does not outlive the machine) and trust
//! authentication; the server itself runs with the defaults Herald meets
//! in production (`fsync`, `synchronous_commit = on`).
//!
//! [`PrivatePostgres::crash`] is `pg_ctl stop -m immediate`: every server
//! process quits at once, without a checkpoint and without writing what is
//! still in its WAL buffers, as after a crash; [`PrivatePostgres::start`]
//! then recovers from the log. Dropped, the server is stopped the same way
//! and the directory removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::free_port;

/// A running (or crashed) Postgres server of one test.
pub struct PrivatePostgres {
    bin: PathBuf,
    /// Server settings beyond the defaults (`-c name=value` each).
    settings: Vec<String>,
    dir: PathBuf,
    port: u16,
    /// Commands run as the `postgres` user (the test runs as root).
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Initialises a cluster and starts it.
    ///
    /// # Panics
    /// Postgres is not installed or does not start.
    #[must_use]
    pub fn start_new() -> Self {
        Self::start_with(&[])
    }

    /// As [`start_new`](Self::start_new), with server settings
    /// (`name=value`) beyond the defaults.
    ///
    /// # Panics
    /// Postgres is not installed or does not start.
    #[must_use]
    pub fn start_with(settings: &[&str]) -> Self {
        let bin = server_bin();
        let dir = std::env::temp_dir().join(format!("herald-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir));
        }
        let pg = Self {
            bin,
            settings: settings.iter().map(|s| format!(" -c {s}")).collect(),
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = pg.data();
        pg.run_tool(
            "initdb",
            &[
                "--no-sync",
                "-A",
                "trust",
                "-U",
                "postgres",
                "-D",
                data.to_str().expect("utf-8 path"),
            ],
        );
        pg.start();
        pg
    }

    /// The URL of its `postgres` database.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections;
    /// after a [`crash`](Self::crash) it first recovers from the log.
    ///
    /// # Panics
    /// The server does not start.
    pub fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c shared_buffers=32MB -c max_connections=100{}",
            self.port,
            self.dir.display(),
            self.settings.concat()
        );
        let data = self.data();
        let log = self.dir.join("server.log");
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
    }

    /// Stops every server process at once, as a crash would: no checkpoint,
    /// and what is in the WAL buffers and not yet written is gone.
    pub fn crash(&self) {
        let data = self.data();
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// One of the server's tools, to run as the user who owns the data.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    fn run_tool(&self, name: &str, args: &[&str]) {
        run(self.tool(name).args(args));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's `bin` directory.
fn server_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .expect("Postgres is installed under /usr/lib/postgresql")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("a Postgres server with initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a Postgres tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
