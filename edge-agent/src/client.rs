//! A client of a running daemon's API, over its Unix socket: what `edge-agent ask`
//! and the tests send.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {}: is edge-agent serve running?", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the request could not be made: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("the daemon's connection failed: {0}")]
    Http(#[from] hyper::Error),
}

/// Sends `body` to `path` on the daemon; returns the status and the body.
pub async fn request(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, Bytes), ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "edge-agent");
    let body = match body {
        Some(json) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(json.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let response = sender.send_request(builder.body(body)?).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}
