//! `cloud-bridge knowledge keygen | build | sign | publish | pause | rollback |
//! status`: fleet ops' side of signed knowledge updates.
//!
//! Keys are made here; a pack becomes a bundle payload (its articles, whole or
//! as a delta against an earlier payload); a payload is described by a manifest
//! and signed, which gives the notice cars receive. `publish` puts the notice,
//! with its rollout stage (a cohort of cars, a share of the fleet, or paused),
//! retained on the channel's topic, over MQTT or IoT Data. Every step that
//! changes what cars get is written to the audit log with who did it. `status`
//! shows where each car stands, from the reports cars send (status messages,
//! recorded by `serve`; or their IoT named shadows, read with GetThingShadow).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use knowledge::bundle::{sha256_hex, Manifest, Payload, PayloadKind, SigningKey, Targets};

use crate::config::{Config, DeliveryMode};
use crate::delivery::Delivery;
use crate::store::{AuditEntry, CarKnowledge, Release as PublishedRelease, Stores};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Key(#[from] knowledge::bundle::KeyError),
    #[error("{0}")]
    Invalid(String),
    #[error("{}: not a bundle payload: {refusal}", path.display())]
    NotABundle {
        path: PathBuf,
        refusal: knowledge::bundle::Refusal,
    },
    #[error(transparent)]
    Knowledge(#[from] knowledge::KnowledgeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("publishing: {0}")]
    Publish(String),
    #[error("reading the cars' shadows: {0}")]
    Shadow(String),
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

/// Builds a bundle payload from a pack folder: the whole pack, or with
/// `delta_from` (an earlier full payload and the version it was published as)
/// only the changes.
pub fn build(
    pack: &Path,
    known_intents: &[&str],
    out: &Path,
    delta_from: Option<(&Path, u64)>,
) -> Result<Payload, FleetError> {
    let (manifest, articles) = knowledge::pack::load(pack, known_intents)?;
    let meta = knowledge::pack::PackMeta::from(&manifest);
    let payload = match delta_from {
        None => Payload::full(meta, articles),
        Some((old, base_version)) => {
            let bytes = std::fs::read(old).map_err(io(old))?;
            let old_payload = Payload::parse(&bytes).map_err(|refusal| FleetError::NotABundle {
                path: old.to_path_buf(),
                refusal,
            })?;
            let knowledge::bundle::Content::Full { articles: old_articles } = old_payload.content else {
                return Err(FleetError::Invalid(format!(
                    "{}: a delta is made against a full payload",
                    old.display()
                )));
            };
            Payload::delta(meta, base_version, &old_articles, &articles)
        }
    };
    std::fs::write(out, payload.to_bytes()).map_err(io(out))?;
    Ok(payload)
}

/// What `sign` needs besides the payload and the key.
#[derive(Debug, Clone)]
pub struct Release {
    pub channel: String,
    pub version: u64,
    pub valid_for: jiff::SignedDuration,
    pub targets: Targets,
    pub payload_url: String,
    pub publisher: String,
}

/// Describes the payload at `bundle` and signs the description: the notice for
/// the channel (every car, until `publish` stages it).
pub fn sign(
    bundle: &Path,
    key: &SigningKey,
    release: &Release,
) -> Result<protocol::KnowledgeManifestNotice, FleetError> {
    let bytes = std::fs::read(bundle).map_err(io(bundle))?;
    let payload = Payload::parse(&bytes).map_err(|refusal| FleetError::NotABundle {
        path: bundle.to_path_buf(),
        refusal,
    })?;
    let manifest = describe(release, payload.kind(), payload.article_count, &bytes)?;
    Ok(notice(key, &manifest))
}

fn describe(release: &Release, kind: PayloadKind, article_count: u64, payload: &[u8]) -> Result<Manifest, FleetError> {
    describe_hashed(release, kind, article_count, sha256_hex(payload), payload.len() as u64)
}

fn describe_hashed(
    release: &Release,
    kind: PayloadKind,
    article_count: u64,
    payload_sha256: String,
    payload_size: u64,
) -> Result<Manifest, FleetError> {
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
    let now = jiff::Timestamp::now();
    Ok(Manifest {
        channel: release.channel.clone(),
        version: release.version,
        created_at: now,
        expires_at: now
            .checked_add(release.valid_for)
            .map_err(|e| FleetError::Invalid(e.to_string()))?,
        targets: release.targets.clone(),
        article_count,
        payload: kind,
        payload_sha256,
        payload_size,
        payload_url: release.payload_url.clone(),
        publisher: release.publisher.clone(),
    })
}

fn notice(key: &SigningKey, manifest: &Manifest) -> protocol::KnowledgeManifestNotice {
    let signed = key.sign(manifest);
    protocol::KnowledgeManifestNotice {
        channel: manifest.channel.clone(),
        manifest: signed.manifest,
        signature: signed.signature,
        key_id: signed.key_id,
        rollout: protocol::Rollout::default(),
    }
}

/// Reads the manifest inside a notice (its signature is the cars' to check; the
/// channel must agree with the notice's).
pub fn manifest_of(notice: &protocol::KnowledgeManifestNotice) -> Result<Manifest, FleetError> {
    let manifest: Manifest = serde_json::from_str(&notice.manifest)
        .map_err(|e| FleetError::Invalid(format!("the notice's manifest: {e}")))?;
    if manifest.channel != notice.channel {
        return Err(FleetError::Invalid(format!(
            "the notice is for channel `{}` but its manifest for `{}`",
            notice.channel, manifest.channel
        )));
    }
    Ok(manifest)
}

/// Fleet operations on one store, publishing through `transport`.
pub struct FleetOps<'a> {
    pub stores: &'a Stores,
    pub topics: protocol::Topics,
    pub transport: &'a dyn Delivery,
    /// Who is acting, for the audit log.
    pub actor: String,
}

impl FleetOps<'_> {
    /// Publishes a notice retained on its channel, staged by `rollout`.
    pub async fn publish(
        &self,
        mut notice: protocol::KnowledgeManifestNotice,
        rollout: protocol::Rollout,
        action: &str,
    ) -> Result<Manifest, FleetError> {
        let manifest = manifest_of(&notice)?;
        if rollout.percent > 100 {
            return Err(FleetError::Invalid("a rollout is 0 to 100 percent".into()));
        }
        if let Some(latest) = self.stores.fleet.latest_release(&notice.channel)? {
            if latest.version > manifest.version {
                return Err(FleetError::Invalid(format!(
                    "{} is already at version {}; cars refuse older versions (use `rollback`, which publishes \
                     the older content as a new version)",
                    notice.channel, latest.version
                )));
            }
        }
        notice.rollout = rollout;
        let topic = self
            .topics
            .fleet_knowledge(&notice.channel)
            .map_err(|e| FleetError::Invalid(e.to_string()))?;
        let envelope = protocol::Envelope::new("cloud-bridge", None, protocol::Body::KnowledgeManifest(notice.clone()));
        let bytes = protocol::encode(&envelope).map_err(|e| FleetError::Invalid(e.to_string()))?;
        self.stores.fleet.put_release(&PublishedRelease {
            channel: notice.channel.clone(),
            version: manifest.version,
            notice: notice.clone(),
            published_at: jiff::Timestamp::now(),
            published_by: self.actor.clone(),
        })?;
        self.transport
            .publish_retained(&topic, bytes)
            .await
            .map_err(|e| FleetError::Publish(e.to_string()))?;
        let r = &notice.rollout;
        self.stores.fleet.audit(&AuditEntry {
            at: jiff::Timestamp::now(),
            actor: self.actor.clone(),
            action: action.to_string(),
            channel: notice.channel.clone(),
            version: Some(manifest.version),
            detail: format!(
                "{}% of the fleet{}{}; payload {} ({} bytes, {} articles, {:?}); signed by key {}, publisher {}",
                r.percent,
                if r.cars.is_empty() {
                    String::new()
                } else {
                    format!(" plus {}", r.cars.join(", "))
                },
                if r.paused { "; paused" } else { "" },
                &manifest.payload_sha256[..16.min(manifest.payload_sha256.len())],
                manifest.payload_size,
                manifest.article_count,
                manifest.payload,
                notice.key_id,
                manifest.publisher
            ),
        })?;
        Ok(manifest)
    }

    /// Re-publishes the channel's newest release with a new stage (widen, or resume).
    pub async fn restage(
        &self,
        channel: &str,
        rollout: protocol::Rollout,
        action: &str,
    ) -> Result<Manifest, FleetError> {
        let latest = self
            .stores
            .fleet
            .latest_release(channel)?
            .ok_or_else(|| FleetError::Invalid(format!("nothing was ever published on `{channel}`")))?;
        self.publish(latest.notice, rollout, action).await
    }

    /// Stops the channel's rollout: no car that has not applied it starts now.
    pub async fn pause(&self, channel: &str) -> Result<Manifest, FleetError> {
        let latest = self
            .stores
            .fleet
            .latest_release(channel)?
            .ok_or_else(|| FleetError::Invalid(format!("nothing was ever published on `{channel}`")))?;
        let rollout = protocol::Rollout {
            paused: true,
            ..latest.notice.rollout.clone()
        };
        self.publish(latest.notice, rollout, "pause").await
    }

    /// Publishes the content of an earlier full release as a new, higher version
    /// (so cars' anti-rollback still holds), signed with `key`, to every car.
    pub async fn rollback(
        &self,
        channel: &str,
        to: u64,
        key: &SigningKey,
        valid_for: jiff::SignedDuration,
        payload_url: Option<String>,
    ) -> Result<Manifest, FleetError> {
        let old = self
            .stores
            .fleet
            .release(channel, to)?
            .ok_or_else(|| FleetError::Invalid(format!("{channel} version {to} was never published")))?;
        let old_manifest = manifest_of(&old.notice)?;
        if old_manifest.payload != PayloadKind::Full {
            return Err(FleetError::Invalid(format!(
                "{channel} version {to} is a delta; roll back to a full release"
            )));
        }
        let latest = self.stores.fleet.latest_release(channel)?.map_or(to, |r| r.version);
        let release = Release {
            channel: channel.to_string(),
            version: latest + 1,
            valid_for,
            targets: old_manifest.targets.clone(),
            payload_url: payload_url.unwrap_or(old_manifest.payload_url.clone()),
            publisher: self.actor.clone(),
        };
        let manifest = describe_hashed(
            &release,
            PayloadKind::Full,
            old_manifest.article_count,
            old_manifest.payload_sha256.clone(),
            old_manifest.payload_size,
        )?;
        let published = self
            .publish(
                notice(key, &manifest),
                protocol::Rollout::default(),
                &format!("rollback to the content of {to}"),
            )
            .await?;
        Ok(published)
    }
}

/// Where the channel's rollout stands and where each car is.
pub fn status(stores: &Stores, channel: &str) -> Result<FleetStatus, FleetError> {
    Ok(FleetStatus {
        channel: channel.to_string(),
        latest: stores
            .fleet
            .latest_release(channel)?
            .map(|r| (r.version, r.notice.rollout)),
        cars: stores.fleet.cars()?,
        audit: stores.fleet.audit_log(10)?,
    })
}

/// What `status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    pub channel: String,
    /// The newest release and its rollout stage.
    pub latest: Option<(u64, protocol::Rollout)>,
    pub cars: Vec<CarKnowledge>,
    /// Newest first.
    pub audit: Vec<AuditEntry>,
}

impl std::fmt::Display for FleetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.latest {
            None => writeln!(f, "channel {}: nothing published", self.channel)?,
            Some((version, r)) => writeln!(
                f,
                "channel {}: version {version}, {}% of the fleet{}{}",
                self.channel,
                r.percent,
                if r.cars.is_empty() {
                    String::new()
                } else {
                    format!(" plus {}", r.cars.join(", "))
                },
                if r.paused { ", PAUSED" } else { "" }
            )?,
        }
        let mut table = daemon::table::new(&["car", "version", "applied at", "last failure"], &[1]);
        for car in &self.cars {
            let failure = match (&car.failure, car.failure_version, car.failure_at) {
                (Some(reason), version, at) => format!(
                    "{} (version {}): {reason}",
                    at.map(|t| t.to_string()).unwrap_or_default(),
                    version.map_or("?".into(), |v| v.to_string())
                ),
                _ => "-".to_string(),
            };
            table.add_row(vec![
                car.thing.clone(),
                car.version.map_or("shipped".into(), |v| v.to_string()),
                car.applied_at.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                failure,
            ]);
        }
        writeln!(f, "{table}")?;
        if !self.audit.is_empty() {
            writeln!(f, "audit (newest first):")?;
            for e in &self.audit {
                writeln!(
                    f,
                    "  {} {} {} {} v{}: {}",
                    e.at,
                    e.actor,
                    e.action,
                    e.channel,
                    e.version.map_or("-".into(), |v| v.to_string()),
                    e.detail
                )?;
            }
        }
        Ok(())
    }
}

/// A car's report as the store keeps it, from its status message.
pub fn car_from_status(thing: &str, status: &protocol::Status, at: jiff::Timestamp) -> CarKnowledge {
    CarKnowledge {
        thing: thing.to_string(),
        version: status.knowledge_version,
        applied_at: status.knowledge_applied_at,
        failure: status.knowledge_failure.clone(),
        failure_version: status.knowledge_failure_version,
        failure_at: status.knowledge_failure_at,
        reported_at: at,
    }
}

/// A car's report from its named shadow `knowledge` (GetThingShadow's document:
/// `{"state": {"reported": {...}}, "timestamp": <epoch seconds>}`). None when the
/// car has no such shadow yet.
pub async fn car_from_shadow(
    client: &aws_sdk_iotdataplane::Client,
    thing: &str,
) -> Result<Option<CarKnowledge>, FleetError> {
    let result = client
        .get_thing_shadow()
        .thing_name(thing)
        .shadow_name(protocol::topics::KNOWLEDGE_SHADOW)
        .send()
        .await;
    let output = match result {
        Ok(output) => output,
        Err(error) => {
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
            {
                return Ok(None);
            }
            return Err(FleetError::Shadow(format!(
                "{thing}: {}",
                aws_sdk_iotdataplane::error::DisplayErrorContext(error)
            )));
        }
    };
    let document: serde_json::Value = output
        .payload()
        .map(|b| serde_json::from_slice(b.as_ref()))
        .transpose()
        .map_err(|e| FleetError::Shadow(format!("{thing}: the shadow is not JSON: {e}")))?
        .unwrap_or_default();
    let reported = &document["state"]["reported"];
    let ts = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    Ok(Some(CarKnowledge {
        thing: thing.to_string(),
        version: reported["version"].as_u64(),
        applied_at: ts(&reported["applied_at"]),
        failure: reported["failure"].as_str().map(str::to_string),
        failure_version: reported["failure_version"].as_u64(),
        failure_at: ts(&reported["failure_at"]),
        reported_at: document["timestamp"]
            .as_i64()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .unwrap_or_else(jiff::Timestamp::now),
    }))
}

/// The transport `publish` uses: the service's MQTT connection settings (one
/// short connection that waits for the PUBACK), or IoT Data.
pub async fn transport(config: &Config) -> Result<Box<dyn Delivery>, FleetError> {
    Ok(match config.delivery.mode {
        DeliveryMode::IotData => Box::new(
            crate::delivery::IotDataDelivery::from_environment(
                &config.delivery.iot_data_endpoint,
                Some(config.delivery.region.clone()).filter(|r| !r.is_empty()),
            )
            .await,
        ),
        DeliveryMode::Mqtt => {
            let mut options = crate::broker::mqtt_options(config).map_err(|e| FleetError::Publish(e.to_string()))?;
            let id = format!("{}-fleet-{}", options.client_id(), std::process::id());
            options.set_client_id(id);
            Box::new(OneShotMqtt { options })
        }
    })
}

/// One MQTT connection per publish, closed once the broker has acknowledged it.
struct OneShotMqtt {
    options: rumqttc::v5::MqttOptions,
}

#[async_trait::async_trait]
impl Delivery for OneShotMqtt {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), crate::delivery::DeliveryError> {
        self.send(topic, payload, false).await
    }

    async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> Result<(), crate::delivery::DeliveryError> {
        self.send(topic, payload, true).await
    }
}

impl OneShotMqtt {
    async fn send(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), crate::delivery::DeliveryError> {
        use rumqttc::v5::{mqttbytes::v5::Packet, Event};
        let failed = |e: String| crate::delivery::DeliveryError::Mqtt(e);
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(self.options.clone(), 4);
        client
            .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let acked = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(failed(e.to_string())),
                }
            }
        })
        .await
        .map_err(|_| failed("no PUBACK within 15 s".into()))?;
        acked?;
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knowledge::bundle::{check_applicable, check_payload, Car, SignedManifest, TrustedKey, TrustedKeys};

    fn write_pack(dir: &Path, summary: &str) {
        std::fs::create_dir_all(dir.join("articles")).unwrap();
        std::fs::write(dir.join("pack.toml"), "name = \"p\"\ntitle = \"P\"\nversion = 1\n").unwrap();
        std::fs::write(
            dir.join("articles/a.toml"),
            format!(
                "[[article]]\nid = \"a\"\ntitle = \"A\"\nintents = [\"fuel_level\"]\nsummary = \"{summary}\"\nbody = \"b\"\n\n\
                 [[article]]\nid = \"b\"\ntitle = \"B\"\nintents = [\"fuel_level\"]\nsummary = \"Two.\"\nbody = \"b\"\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn a_key_made_here_signs_a_bundle_a_car_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (id, public) = keygen(dir.path()).unwrap();
        let secret = dir.path().join(format!("{id}.key"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        let key = read_key(&secret).unwrap();

        write_pack(&dir.path().join("v1"), "One.");
        let full = dir.path().join("v1.json");
        let payload = build(&dir.path().join("v1"), &["fuel_level"], &full, None).unwrap();
        assert_eq!(payload.article_count, 2);
        write_pack(&dir.path().join("v2"), "One, changed.");
        let delta = dir.path().join("v2-delta.json");
        let payload = build(&dir.path().join("v2"), &["fuel_level"], &delta, Some((&full, 3))).unwrap();
        assert_eq!(payload.kind(), PayloadKind::Delta { base_version: 3 });

        let release = Release {
            channel: "stable".into(),
            version: 4,
            valid_for: jiff::SignedDuration::from_hours(24),
            targets: Targets {
                models: vec!["Voyager".into()],
                markets: vec![],
            },
            payload_url: "https://bundles.example/stable/4".into(),
            publisher: "ops@example".into(),
        };
        let notice = sign(&delta, &key, &release).unwrap();
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
        assert_eq!((manifest.version, manifest.article_count), (4, 2));
        assert_eq!(manifest.payload, PayloadKind::Delta { base_version: 3 });
        let car = Car {
            channel: "stable".into(),
            model: "Voyager".into(),
            market: "UK".into(),
        };
        check_applicable(&manifest, &car, Some(3), Some(3), jiff::Timestamp::now()).unwrap();
        check_payload(&manifest, &std::fs::read(&delta).unwrap()).unwrap();

        let plain_http = Release {
            payload_url: "http://bundles.example/x".into(),
            ..release
        };
        assert!(sign(&delta, &key, &plain_http)
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
