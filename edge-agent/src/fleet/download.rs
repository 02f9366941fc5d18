//! Resumable HTTPS downloads of bundle payloads (rustls, HTTP/1.1).
//!
//! A payload is fetched into `<downloads>/<sha256>.part`. An interrupted fetch
//! keeps the bytes it got, in that file, across reconnects and restarts; the next
//! attempt asks for the rest with `Range: bytes=<have>-`. A server that ignores the
//! range (200 instead of 206) or answers a different one starts the file over. The
//! finished file is checked against the manifest by the caller, never trusted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the payload URL `{0}` is not an https:// URL")]
    NotHttps(String),
    #[error("cannot reach {host}: {error}")]
    Connect { host: String, error: String },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the server answered {status}{hint}")]
    Status { status: u16, hint: &'static str },
    #[error("the server sent more than the {expected} bytes the manifest announced")]
    TooLong { expected: u64 },
    #[error("nothing received for {0:?}: the transfer was cut, and resumes on the next attempt")]
    Idle(Duration),
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("TLS roots: {0}")]
    Roots(String),
}

/// What one attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes already on disk when the attempt started (0: from the beginning).
    pub resumed_from: u64,
    /// Bytes received in this attempt.
    pub received: u64,
}

/// Fetches payloads over HTTPS with one TLS configuration.
#[derive(Clone)]
pub struct Downloader {
    tls: tokio_rustls::TlsConnector,
    idle: Duration,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader").field("idle", &self.idle).finish()
    }
}

impl Downloader {
    /// Trusts the PEM bundle at `ca_file`, or the system's roots when it is empty.
    pub fn new(ca_file: &str, idle: Duration) -> Result<Downloader, DownloadError> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        if ca_file.is_empty() {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(DownloadError::Roots(format!(
                    "no system roots found ({} errors); set fleet.ca_file",
                    found.errors.len()
                )));
            }
        } else {
            let pem = std::fs::read(ca_file).map_err(|error| DownloadError::Io {
                path: PathBuf::from(ca_file),
                error,
            })?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| DownloadError::Roots(format!("{ca_file}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| DownloadError::Roots(format!("{ca_file}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(DownloadError::Roots(format!("{ca_file} holds no certificate")));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DownloadError::Roots(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Downloader {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            idle: idle.max(Duration::from_millis(100)),
        })
    }

    /// Brings `part` up to `size` bytes from `url`, resuming what it already holds.
    pub async fn fetch(&self, url: &str, part: &Path, size: u64) -> Result<Fetched, DownloadError> {
        let have = bytes_kept(part, size).await?;
        if have == size {
            return Ok(Fetched {
                resumed_from: have,
                received: 0,
            });
        }
        let (response, driver) = self.get(url, have).await?;
        let resumed_from = resume_point(&response, have, part).await?;
        let outcome = self.write_body(response.into_body(), part, resumed_from, size).await;
        driver.abort();
        let received = outcome?;
        if resumed_from + received < size {
            return Err(DownloadError::Http(format!(
                "the transfer ended at {} of {size} bytes",
                resumed_from + received
            )));
        }
        Ok(Fetched { resumed_from, received })
    }

    /// Sends a GET for `url` (from byte `have` on, when above 0) over a fresh TLS
    /// connection; the response, and the task driving the connection.
    async fn get(
        &self,
        url: &str,
        have: u64,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, tokio::task::JoinHandle<()>), DownloadError> {
        let uri: hyper::Uri = url.parse().map_err(|_| DownloadError::NotHttps(redact(url)))?;
        if uri.scheme_str() != Some("https") {
            return Err(DownloadError::NotHttps(redact(url)));
        }
        let host = uri
            .host()
            .ok_or_else(|| DownloadError::NotHttps(redact(url)))?
            .to_string();
        let tls = self.connect(&host, uri.port_u16().unwrap_or(443)).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| DownloadError::Http(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let host_header = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = hyper::Request::get(path)
            .header(hyper::header::HOST, host_header)
            .header(
                hyper::header::USER_AGENT,
                concat!("edge-agent/", env!("CARGO_PKG_VERSION")),
            );
        if have > 0 {
            request = request.header(hyper::header::RANGE, format!("bytes={have}-"));
        }
        let request = request
            .body(http_body_util::Empty::new())
            .map_err(|e| DownloadError::Http(e.to_string()))?;
        let response = tokio::time::timeout(self.idle, sender.send_request(request))
            .await
            .map_err(|_| DownloadError::Idle(self.idle))?
            .map_err(|e| DownloadError::Http(e.to_string()))?;
        Ok((response, driver))
    }

    /// TCP, then TLS against the configured roots, within the idle timeout.
    async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, DownloadError> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            self.tls.connect(name, tcp).await
        };
        tokio::time::timeout(self.idle, connect)
            .await
            .map_err(|_| DownloadError::Idle(self.idle))?
            .map_err(|e| DownloadError::Connect {
                host: host.to_string(),
                error: e.to_string(),
            })
    }

    /// Appends the body to `part` (or writes it anew from 0); how many bytes
    /// arrived. What arrived is kept for the next attempt, whatever ended this
    /// one, except a body longer than announced.
    async fn write_body(
        &self,
        mut body: hyper::body::Incoming,
        part: &Path,
        resumed_from: u64,
        size: u64,
    ) -> Result<u64, DownloadError> {
        let io = |error| DownloadError::Io {
            path: part.to_path_buf(),
            error,
        };
        if let Some(parent) = part.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed_from > 0)
            .truncate(resumed_from == 0)
            .open(part)
            .await
            .map_err(io)?;
        let mut received = 0u64;
        let outcome = loop {
            let frame = match tokio::time::timeout(self.idle, body.frame()).await {
                Err(_) => break Err(DownloadError::Idle(self.idle)),
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => break Err(DownloadError::Http(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            if resumed_from + received + data.len() as u64 > size {
                break Err(DownloadError::TooLong { expected: size });
            }
            if let Err(e) = file.write_all(&data).await {
                break Err(io(e));
            }
            received += data.len() as u64;
        };
        file.flush().await.map_err(io)?;
        file.sync_data().await.map_err(io)?;
        if let Err(DownloadError::TooLong { .. }) = outcome {
            let _ = tokio::fs::remove_file(part).await;
        }
        outcome.map(|()| received)
    }
}

/// How much of the download is already in `part`: 0 when there is none, or when
/// it is longer than the whole (not ours to keep: removed).
async fn bytes_kept(part: &Path, size: u64) -> Result<u64, DownloadError> {
    let io = |error| DownloadError::Io {
        path: part.to_path_buf(),
        error,
    };
    let have = match tokio::fs::metadata(part).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(e)),
    };
    if have > size {
        tokio::fs::remove_file(part).await.map_err(io)?;
        return Ok(0);
    }
    Ok(have)
}

/// Where the response's body starts: at `have` for the range asked for, at 0 for
/// a whole body. A range that was not asked for discards `part`.
async fn resume_point(
    response: &hyper::Response<hyper::body::Incoming>,
    have: u64,
    part: &Path,
) -> Result<u64, DownloadError> {
    let status = response.status().as_u16();
    match status {
        206 if have > 0 && content_range_start(response.headers()) == Some(have) => Ok(have),
        200 => Ok(0),
        206 => {
            // Start over with a plain GET next time.
            let _ = tokio::fs::remove_file(part).await;
            Err(DownloadError::Http(
                "the server answered a range that was not asked for: starting over".into(),
            ))
        }
        403 => Err(DownloadError::Status {
            status,
            hint: ": the presigned URL may have expired (fleet ops refresh the manifest)",
        }),
        _ => Err(DownloadError::Status { status, hint: "" }),
    }
}

/// `Content-Range: bytes <start>-<end>/<size>`'s start.
fn content_range_start(headers: &hyper::HeaderMap) -> Option<u64> {
    let value = headers.get(hyper::header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// A URL for the log, without its query (a presigned URL's query is a credential).
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presigned_query_never_reaches_the_log() {
        assert_eq!(
            redact("https://b.s3.amazonaws.com/p?X-Amz-Signature=abc"),
            "https://b.s3.amazonaws.com/p?…"
        );
        assert_eq!(redact("https://x/y"), "https://x/y");
    }

    #[test]
    fn content_range_gives_the_start() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(hyper::header::CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(content_range_start(&headers), Some(100));
    }
}
