//! Accepting the API's connections so that one local client cannot lock the
//! others out: a cap on open connections in total and per client (below the
//! unit's file limit), a header read timeout that also closes a connection
//! that sends nothing or stalls between requests, and, per request, the body
//! timeout in [`crate::api`]. A connection over a cap is closed at once, so the
//! accept loop keeps up however many a client opens.
//!
//! A client is its uid on the Unix socket (forking does not make a new one) and
//! its address on loopback TCP; the rate limit uses the same key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::ClientId;

/// How many connections may be open, and how long a request head may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_client: usize,
    /// From the moment a connection waits for a request (new, or idle after a
    /// response) to the end of its headers.
    pub header_timeout: Duration,
}

/// A listener that names who connected.
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl std::future::Future<Output = std::io::Result<(Self::Io, ClientId)>> + Send;
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Io, ClientId)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        let client = match stream.peer_cred() {
            Ok(cred) => ClientId(format!("uid:{}", cred.uid())),
            Err(_) => ClientId("unix:unknown".to_string()),
        };
        Ok((stream, client))
    }
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> std::io::Result<(Self::Io, ClientId)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        Ok((stream, ClientId(format!("ip:{}", peer.ip()))))
    }
}

/// Open connections, in total and per client.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<String, usize>,
}

/// One admitted connection; its place is given back when it closes.
struct Admission {
    open: Arc<Mutex<Open>>,
    client: String,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("open connections");
        open.total -= 1;
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

fn admit(open: &Arc<Mutex<Open>>, client: &str, limits: &Limits) -> Option<Admission> {
    let mut guard = open.lock().expect("open connections");
    let theirs = guard.by_client.get(client).copied().unwrap_or(0);
    if guard.total >= limits.max_connections || theirs >= limits.max_per_client {
        return None;
    }
    guard.total += 1;
    *guard.by_client.entry(client.to_string()).or_insert(0) += 1;
    Some(Admission {
        open: open.clone(),
        client: client.to_string(),
    })
}

/// Serves `app` on `listener` until `shutdown`; then lets open connections
/// finish (graceful) and returns when they have. `refused` counts connections
/// closed at accept for being over a cap.
pub async fn serve<A: Accept>(
    mut listener: A,
    app: Router,
    limits: Limits,
    refused: prometheus_client::metrics::counter::Counter,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (io, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept an API connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admission) = admit(&open, &client.0, &limits) else {
            refused.inc();
            tracing::debug!(client = %client.0, "connection over the cap: closed");
            continue;
        };
        connections.spawn(serve_connection(
            io,
            client,
            admission,
            app.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection<Io>(
    io: Io,
    client: ClientId,
    admission: Admission,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _admission = admission;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(client.clone()));
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, "API connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_total_and_per_client_and_a_closed_connection_frees_its_place() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = Limits {
            max_connections: 3,
            max_per_client: 2,
            header_timeout: Duration::from_secs(1),
        };
        let a1 = admit(&open, "uid:1", &limits).unwrap();
        let _a2 = admit(&open, "uid:1", &limits).unwrap();
        assert!(admit(&open, "uid:1", &limits).is_none(), "per client");
        let _b1 = admit(&open, "uid:2", &limits).unwrap();
        assert!(admit(&open, "uid:3", &limits).is_none(), "in total");
        drop(a1);
        let _c1 = admit(&open, "uid:3", &limits).expect("a place came back");
        assert!(admit(&open, "uid:1", &limits).is_none(), "full again");
    }
}
