//! Signed knowledge bundles for the fleet: the manifest that describes a compiled
//! pack, the ed25519 keys that sign it, and every check a car makes before it
//! applies one.
//!
//! The signature covers the manifest's exact bytes (a JSON text as written at
//! signing), never a re-serialised copy, so every field is bound: a car verifies
//! the bytes first and parses them after. A car trusts a set of keys by id, any
//! of which can be revoked, so keys rotate without a new head-unit image.

use std::collections::BTreeMap;

use base64::Engine as _;
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::article::Article;
use crate::pack::PackMeta;

/// What a bundle's payload is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PayloadKind {
    /// A whole compiled knowledge base.
    Full,
    /// The changes against the car's knowledge at `base_version`.
    Delta { base_version: u64 },
}

/// The cars a bundle is for. An empty list means every one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub markets: Vec<String>,
}

/// Describes one bundle. Signed as the exact bytes [`Manifest::to_bytes`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub channel: String,
    /// Monotonic per channel; a car applies only a version above the highest it
    /// ever applied.
    pub version: u64,
    pub created_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
    pub targets: Targets,
    pub article_count: u64,
    pub payload: PayloadKind,
    /// Hex sha256 and byte size of the payload file.
    pub payload_sha256: String,
    pub payload_size: u64,
    /// Where the payload is downloaded from (HTTPS; in production a presigned S3
    /// URL, so the manifest is refreshed and re-signed before it expires).
    pub payload_url: String,
    /// Who published it (an operator or a pipeline).
    pub publisher: String,
}

impl Manifest {
    /// The bytes that are signed and sent.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serialises")
    }
}

/// A car's own identity, for the applicability checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    pub channel: String,
    pub model: String,
    pub market: String,
}

/// Why a bundle was not applied. Each says what was wrong, for the log and for
/// the failure the car reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("signed by unknown key `{0}`")]
    UnknownKey(String),
    #[error("signed by revoked key `{0}`")]
    RevokedKey(String),
    #[error("the signature does not verify: the manifest was altered or signed by another key")]
    BadSignature,
    #[error("the manifest is not readable: {0}")]
    Malformed(String),
    #[error("the bundle is for channel `{got}`, this car follows `{expected}`")]
    WrongChannel { expected: String, got: String },
    #[error("the manifest expired at {0}")]
    Expired(jiff::Timestamp),
    #[error("the bundle is not for this car: {0}")]
    NotForThisCar(String),
    #[error("version {version} is not newer than {high_water}, the highest ever applied")]
    NotNewer { version: u64, high_water: u64 },
    #[error("the delta applies to version {base}, this car has {}", version_text(*.current))]
    WrongBase { base: u64, current: Option<u64> },
    #[error("the payload is {got} bytes, the manifest says {expected}")]
    PayloadSize { expected: u64, got: u64 },
    #[error("the payload's sha256 is {got}, the manifest says {expected}: it was altered or corrupted")]
    PayloadHash { expected: String, got: String },
}

/// An ed25519 key pair for signing bundles (fleet ops side).
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("not a key: {0}")]
    Format(String),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A key's id: the first 16 hex digits of the sha256 of its public key.
pub fn key_id(public: &[u8; 32]) -> String {
    hex(&Sha256::digest(public))[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of a payload.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SigningKey {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
        })
    }

    /// The secret as base64 (the private key file's content).
    pub fn to_base64(&self) -> String {
        b64().encode(self.key.to_bytes())
    }

    pub fn from_base64(text: &str) -> Result<SigningKey, KeyError> {
        let bytes = b64().decode(text.trim()).map_err(|e| KeyError::Format(e.to_string()))?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Format("an ed25519 secret is 32 bytes".into()))?;
        Ok(SigningKey {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
        })
    }

    pub fn public_base64(&self) -> String {
        b64().encode(self.key.verifying_key().to_bytes())
    }

    pub fn id(&self) -> String {
        key_id(&self.key.verifying_key().to_bytes())
    }

    /// Signs `manifest`: its bytes, and the base64 signature over them.
    pub fn sign(&self, manifest: &Manifest) -> SignedManifest {
        let bytes = manifest.to_bytes();
        let signature = self.key.sign(&bytes);
        SignedManifest {
            manifest: String::from_utf8(bytes).expect("JSON is UTF-8"),
            signature: b64().encode(signature.to_bytes()),
            key_id: self.id(),
        }
    }
}

/// What travels to the cars (in `protocol::KnowledgeManifestNotice`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// The exact bytes signed.
    pub manifest: String,
    pub signature: String,
    pub key_id: String,
}

/// One public key a car trusts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// Base64 ed25519 public key.
    pub public_key: String,
    #[serde(default)]
    pub revoked: bool,
}

/// The keys a car trusts, by id (the config's `[fleet.keys]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrustedKeys(pub BTreeMap<String, TrustedKey>);

/// "version 5", or "no fleet version" (for messages, never `Some(5)`).
pub fn version_text(version: Option<u64>) -> String {
    version.map_or_else(|| "no fleet version".to_string(), |v| format!("version {v}"))
}

impl TrustedKeys {
    /// Every key is 32 bytes of base64 and its id names it (what `verify`
    /// would refuse later, found at configuration time).
    pub fn check(&self) -> Result<(), String> {
        for (id, key) in &self.0 {
            let public: [u8; 32] = b64()
                .decode(key.public_key.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("fleet.keys.{id}: public_key is not 32 bytes of base64"))?;
            if key_id(&public) != *id {
                return Err(format!(
                    "fleet.keys.{id}: the id does not name this key (its id is {})",
                    key_id(&public)
                ));
            }
        }
        Ok(())
    }

    /// These keys and `key`'s public half (revoked or not): for tools and tests
    /// that hold the signing key itself.
    pub fn with_key(mut self, key: &SigningKey, revoked: bool) -> TrustedKeys {
        let trusted = TrustedKey {
            public_key: key.public_base64(),
            revoked,
        };
        self.0.insert(key.id(), trusted);
        self
    }

    /// Verifies the signature over the exact bytes, then parses them.
    pub fn verify(&self, signed: &SignedManifest) -> Result<Manifest, Refusal> {
        let trusted = self
            .0
            .get(&signed.key_id)
            .ok_or_else(|| Refusal::UnknownKey(signed.key_id.clone()))?;
        if trusted.revoked {
            return Err(Refusal::RevokedKey(signed.key_id.clone()));
        }
        let public: [u8; 32] = b64()
            .decode(trusted.public_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                Refusal::UnknownKey(format!("{} (its public key is not 32 bytes of base64)", signed.key_id))
            })?;
        if key_id(&public) != signed.key_id {
            // The configured id does not name this key: refuse rather than trust a typo.
            return Err(Refusal::UnknownKey(format!(
                "{} (the id does not match its public key)",
                signed.key_id
            )));
        }
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| Refusal::BadSignature)?;
        let signature: [u8; 64] = b64()
            .decode(signed.signature.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(Refusal::BadSignature)?;
        verifying
            .verify(
                signed.manifest.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .map_err(|_| Refusal::BadSignature)?;
        serde_json::from_str(&signed.manifest).map_err(|e| Refusal::Malformed(e.to_string()))
    }
}

/// The checks after the signature: channel, expiry, targets, and the version
/// against the car's high-water mark (and, for a delta, its current version).
pub fn check_applicable(
    manifest: &Manifest,
    car: &Car,
    high_water: Option<u64>,
    current: Option<u64>,
    now: jiff::Timestamp,
) -> Result<(), Refusal> {
    if manifest.channel != car.channel {
        return Err(Refusal::WrongChannel {
            expected: car.channel.clone(),
            got: manifest.channel.clone(),
        });
    }
    if now >= manifest.expires_at {
        return Err(Refusal::Expired(manifest.expires_at));
    }
    let t = &manifest.targets;
    if !t.models.is_empty() && !t.models.iter().any(|m| m.eq_ignore_ascii_case(&car.model)) {
        return Err(Refusal::NotForThisCar(format!(
            "for models {}, this car is a {}",
            t.models.join(", "),
            car.model
        )));
    }
    if !t.markets.is_empty() && !t.markets.iter().any(|m| m.eq_ignore_ascii_case(&car.market)) {
        return Err(Refusal::NotForThisCar(format!(
            "for markets {}, this car is in {}",
            t.markets.join(", "),
            car.market
        )));
    }
    if let Some(high_water) = high_water {
        if manifest.version <= high_water {
            return Err(Refusal::NotNewer {
                version: manifest.version,
                high_water,
            });
        }
    }
    if let PayloadKind::Delta { base_version } = manifest.payload {
        if current != Some(base_version) {
            return Err(Refusal::WrongBase {
                base: base_version,
                current,
            });
        }
    }
    Ok(())
}

/// The first field of every payload: its format and version.
pub const PAYLOAD_FORMAT: &str = "kestrel-knowledge-bundle/1";

/// What a bundle carries (JSON): the pack's metadata and its articles, whole or as
/// the changes against a base version. Embeddings never travel: each side computes
/// them with its own model, so a bundle fits any encoder a car runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub format: String,
    pub pack: PackMeta,
    /// Articles once applied (for a delta: after the changes).
    pub article_count: u64,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Content {
    Full {
        articles: Vec<Article>,
    },
    Delta {
        base_version: u64,
        /// New and changed articles, whole.
        upsert: Vec<Article>,
        /// Ids of the articles removed.
        delete: Vec<String>,
    },
}

impl Payload {
    /// Everything, sorted by id so that equal content gives equal bytes.
    pub fn full(pack: PackMeta, mut articles: Vec<Article>) -> Payload {
        articles.sort_by(|a, b| a.id.cmp(&b.id));
        Payload {
            format: PAYLOAD_FORMAT.to_string(),
            pack,
            article_count: articles.len() as u64,
            content: Content::Full { articles },
        }
    }

    /// The changes that take `old` (the content of `base_version`) to `new`.
    pub fn delta(pack: PackMeta, base_version: u64, old: &[Article], new: &[Article]) -> Payload {
        let before: BTreeMap<&str, &Article> = old.iter().map(|a| (a.id.as_str(), a)).collect();
        let after: BTreeMap<&str, &Article> = new.iter().map(|a| (a.id.as_str(), a)).collect();
        let upsert = after
            .iter()
            .filter(|(id, a)| before.get(*id) != Some(*a))
            .map(|(_, a)| (*a).clone())
            .collect();
        let delete = before
            .keys()
            .filter(|id| !after.contains_key(*id))
            .map(|id| id.to_string())
            .collect();
        Payload {
            format: PAYLOAD_FORMAT.to_string(),
            pack,
            article_count: after.len() as u64,
            content: Content::Delta {
                base_version,
                upsert,
                delete,
            },
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a payload serialises")
    }

    /// Reads a payload, refusing another format.
    pub fn parse(bytes: &[u8]) -> Result<Payload, Refusal> {
        #[derive(Deserialize)]
        struct Format {
            format: String,
        }
        let format: Format =
            serde_json::from_slice(bytes).map_err(|e| Refusal::Malformed(format!("the payload: {e}")))?;
        if format.format != PAYLOAD_FORMAT {
            return Err(Refusal::Malformed(format!(
                "the payload's format is `{}`, this build reads `{PAYLOAD_FORMAT}`",
                format.format
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| Refusal::Malformed(format!("the payload: {e}")))
    }

    pub fn kind(&self) -> PayloadKind {
        match self.content {
            Content::Full { .. } => PayloadKind::Full,
            Content::Delta { base_version, .. } => PayloadKind::Delta { base_version },
        }
    }

    /// The articles once applied to `current` (the car's articles, for a delta),
    /// sorted by id. Refuses a payload that does not match its manifest, a delta
    /// that does not fit, and duplicate or empty ids.
    pub fn resolve(self, manifest: &Manifest, current: &[Article]) -> Result<(PackMeta, Vec<Article>), Refusal> {
        if self.kind() != manifest.payload {
            return Err(Refusal::Malformed(format!(
                "the manifest describes a {:?} payload, the payload is a {:?}",
                manifest.payload,
                self.kind()
            )));
        }
        let articles = match self.content {
            Content::Full { articles } => articles,
            Content::Delta {
                base_version,
                upsert,
                delete,
            } => {
                let mut by_id: BTreeMap<String, Article> = current.iter().map(|a| (a.id.clone(), a.clone())).collect();
                for id in &delete {
                    if by_id.remove(id).is_none() {
                        return Err(Refusal::Malformed(format!(
                            "the delta on version {base_version} deletes `{id}`, which this car does not have"
                        )));
                    }
                }
                for article in upsert {
                    by_id.insert(article.id.clone(), article);
                }
                by_id.into_values().collect()
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        for a in &articles {
            if a.id.trim().is_empty() || a.summary.trim().is_empty() {
                return Err(Refusal::Malformed(format!(
                    "article `{}` has no id or no summary",
                    a.id
                )));
            }
            if !seen.insert(a.id.as_str()) {
                return Err(Refusal::Malformed(format!("article `{}` appears twice", a.id)));
            }
        }
        if articles.len() as u64 != self.article_count || self.article_count != manifest.article_count {
            return Err(Refusal::Malformed(format!(
                "applying gives {} articles; the payload says {} and the manifest {}",
                articles.len(),
                self.article_count,
                manifest.article_count
            )));
        }
        let mut articles = articles;
        articles.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((self.pack, articles))
    }
}

/// The payload is exactly what the manifest describes.
pub fn check_payload(manifest: &Manifest, payload: &[u8]) -> Result<(), Refusal> {
    if payload.len() as u64 != manifest.payload_size {
        return Err(Refusal::PayloadSize {
            expected: manifest.payload_size,
            got: payload.len() as u64,
        });
    }
    let got = sha256_hex(payload);
    if got != manifest.payload_sha256 {
        return Err(Refusal::PayloadHash {
            expected: manifest.payload_sha256.clone(),
            got,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn manifest(payload: &[u8]) -> Manifest {
        Manifest {
            channel: "stable".into(),
            version: 7,
            created_at: now(),
            expires_at: "2026-11-26T12:00:00Z".parse().unwrap(),
            targets: Targets {
                models: vec!["Voyager".into()],
                markets: vec!["US".into(), "CA".into()],
            },
            article_count: 133,
            payload: PayloadKind::Full,
            payload_sha256: sha256_hex(payload),
            payload_size: payload.len() as u64,
            payload_url: "https://bundles.example/stable/7".into(),
            publisher: "fleet-ops".into(),
        }
    }

    fn car() -> Car {
        Car {
            channel: "stable".into(),
            model: "Voyager".into(),
            market: "US".into(),
        }
    }

    fn trusting(key: &SigningKey) -> TrustedKeys {
        TrustedKeys(
            [(
                key.id(),
                TrustedKey {
                    public_key: key.public_base64(),
                    revoked: false,
                },
            )]
            .into(),
        )
    }

    #[test]
    fn a_signed_manifest_verifies_and_applies_to_its_car() {
        let key = SigningKey::generate().unwrap();
        let payload = b"compiled knowledge".to_vec();
        let signed = key.sign(&manifest(&payload));
        let verified = trusting(&key).verify(&signed).unwrap();
        assert_eq!(verified, manifest(&payload));
        check_applicable(&verified, &car(), Some(6), Some(6), now()).unwrap();
        check_payload(&verified, &payload).unwrap();
        // A key survives its file round trip.
        let again = SigningKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.id(), key.id());
    }

    #[test]
    fn a_bundle_whose_signature_does_not_hold_is_refused() {
        let key = SigningKey::generate().unwrap();
        let trusted = trusting(&key);
        let payload = b"compiled knowledge".to_vec();
        let signed = key.sign(&manifest(&payload));
        // An edited manifest: version, targets or channel.
        for (from, to) in [
            ("\"version\":7", "\"version\":70"),
            ("\"Voyager\"", "\"Roadster\""),
            ("\"channel\":\"stable\"", "\"channel\":\"beta\""),
        ] {
            let mut edited = signed.clone();
            assert!(edited.manifest.contains(from), "{from}");
            edited.manifest = edited.manifest.replace(from, to);
            assert_eq!(trusted.verify(&edited), Err(Refusal::BadSignature), "{from}");
        }
        // An unknown key, and a revoked one.
        let stranger = SigningKey::generate().unwrap();
        assert_eq!(
            trusted.verify(&stranger.sign(&manifest(&payload))),
            Err(Refusal::UnknownKey(stranger.id()))
        );
        let mut revoked = trusted.clone();
        revoked.0.get_mut(&key.id()).unwrap().revoked = true;
        assert_eq!(revoked.verify(&signed), Err(Refusal::RevokedKey(key.id())));
        // A corrupt signature, and a configured id that does not name its key.
        let mut garbled = signed.clone();
        garbled.signature = "not base64!".into();
        assert_eq!(trusted.verify(&garbled), Err(Refusal::BadSignature));
        let mut mislabelled = TrustedKeys::default();
        mislabelled.0.insert(
            key.id(),
            TrustedKey {
                public_key: stranger.public_base64(),
                revoked: false,
            },
        );
        assert!(matches!(mislabelled.verify(&signed), Err(Refusal::UnknownKey(_))));
    }

    #[test]
    fn a_payload_that_is_not_the_signed_one_is_refused() {
        let key = SigningKey::generate().unwrap();
        let payload = b"compiled knowledge".to_vec();
        let verified = trusting(&key).verify(&key.sign(&manifest(&payload))).unwrap();
        let mut tampered = payload.clone();
        tampered[0] ^= 1;
        assert!(matches!(
            check_payload(&verified, &tampered),
            Err(Refusal::PayloadHash { .. })
        ));
        assert!(matches!(
            check_payload(&verified, &payload[1..]),
            Err(Refusal::PayloadSize { .. })
        ));
    }

    #[test]
    fn a_signed_bundle_not_meant_for_this_car_now_is_refused() {
        let key = SigningKey::generate().unwrap();
        let trusted = trusting(&key);
        let payload = b"compiled knowledge".to_vec();
        let verified = trusted.verify(&key.sign(&manifest(&payload))).unwrap();
        let refusal = |car: &Car, high_water: Option<u64>, at: jiff::Timestamp| {
            check_applicable(&verified, car, high_water, None, at).unwrap_err()
        };
        // A valid bundle for another channel.
        let mut beta = manifest(&payload);
        beta.channel = "beta".into();
        let beta = trusted.verify(&key.sign(&beta)).unwrap();
        assert!(matches!(
            check_applicable(&beta, &car(), None, None, now()),
            Err(Refusal::WrongChannel { .. })
        ));
        // An older version replayed, or the same one again.
        for high_water in [7, 9] {
            assert!(matches!(
                refusal(&car(), Some(high_water), now()),
                Refusal::NotNewer { .. }
            ));
        }
        // Another vehicle model, another market.
        for other in [
            Car {
                model: "Roadster".into(),
                ..car()
            },
            Car {
                market: "UK".into(),
                ..car()
            },
        ] {
            assert!(matches!(refusal(&other, None, now()), Refusal::NotForThisCar(_)));
        }
        // Expired.
        let later: jiff::Timestamp = "2026-11-27T00:00:00Z".parse().unwrap();
        assert!(matches!(refusal(&car(), None, later), Refusal::Expired(_)));
        // A delta on the wrong base.
        let mut delta = manifest(&payload);
        delta.payload = PayloadKind::Delta { base_version: 5 };
        assert_eq!(
            check_applicable(&delta, &car(), Some(6), Some(6), now()),
            Err(Refusal::WrongBase {
                base: 5,
                current: Some(6)
            })
        );
    }
}
