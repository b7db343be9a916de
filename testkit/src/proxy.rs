//! A TCP proxy on a random loopback port in front of a real service (the
//! broker), that a test can cut — every connection dropped, new ones
//! refused — and restore, as a network partition would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    /// Cancelled to cut: ends every connection of the current generation.
    generation: Arc<Mutex<Option<CancellationToken>>>,
    stop: CancellationToken,
}

impl Proxy {
    /// Forwards connections on a new loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("an address");
        let generation = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let stop = CancellationToken::new();
        tokio::spawn({
            let generation = Arc::clone(&generation);
            let stop = stop.clone();
            async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        () = stop.cancelled() => return,
                    };
                    let Ok((inbound, _)) = accepted else { continue };
                    let current = generation.lock().expect("lock").clone();
                    // Cut: the connection is closed at once.
                    let Some(token) = current else { continue };
                    tokio::spawn(forward(inbound, upstream, token));
                }
            }
        });
        Self {
            addr,
            generation,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Drops every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        if let Some(token) = self.generation.lock().expect("lock").take() {
            token.cancel();
        }
    }

    pub fn restore(&self) {
        let mut generation = self.generation.lock().expect("lock");
        if generation.is_none() {
            *generation = Some(CancellationToken::new());
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.stop.cancel();
    }
}

async fn forward(mut inbound: TcpStream, upstream: SocketAddr, cut: CancellationToken) {
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        () = cut.cancelled() => {}
    }
}
