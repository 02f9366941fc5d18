//! `edge-agent ask TEXT`: one turn against a running daemon, over its Unix socket.

use std::path::Path;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Sends `body` to `path` on the daemon; returns the status and the body.
pub async fn request(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, Bytes)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to {}: is edge-agent serve running?", socket.display()))?;
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

/// Asks one question and prints the answer (or the JSON, with `json`).
pub async fn ask(socket: &Path, text: &str, conversation: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut body = serde_json::json!({ "text": text });
    if let Some(id) = conversation {
        body["conversation_id"] = serde_json::Value::String(id.to_string());
    }
    let (status, bytes) = request(socket, hyper::Method::POST, "/v1/ask", Some(body)).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("the daemon answered {status} with non-JSON"))?;
    if !(200..300).contains(&status) {
        bail!(
            "the daemon answered {status}: {}",
            value["error"].as_str().unwrap_or("no message")
        );
    }
    if json {
        println!("{value}");
    } else {
        println!(
            "{}",
            value["answer"].as_str().unwrap_or("(answer pending; see /v1/events)")
        );
        println!(
            "     intent {} · sentiment {} · route {} · conversation {}",
            value["intent"].as_str().unwrap_or("?"),
            value["sentiment"].as_str().unwrap_or("?"),
            value["route"].as_str().unwrap_or("?"),
            value["conversation_id"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
