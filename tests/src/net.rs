//! Loopback ports: a free one, waiting for a listener, serving a test app.

use std::{
    net::TcpListener,
    path::Path,
    time::{Duration, Instant},
};

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The process id of the redis-server (or sentinel) answering at `url`
/// (`INFO server`), when one answers. Tells a server of one's own from
/// another test's that took the port first (a port from [`free_port`] is
/// free only until someone binds it).
pub fn redis_pid(url: &str) -> Option<u32> {
    let mut c = redis::Client::open(url).ok()?.get_connection().ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until something listens on `addr`; fails the test after `timeout`,
/// showing `what` and its log.
pub fn wait_listening(addr: &str, timeout: Duration, what: &str, log: &Path) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within {timeout:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Serves `app` on `listener` in a task until the returned sender is used or
/// dropped (the test servers: the forge simulator, the model stub).
pub fn serve_until_told(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    tx
}
