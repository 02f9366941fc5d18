//! Signed knowledge bundles for the car's fleet tests and benchmarks, made the
//! way `cloud-bridge knowledge sign` makes them (cloud-bridge itself is not a
//! dependency of the car's crate): the manifest describing a payload, and the
//! notice that carries its signature.

use knowledge::bundle::{sha256_hex, Manifest, Payload, SigningKey, Targets};

/// A manifest on channel `stable` for `payload` (serialised as `bytes`), valid
/// for a day, downloadable at `url`, for the cars `targets` names.
pub fn manifest(version: u64, payload: &Payload, bytes: &[u8], url: &str, targets: Targets) -> Manifest {
    let now = jiff::Timestamp::now();
    Manifest {
        channel: "stable".into(),
        version,
        created_at: now,
        expires_at: now + jiff::SignedDuration::from_hours(24),
        targets,
        article_count: payload.article_count,
        payload: payload.kind(),
        payload_sha256: sha256_hex(bytes),
        payload_size: bytes.len() as u64,
        payload_url: url.into(),
        publisher: "ops@example".into(),
    }
}

/// The notice for `manifest`, signed with `key`, for every car of its channel.
pub fn notice(key: &SigningKey, manifest: &Manifest) -> protocol::KnowledgeManifestNotice {
    let signed = key.sign(manifest);
    protocol::KnowledgeManifestNotice {
        channel: manifest.channel.clone(),
        manifest: signed.manifest,
        signature: signed.signature,
        key_id: signed.key_id,
        rollout: protocol::Rollout::default(),
    }
}
