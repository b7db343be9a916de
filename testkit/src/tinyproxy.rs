//! A real HTTP CONNECT proxy for the egress tests: Debian's tinyproxy,
//! installed on first use (`scripts/install-tinyproxy.sh`) and run in the
//! foreground on a free loopback port with a config and log of its own, so
//! tests run in parallel. It runs in a process group of its own, killed
//! whole when the `TinyProxy` is dropped, and its directory is removed.
//!
//! What the proxy was asked is read back from its log, where each request
//! line appears as
//! `Request (file descriptor 5): CONNECT 127.0.0.1:41234 HTTP/1.1`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// How long tinyproxy has to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One running tinyproxy.
pub struct TinyProxy {
    child: Child,
    port: u16,
    /// Holds the config and the log.
    dir: PathBuf,
}

impl TinyProxy {
    /// Installs tinyproxy if it is missing, and starts one on a free
    /// loopback port that tunnels to any port and accepts loopback clients
    /// only.
    ///
    /// # Panics
    /// tinyproxy cannot be installed, or does not start listening.
    pub async fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-tinyproxy.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("running scripts/install-tinyproxy.sh");
        assert!(
            out.status.success(),
            "installing tinyproxy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let binary = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dir = std::env::temp_dir().join(format!("herald-tinyproxy-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("creating tinyproxy's directory");
        let port = free_port();
        let config = dir.join("tinyproxy.conf");
        std::fs::write(&config, config_text(port, &dir.join("tinyproxy.log")))
            .expect("writing tinyproxy's config");
        let child = Command::new(binary)
            // -d: stay in the foreground, so the child is tinyproxy itself.
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting tinyproxy");
        let mut proxy = Self { child, port, dir };
        proxy.wait_listening().await;
        proxy
    }

    /// Waits until the port accepts connections, failing at once if
    /// tinyproxy exits (another process took the port, a bad config).
    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("tinyproxy's status") {
                panic!("tinyproxy exited ({status}); its log:\n{}", self.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {} within {START_TIMEOUT:?}; its log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:<port>`, for `delivery.proxy_url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        // Bytes, not a string: the log is written as it is read.
        let bytes = std::fs::read(self.dir.join("tinyproxy.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Every request line the proxy received, in order
    /// (`CONNECT 127.0.0.1:41234 HTTP/1.1`, `POST http://… HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once("Request (file descriptor ")?;
                let (_, request) = rest.split_once("): ")?;
                Some(request.trim().to_owned())
            })
            .collect()
    }

    /// The authorities of the CONNECT requests, in order
    /// (`127.0.0.1:41234`, `[::1]:443`).
    pub fn connects(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.strip_prefix("CONNECT "))
            .filter_map(|r| r.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

/// Listens on loopback only, takes loopback clients only, tunnels to any
/// port (no `ConnectPort` line), logs every request line (`Connect` level).
/// No `User`/`Group`: tinyproxy then runs as the test's user (as root it
/// only warns), and can write its log in the test's directory.
fn config_text(port: u16, log: &Path) -> String {
    format!(
        "Port {port}\n\
         Listen 127.0.0.1\n\
         Allow 127.0.0.1\n\
         Timeout 60\n\
         MaxClients 100\n\
         LogFile \"{}\"\n\
         LogLevel Connect\n",
        log.display()
    )
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
