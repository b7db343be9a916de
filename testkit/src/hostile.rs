//! An HTTP endpoint that answers the way a hostile or broken receiver does,
//! written on a raw TCP socket so that it can send what no well-behaved
//! server library would: a NUL in the body, invalid UTF-8, a body without
//! end, a body one byte a second, a reset, or nothing at all. The path of
//! each request picks the behaviour (see [`Behaviour`]); every request is
//! counted by path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the endpoint does with a request, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `/nul`: `200` with the body `ok\0ok`.
    Nul,
    /// `/invalid-utf8`: `500` with bytes that are not UTF-8 (and a NUL).
    InvalidUtf8,
    /// `/huge`: `200` with a 64 MiB body, streamed.
    Huge,
    /// `/slow`: `200`, then the body one byte a second.
    Slow,
    /// `/reset`: the connection closed with a reset, no answer.
    Reset,
    /// `/hang`: the request read, then nothing until the client leaves.
    Hang,
    /// `/escape`: `200` with terminal escape codes and HTML.
    Escape,
    /// `/poison`: `200` with the body `poison` (for tests that make the
    /// database refuse that body).
    Poison,
    /// Anything else: `200 ok`.
    Ok,
}

impl Behaviour {
    fn for_path(path: &str) -> Self {
        match path.trim_start_matches('/').split(['/', '?']).next() {
            Some("nul") => Self::Nul,
            Some("invalid-utf8") => Self::InvalidUtf8,
            Some("huge") => Self::Huge,
            Some("slow") => Self::Slow,
            Some("reset") => Self::Reset,
            Some("hang") => Self::Hang,
            Some("escape") => Self::Escape,
            Some("poison") => Self::Poison,
            _ => Self::Ok,
        }
    }
}

/// The endpoint; stops when dropped.
pub struct HostileEndpoint {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    stop: CancellationToken,
}

impl HostileEndpoint {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the hostile endpoint");
        let addr = listener.local_addr().expect("an address");
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let stop = CancellationToken::new();
        tokio::spawn({
            let hits = Arc::clone(&hits);
            let stop = stop.clone();
            async move {
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((s, _)) => s,
                            Err(_) => continue,
                        },
                        () = stop.cancelled() => return,
                    };
                    let hits = Arc::clone(&hits);
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            () = serve(stream, hits) => {}
                            () = stop.cancelled() => {}
                        }
                    });
                }
            }
        });
        Self { addr, hits, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received on a path.
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for HostileEndpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Reads requests on one connection (headers and a `Content-Length` body)
/// and answers each by its path.
async fn serve(mut stream: TcpStream, hits: Arc<Mutex<HashMap<String, usize>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(path) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        *hits
            .lock()
            .expect("hits lock")
            .entry(path.clone())
            .or_default() += 1;
        let behaviour = Behaviour::for_path(&path);
        if answer(&mut stream, behaviour).await.is_err() {
            return;
        }
        if matches!(
            behaviour,
            Behaviour::Huge | Behaviour::Slow | Behaviour::Reset | Behaviour::Hang
        ) {
            return;
        }
    }
}

/// One request's path; `None` when the connection ends first.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + length);
    Some(path)
}

async fn answer(stream: &mut TcpStream, behaviour: Behaviour) -> std::io::Result<()> {
    let fixed = |status: &str, body: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    match behaviour {
        Behaviour::Nul => stream.write_all(&fixed("200 OK", b"ok\0ok")).await,
        Behaviour::InvalidUtf8 => {
            stream
                .write_all(&fixed(
                    "500 Internal Server Error",
                    b"bad \xff\xfe\xfd utf-8 \0 here",
                ))
                .await
        }
        Behaviour::Escape => {
            stream
                .write_all(&fixed(
                    "200 OK",
                    b"\x1b[31mred\x1b[0m <img src=x onerror=alert(1)>",
                ))
                .await
        }
        Behaviour::Ok => stream.write_all(&fixed("200 OK", b"ok")).await,
        Behaviour::Poison => stream.write_all(&fixed("200 OK", b"poison")).await,
        Behaviour::Huge => {
            let size = 64 * 1024 * 1024;
            stream
                .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").as_bytes())
                .await?;
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..size / block.len() {
                stream.write_all(&block).await?;
            }
            Ok(())
        }
        Behaviour::Slow => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await?;
            for _ in 0..1000 {
                stream.write_all(b"x").await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(())
        }
        Behaviour::Reset => {
            // Linger zero: closing sends a reset, not a clean end.
            stream.set_zero_linger()?;
            Ok(())
        }
        Behaviour::Hang => {
            // Read until the client gives up.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok(())
        }
    }
}
