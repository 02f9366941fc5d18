//! Configuration: embedded defaults, then a TOML file, then the environment.
//!
//! Every key has a default in `config/default.toml` (compiled in), so the binary
//! runs with no file at all. A file overrides any subset; `EDGE_AGENT__SECTION__KEY`
//! variables override single values. [`Config::validate`] checks what serde cannot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use daemon::config::{config_file, layered, ConfigError};

use crate::vehicle::Units;

pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
/// Read when it exists and no `--config` is given (`$CONFIGURATION_DIRECTORY/config.toml`
/// instead when systemd sets that variable).
pub const SYSTEM_CONFIG: &str = "/etc/edge-agent/config.toml";
const ENV_PREFIX: &str = "EDGE_AGENT__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub assistant: AssistantConfig,
    pub vehicle: VehicleConfig,
    pub knowledge: KnowledgeConfig,
    pub state: StateConfig,
    pub history: HistoryConfig,
    pub markets: BTreeMap<String, MarketConfig>,
    pub api: ApiConfig,
    pub privacy: PrivacyConfig,
    pub outbox: OutboxConfig,
    pub uplink: UplinkConfig,
    pub fleet: FleetConfig,
}

/// Signed knowledge updates from fleet ops (see [`crate::fleet`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The channel followed; empty: no fleet updates.
    pub channel: String,
    /// CA bundle for the payload's HTTPS server; empty: the system's roots.
    pub ca_file: String,
    pub report: FleetReport,
    /// The report also goes up this often (besides on connecting and on changes).
    pub report_interval_seconds: u64,
    pub max_payload_bytes: u64,
    /// A download that receives nothing for this long is cut and resumed later.
    pub idle_timeout_seconds: u64,
    /// Retry delay after a failed download: jittered exponential, up to the most.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// The keys trusted to sign bundles, by id.
    pub keys: knowledge::bundle::TrustedKeys,
}

/// Where the car reports the version it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetReport {
    /// A status message on the car's status topic, recorded by cloud-bridge.
    Status,
    /// The IoT Core named shadow `knowledge` (and the status message).
    Shadow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    pub host: String,
    pub port: u16,
    pub alpn: bool,
    pub tls: bool,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub thing_name: String,
    pub topic_prefix: String,
    pub keep_alive_seconds: u64,
    pub inflight: u16,
    pub publish_per_second: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub min_connect_interval_ms: u64,
    pub ack_timeout_ms: u64,
    pub ack_timeout_max_ms: u64,
    pub ack_window: usize,
    pub answer_timeout_ms: u64,
    pub analytics_interval_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    pub max_queued: usize,
    pub default_ttl_seconds: u64,
    pub ttl_seconds: BTreeMap<String, u64>,
}

impl OutboxConfig {
    pub fn policy(&self) -> crate::store::QueuePolicy {
        crate::store::QueuePolicy {
            max_queued: self.max_queued,
            ttl_seconds: self.ttl_seconds.clone(),
            default_ttl_seconds: self.default_ttl_seconds,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    pub cloud_consent: bool,
    pub redact_phone_numbers: bool,
    pub redact_email_addresses: bool,
    pub redact_payment_cards: bool,
    pub precise_location_intents: Vec<String>,
    pub coarse_decimals: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub socket: String,
    pub socket_group: String,
    pub tcp: String,
    pub max_body_bytes: usize,
    pub rate_per_second: u32,
    pub rate_burst: u32,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub answer_wait_ms: u64,
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantConfig {
    pub name: String,
    pub cloud_name: String,
    pub offer_human_at_or_below: f32,
    /// How long a follow-up ("and the back ones?") is read against the last turn.
    pub follow_up_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VehicleConfig {
    pub signals: String,
    pub model: String,
    pub year: u16,
    pub market: String,
    pub recommended_tire_kpa: f64,
    pub service_interval_months: i32,
    pub service_interval_km: f64,
    pub low_tire_margin_kpa: f64,
    pub low_fuel_percent: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeConfig {
    pub pack: String,
    pub db: String,
    /// The least cosine between a question and an article's closest field for
    /// the article to be spoken on that evidence.
    pub min_score: f32,
    /// The least share of the question's words (weighted by rarity) the article
    /// must hold to be spoken on that evidence. Below both, the car says the
    /// manual does not have it.
    pub min_coverage: f32,
    /// Whether one article that clearly answers a question the gate called out
    /// of scope, or one the articles of its intent lack, answers it after all.
    pub overrule_model: bool,
    /// How far, in fused search score, that article must lead the next one.
    pub overrule_lead: f32,
    /// The closeness that suffices for it; otherwise it must clear both
    /// [`Self::min_score`] and [`Self::min_coverage`].
    pub overrule_closeness: f32,
    /// For a question that names a part of a car but that the gate called out
    /// of scope: how far the closest article must lead the next one to be
    /// spoken (it must also clear [`Self::min_score`] or [`Self::min_coverage`]).
    pub car_part_lead: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    pub retention_days: u32,
    pub max_turns_per_conversation: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    pub emergency_number: String,
    pub units: Units,
}

impl Config {
    /// The embedded defaults alone.
    pub fn embedded() -> Config {
        Config::layered(None, std::iter::empty()).expect("the embedded config is valid")
    }

    /// Defaults, then `file` (or the system file when it exists), then the
    /// process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::layered(config_file(file, SYSTEM_CONFIG).as_deref(), std::env::vars())
    }

    pub fn layered(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let config: Config = layered(DEFAULT_CONFIG, file, env, ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_markets()?;
        self.validate_tuning()?;
        self.validate_fleet()?;
        self.validate_api()?;
        self.validate_uplink()?;
        self.validate_limits()
    }

    /// The vehicle's market exists, and every market's emergency number is digits.
    fn validate_markets(&self) -> Result<(), ConfigError> {
        if !self.markets.contains_key(&self.vehicle.market) {
            return Err(ConfigError::Invalid(format!(
                "vehicle.market `{}` has no [markets.{}] section (known: {})",
                self.vehicle.market,
                self.vehicle.market,
                self.markets.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        for (name, market) in &self.markets {
            let number = market.emergency_number.trim();
            if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
                return Err(ConfigError::Invalid(format!(
                    "markets.{name}.emergency_number `{number}` must be digits, like 112"
                )));
            }
        }
        Ok(())
    }

    /// The dialogue's and retrieval's bars are within their ranges.
    fn validate_tuning(&self) -> Result<(), ConfigError> {
        if !(-1.0..=1.0).contains(&self.assistant.offer_human_at_or_below) {
            return Err(ConfigError::Invalid(
                "assistant.offer_human_at_or_below must be within [-1, 1]".to_string(),
            ));
        }
        if !(0.0..1.0).contains(&self.knowledge.min_score) || !(0.0..=1.01).contains(&self.knowledge.min_coverage) {
            return Err(ConfigError::Invalid(
                "knowledge.min_score must be within [0, 1) and knowledge.min_coverage within [0, 1.01] (above 1 switches it off)"
                    .to_string(),
            ));
        }
        if self.knowledge.overrule_lead < 0.0
            || self.knowledge.car_part_lead < 0.0
            || !(0.0..=1.01).contains(&self.knowledge.overrule_closeness)
        {
            return Err(ConfigError::Invalid(
                "knowledge.overrule_lead and knowledge.car_part_lead must be at least 0, and knowledge.overrule_closeness within [0, 1.01]"
                    .to_string(),
            ));
        }
        if self.vehicle.recommended_tire_kpa <= 0.0 || self.vehicle.service_interval_km <= 0.0 {
            return Err(ConfigError::Invalid(
                "vehicle.recommended_tire_kpa and vehicle.service_interval_km must be positive".to_string(),
            ));
        }
        Ok(())
    }

    /// A followed channel is a topic level, and some key is trusted.
    fn validate_fleet(&self) -> Result<(), ConfigError> {
        if !self.fleet.channel.is_empty() {
            protocol::topics::check_level(&self.fleet.channel)
                .map_err(|e| ConfigError::Invalid(format!("fleet.channel: {e}")))?;
            if self.fleet.keys.0.is_empty() {
                return Err(ConfigError::Invalid(
                    "fleet.channel is set but no key is trusted: add [fleet.keys.<id>] public_key = \"...\" \
                     (from `cloud-bridge knowledge keygen`)"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The API's limits are set, and TCP stays on loopback.
    fn validate_api(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        if [
            api.rate_per_second as u64,
            api.rate_burst as u64,
            api.max_body_bytes as u64,
            api.max_connections as u64,
            api.max_connections_per_client as u64,
            api.header_timeout_ms,
            api.body_timeout_ms,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "api.rate_per_second, rate_burst, max_body_bytes, max_connections, max_connections_per_client, \
                 header_timeout_ms and body_timeout_ms must be at least 1"
                    .to_string(),
            ));
        }
        if !self.api.tcp.is_empty() {
            let addr: std::net::SocketAddr = self
                .api
                .tcp
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("api.tcp `{}` is not an address:port", self.api.tcp)))?;
            if !addr.ip().is_loopback() {
                return Err(ConfigError::Invalid(format!(
                    "api.tcp `{addr}` must be a loopback address: the API has no authentication beyond the socket's permissions"
                )));
            }
        }
        Ok(())
    }

    /// A configured uplink can name its topics and connect.
    fn validate_uplink(&self) -> Result<(), ConfigError> {
        if !self.uplink.host.is_empty() {
            let u = &self.uplink;
            protocol::topics::check_level(&u.thing_name)
                .map_err(|e| ConfigError::Invalid(format!("uplink.thing_name: {e}")))?;
            protocol::Topics::new(&u.topic_prefix)
                .map_err(|e| ConfigError::Invalid(format!("uplink.topic_prefix: {e}")))?;
            if u.tls && (u.ca_file.is_empty() || u.cert_file.is_empty() || u.key_file.is_empty()) {
                return Err(ConfigError::Invalid(
                    "uplink: mutual TLS needs uplink.ca_file, uplink.cert_file and uplink.key_file".to_string(),
                ));
            }
            if !(1..=100).contains(&u.inflight) || u.keep_alive_seconds < 5 || u.backoff_initial_ms == 0 {
                return Err(ConfigError::Invalid(
                    "uplink: inflight must be 1 to 100, keep_alive_seconds at least 5, backoff_initial_ms at least 1"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The outbox, privacy and history limits.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.outbox.max_queued == 0 {
            return Err(ConfigError::Invalid("outbox.max_queued must be at least 1".to_string()));
        }
        if self.privacy.coarse_decimals > 6 {
            return Err(ConfigError::Invalid(
                "privacy.coarse_decimals must be at most 6 (2 is about 1 km)".to_string(),
            ));
        }
        if self.history.max_turns_per_conversation == 0 {
            return Err(ConfigError::Invalid(
                "history.max_turns_per_conversation must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    /// The market's settings; the configured vehicle market when `market` is unknown.
    pub fn market(&self, market: Option<&str>) -> (&str, &MarketConfig) {
        market
            .and_then(|m| self.markets.get_key_value(m))
            .or_else(|| self.markets.get_key_value(&self.vehicle.market))
            .map(|(k, v)| (k.as_str(), v))
            .expect("validate() checked the vehicle market exists")
    }

    /// The API's Unix socket.
    pub fn socket_path(&self) -> PathBuf {
        if !self.api.socket.is_empty() {
            return PathBuf::from(&self.api.socket);
        }
        match std::env::var_os("RUNTIME_DIRECTORY") {
            Some(dir) => PathBuf::from(dir.to_string_lossy().split(':').next().unwrap_or_default()).join("api.sock"),
            None => self.state_dir().join("api.sock"),
        }
    }

    /// Where the compiled knowledge base lives.
    pub fn knowledge_db(&self) -> PathBuf {
        if self.knowledge.db.is_empty() {
            self.state_dir().join("knowledge.sqlite")
        } else {
            PathBuf::from(&self.knowledge.db)
        }
    }

    /// Where the state lives (history, pending escalations, the compiled pack).
    pub fn state_dir(&self) -> PathBuf {
        if !self.state.dir.is_empty() {
            return PathBuf::from(&self.state.dir);
        }
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several, colon-separated; the first is ours.
            let dir = dir.to_string_lossy().split(':').next().unwrap_or_default().to_string();
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(dir).join("edge-agent");
        }
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".local/state/edge-agent"),
            None => PathBuf::from("/var/lib/edge-agent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_are_valid() {
        let config = Config::embedded();
        assert_eq!(config.market(Some("UK")).1.emergency_number, "999");
        assert_eq!(config.market(Some("Atlantis")).0, "US");
    }

    #[test]
    fn a_file_then_the_environment_override_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[vehicle]\nmarket = \"DE\"\nsignals = \"/tmp/a\"\n").unwrap();
        let env = vec![
            ("EDGE_AGENT__VEHICLE__SIGNALS".to_string(), "/run/b.jsonl".to_string()),
            ("EDGE_AGENT__HISTORY__RETENTION_DAYS".to_string(), "7".to_string()),
            ("EDGE_AGENT__API__SOCKET_GROUP".to_string(), "1000".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let config = Config::layered(Some(&file), env.into_iter()).unwrap();
        assert_eq!(config.vehicle.market, "DE");
        assert_eq!(config.vehicle.signals, "/run/b.jsonl");
        assert_eq!(config.history.retention_days, 7);
        assert_eq!(
            config.api.socket_group, "1000",
            "a number where a string is due stays a string"
        );
        assert_eq!(config.vehicle.year, 2025, "untouched keys keep their defaults");
    }

    #[test]
    fn invalid_settings_are_refused_with_the_key_named() {
        let bad = |env: &[(&str, &str)]| {
            Config::layered(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .unwrap_err()
                .to_string()
        };
        assert!(bad(&[("EDGE_AGENT__VEHICLE__MARKET", "XX")]).contains("vehicle.market `XX`"));
        assert!(bad(&[("EDGE_AGENT__MARKETS__UK__EMERGENCY_NUMBER", "nine")]).contains("markets.UK.emergency_number"));
        assert!(bad(&[("EDGE_AGENT__VEHICLE__TYPO", "1")]).contains("typo"));
    }
}
