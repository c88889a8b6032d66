//! A TCP proxy a test puts between a process and a server (PostgreSQL), so
//! it can take the server away: `cut` closes every proxied connection and
//! the listening socket (new connections are refused), `restore` listens
//! again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let port = crate::process::free_port();
        let p = Proxy {
            port,
            target,
            tasks: Arc::default(),
        };
        p.restore().await;
        p
    }

    /// Listens (again) on the proxy's port.
    pub async fn restore(&self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).expect("the proxy's port is free again");
        let listener = socket.listen(128).unwrap();
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Closes every connection and stops listening.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// `url` (a `postgres://host:port/db` URL) pointed at the proxy.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (auth_host, path) = rest.split_once('/').expect("a database path");
        let (auth, _) = auth_host.rsplit_once('@').unwrap_or(("", auth_host));
        let at = if auth.is_empty() { "" } else { "@" };
        format!("{scheme}://{auth}{at}127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
