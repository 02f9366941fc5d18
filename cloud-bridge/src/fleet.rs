//! `cloud-bridge knowledge keygen | build | sign`: fleet ops' side of signed
//! knowledge updates. Keys are made here, a pack is compiled into a bundle (the
//! knowledge base file the cars will swap in), and a bundle is described by a
//! manifest and signed; the result is the notice cars receive on their channel.

use std::io::Write;
use std::path::{Path, PathBuf};

use knowledge::bundle::{sha256_hex, Manifest, PayloadKind, SigningKey, Targets};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Key(#[from] knowledge::bundle::KeyError),
    #[error("{0}")]
    Invalid(String),
    #[error("the bundle {path} is not a compiled knowledge base: {error}")]
    NotABundle { path: PathBuf, error: rusqlite::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FleetError + '_ {
    move |error| FleetError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A new signing key in `dir`: `<id>.key` (the secret, mode 0600) and
/// `<id>.pub`. Returns the id and the public key (base64).
pub fn keygen(dir: &Path) -> Result<(String, String), FleetError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = SigningKey::generate()?;
    let secret = dir.join(format!("{}.key", key.id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .map_err(io(&secret))?;
    writeln!(file, "{}", key.to_base64()).map_err(io(&secret))?;
    let public = dir.join(format!("{}.pub", key.id()));
    std::fs::write(&public, format!("{}\n", key.public_base64())).map_err(io(&public))?;
    Ok((key.id(), key.public_base64()))
}

pub fn read_key(path: &Path) -> Result<SigningKey, FleetError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(SigningKey::from_base64(&text)?)
}

/// What `sign` needs besides the bundle and the key.
#[derive(Debug, Clone)]
pub struct Release {
    pub channel: String,
    pub version: u64,
    pub valid_for: jiff::SignedDuration,
    pub targets: Targets,
    pub payload_url: String,
    pub publisher: String,
    /// For a delta: the version it applies to.
    pub delta_base: Option<u64>,
}

/// Describes `bundle` and signs the description: the notice for the channel.
pub fn sign(
    bundle: &Path,
    key: &SigningKey,
    release: &Release,
) -> Result<protocol::KnowledgeManifestNotice, FleetError> {
    protocol::topics::check_level(&release.channel).map_err(|e| FleetError::Invalid(format!("channel: {e}")))?;
    if !release.payload_url.starts_with("https://") {
        return Err(FleetError::Invalid(format!(
            "the payload URL must be https:// (cars download only over TLS): {}",
            release.payload_url
        )));
    }
    if release.valid_for <= jiff::SignedDuration::ZERO {
        return Err(FleetError::Invalid(
            "the manifest must be valid for a positive time".into(),
        ));
    }
    let payload = std::fs::read(bundle).map_err(io(bundle))?;
    let articles: u64 = rusqlite::Connection::open_with_flags(bundle, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM articles", [], |r| r.get::<_, i64>(0)))
        .map_err(|error| FleetError::NotABundle {
            path: bundle.to_path_buf(),
            error,
        })? as u64;
    let now = jiff::Timestamp::now();
    let manifest = Manifest {
        channel: release.channel.clone(),
        version: release.version,
        created_at: now,
        expires_at: now
            .checked_add(release.valid_for)
            .map_err(|e| FleetError::Invalid(e.to_string()))?,
        targets: release.targets.clone(),
        article_count: articles,
        payload: match release.delta_base {
            Some(base_version) => PayloadKind::Delta { base_version },
            None => PayloadKind::Full,
        },
        payload_sha256: sha256_hex(&payload),
        payload_size: payload.len() as u64,
        payload_url: release.payload_url.clone(),
        publisher: release.publisher.clone(),
    };
    let signed = key.sign(&manifest);
    Ok(protocol::KnowledgeManifestNotice {
        channel: release.channel.clone(),
        manifest: signed.manifest,
        signature: signed.signature,
        key_id: signed.key_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use knowledge::bundle::{check_applicable, check_payload, Car, SignedManifest, TrustedKey, TrustedKeys};

    #[test]
    fn a_key_made_here_signs_a_bundle_a_car_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (id, public) = keygen(dir.path()).unwrap();
        let secret = dir.path().join(format!("{id}.key"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        let key = read_key(&secret).unwrap();

        let bundle = dir.path().join("bundle.sqlite");
        let conn = rusqlite::Connection::open(&bundle).unwrap();
        conn.execute_batch("CREATE TABLE articles (id TEXT); INSERT INTO articles VALUES ('a'), ('b');")
            .unwrap();
        drop(conn);
        let release = Release {
            channel: "stable".into(),
            version: 3,
            valid_for: jiff::SignedDuration::from_hours(24),
            targets: Targets {
                models: vec!["Voyager".into()],
                markets: vec![],
            },
            payload_url: "https://bundles.example/stable/3".into(),
            publisher: "ops@example".into(),
            delta_base: None,
        };
        let notice = sign(&bundle, &key, &release).unwrap();
        let trusted = TrustedKeys(
            [(
                id.clone(),
                TrustedKey {
                    public_key: public,
                    revoked: false,
                },
            )]
            .into(),
        );
        let manifest = trusted
            .verify(&SignedManifest {
                manifest: notice.manifest,
                signature: notice.signature,
                key_id: notice.key_id,
            })
            .unwrap();
        assert_eq!((manifest.version, manifest.article_count), (3, 2));
        let car = Car {
            channel: "stable".into(),
            model: "Voyager".into(),
            market: "UK".into(),
        };
        check_applicable(&manifest, &car, Some(2), None, jiff::Timestamp::now()).unwrap();
        check_payload(&manifest, &std::fs::read(&bundle).unwrap()).unwrap();

        let plain_http = Release {
            payload_url: "http://bundles.example/x".into(),
            ..release
        };
        assert!(sign(&bundle, &key, &plain_http)
            .unwrap_err()
            .to_string()
            .contains("https://"));
        assert!(matches!(
            sign(
                &secret,
                &key,
                &Release {
                    payload_url: "https://x/y".into(),
                    ..plain_http
                }
            ),
            Err(FleetError::NotABundle { .. })
        ));
    }
}
