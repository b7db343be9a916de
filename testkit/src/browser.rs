//! A real browser for the console's tests: Debian's headless Chromium,
//! driven through ChromeDriver over the W3C WebDriver protocol (plain HTTP
//! and JSON, spoken here with reqwest). Each `Browser` has its own
//! chromedriver process, port and profile, so tests run in parallel.
//! Chromedriver and the browser it starts run in a process group of their
//! own, killed whole when the `Browser` is dropped: a test that fails half
//! way leaves no browser behind.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::process::free_port;

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    profile: PathBuf,
}

/// An element found in the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Installs Chromium and ChromeDriver from Debian's packages if they are
    /// missing (`scripts/install-browser.sh`), starts a driver and opens a
    /// session.
    ///
    /// # Panics
    /// The browser cannot be installed or started.
    pub async fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-browser.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("running scripts/install-browser.sh");
        assert!(
            out.status.success(),
            "installing the browser failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let driver_path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let profile =
            std::env::temp_dir().join(format!("herald-chromium-{}", uuid::Uuid::now_v7()));
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            profile,
        };
        browser.open_session().await;
        browser
    }

    async fn open_session(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self
                .http
                .get(format!("{}/status", self.base))
                .send()
                .await
                .ok();
            if let Some(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         format!("--user-data-dir={}", self.profile.display())]
            }
        }}});
        let v = self.raw("POST", "/session", Some(caps)).await;
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        self.base = format!("{}/session/{id}", self.base);
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().await.expect("webdriver request");
        let v: Value = resp.json().await.expect("webdriver answer");
        v.get("value").cloned().unwrap_or(v)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let v = self.raw(method, path, body).await;
        match v.get("error").and_then(Value::as_str) {
            Some(e) => Err(format!("{e}: {}", v["message"])),
            None => Ok(v),
        }
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})))
            .await
            .expect("navigate");
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .ok()?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// Waits up to 20 s for an element matching `css`.
    ///
    /// # Panics
    /// When none appears.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_for_within(css, Duration::from_secs(20)).await
    }

    /// Waits up to `timeout` for an element matching `css`.
    ///
    /// # Panics
    /// When none appears.
    pub async fn wait_for_within(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} after {timeout:?}; the page shows: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `timeout` until the element matching `css` holds `text`.
    ///
    /// # Panics
    /// When it does not.
    pub async fn wait_text(&self, css: &str, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find(css).await {
                let got = self.text(&e).await;
                if got.contains(text) {
                    return got;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} never held {text:?}; the page shows: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clicks an element.
    pub async fn click(&self, e: &Element) {
        self.call("POST", &format!("/element/{}/click", e.0), None)
            .await
            .expect("click");
    }

    /// Clears an input and types `text` into it.
    pub async fn fill(&self, e: &Element, text: &str) {
        self.call("POST", &format!("/element/{}/clear", e.0), None)
            .await
            .expect("clear");
        self.call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await
        .expect("type");
    }

    /// The element's rendered text.
    pub async fn text(&self, e: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", e.0), None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The whole page's text, for failure messages.
    pub async fn page_text(&self) -> String {
        self.execute("return document.body ? document.body.innerText : ''", &[])
            .await
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(2000)
            .collect()
    }

    /// Runs `script` (a function body) in the page and answers its result.
    pub async fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Accepts the `confirm()` or `alert()` the page shows, waiting up to
    /// 5 s for it.
    pub async fn accept_dialog(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.call("POST", "/alert/accept", None).await.is_err() {
            assert!(Instant::now() < deadline, "no dialog to accept");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resizes the window (a narrow one, say, for a phone).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .expect("resize");
    }

    /// The address bar.
    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Saves a PNG of the window as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let v = self
            .call("GET", "/screenshot", None)
            .await
            .expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("saving a screenshot");
    }
}

impl Browser {
    /// The process group of chromedriver and its browser.
    #[must_use]
    pub fn process_group(&self) -> u32 {
        self.driver.id()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser process.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
