//! An HTTPS server on loopback that plays S3 for bundle payloads: a test CA, GET
//! with `Range: bytes=N-` (206 and `Content-Range`), a log of every request, and
//! a switch that cuts the next response after a number of body bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes written.
    pub sent: usize,
}

#[derive(Default)]
struct Shared {
    blobs: HashMap<String, Arc<Vec<u8>>>,
    cut_next_after: Option<usize>,
    served: Vec<Served>,
}

pub struct BlobServer {
    pub port: u16,
    ca_pem: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlobServer {
    /// Starts on a free loopback port; call from inside a tokio runtime.
    pub async fn start() -> BlobServer {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "blob server test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
                )
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = serve(tls, state).await;
                    }
                });
            }
        });
        BlobServer {
            port,
            ca_pem: ca.pem(),
            shared,
            task,
        }
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.shared
            .lock()
            .unwrap()
            .blobs
            .insert(path.to_string(), Arc::new(bytes));
    }

    /// The next response stops after `bytes` of its body, and the connection closes.
    pub fn cut_next_after(&self, bytes: usize) {
        self.shared.lock().unwrap().cut_next_after = Some(bytes);
    }

    pub fn served(&self) -> Vec<Served> {
        self.shared.lock().unwrap().served.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Writes the CA (PEM) into `dir`; cars trust it through fleet.ca_file.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("blob-ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    state: Arc<Mutex<Shared>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    let (blob, cut) = {
        let mut s = state.lock().unwrap();
        (s.blobs.get(&path).cloned(), s.cut_next_after.take())
    };
    let record = |status: u16, sent: usize| {
        state.lock().unwrap().served.push(Served {
            path: path.clone(),
            range: range.clone(),
            status,
            sent,
        })
    };
    let Some(blob) = blob else {
        stream
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await?;
        record(404, 0);
        return stream.shutdown().await;
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, body, extra) = match start {
        Some(s) if s < blob.len() => (
            206,
            &blob[s..],
            format!("content-range: bytes {s}-{}/{}\r\n", blob.len() - 1, blob.len()),
        ),
        Some(_) => (416, &blob[..0], format!("content-range: bytes */{}\r\n", blob.len())),
        None => (200, &blob[..], String::new()),
    };
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        _ => "Range Not Satisfiable",
    };
    stream
        .write_all(
            format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\n{extra}accept-ranges: bytes\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    let sent = cut.map_or(body.len(), |c| c.min(body.len()));
    stream.write_all(&body[..sent]).await?;
    stream.flush().await?;
    record(status, sent);
    stream.shutdown().await
}
