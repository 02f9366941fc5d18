//! cloud-bridge's configuration: embedded defaults, then a file, then
//! `CLOUD_BRIDGE__SECTION__KEY` variables (layered as edge-agent's are), checked
//! once at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "CLOUD_BRIDGE__";
const SYSTEM_CONFIG: &str = "/etc/cloud-bridge/config.toml";

pub use daemon::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub delivery: DeliveryConfig,
    pub llm: LlmConfig,
    pub store: StoreConfig,
    pub knowledge: KnowledgeConfig,
    pub http: HttpConfig,
    pub handoff: HandoffConfig,
    pub defaults: DefaultsConfig,
    pub emergency_numbers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub client_id: String,
    pub topic_prefix: String,
    pub share_group: String,
    pub keep_alive_seconds: u64,
    pub receive_maximum: u16,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    Mqtt,
    IotData,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub mode: DeliveryMode,
    pub iot_data_endpoint: String,
    pub region: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Local,
    Bedrock,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    pub model_id: String,
    pub region: String,
    pub endpoint_url: String,
    pub guardrail_id: String,
    pub guardrail_version: String,
    pub max_tokens: i32,
    pub temperature: f32,
    pub deadline_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub max_tool_rounds: usize,
    pub recheck_below_confidence: f32,
    pub input_price_per_1k: f64,
    pub output_price_per_1k: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub path: String,
    pub lease_ms: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeConfig {
    pub pack: String,
    pub articles_per_answer: usize,
    pub min_score: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffConfig {
    pub mean_handle_minutes: f64,
    pub agents_on_shift: u32,
    pub status_interval_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsConfig {
    pub time_zone: String,
    pub dealer: String,
}

impl Config {
    /// Defaults, then `file` (or the system file when it exists), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let file = daemon::config::config_file(file, SYSTEM_CONFIG);
        Config::layered(file.as_deref(), std::env::vars())
    }

    pub fn layered(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let config: Config = daemon::config::layered(DEFAULT_CONFIG, file, env, ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        protocol::Topics::new(&self.mqtt.topic_prefix)
            .map_err(|e| ConfigError::Invalid(format!("mqtt.topic_prefix: {e}")))?;
        protocol::topics::check_level(&self.mqtt.share_group)
            .map_err(|e| ConfigError::Invalid(format!("mqtt.share_group: {e}")))?;
        if self.mqtt.tls
            && (self.mqtt.ca_file.is_empty() || self.mqtt.cert_file.is_empty() || self.mqtt.key_file.is_empty())
        {
            return invalid("mqtt: mutual TLS needs mqtt.ca_file, mqtt.cert_file and mqtt.key_file".into());
        }
        if self.mqtt.receive_maximum == 0 {
            return invalid("mqtt.receive_maximum must be at least 1".into());
        }
        if self.delivery.mode == DeliveryMode::IotData && self.delivery.iot_data_endpoint.is_empty() {
            return invalid(
                "delivery.mode = \"iot_data\" needs delivery.iot_data_endpoint (your account's iot:Data-ATS endpoint)"
                    .into(),
            );
        }
        if self.llm.deadline_ms == 0 || self.llm.max_tokens <= 0 {
            return invalid("llm.deadline_ms and llm.max_tokens must be positive".into());
        }
        if jiff::tz::TimeZone::get(&self.defaults.time_zone).is_err() {
            return invalid(format!(
                "defaults.time_zone `{}` is not an IANA zone",
                self.defaults.time_zone
            ));
        }
        if self.handoff.agents_on_shift == 0 {
            return invalid("handoff.agents_on_shift must be at least 1".into());
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid(format!("http.listen `{}` is not an address:port", self.http.listen));
        }
        Ok(())
    }

    pub fn store_path(&self) -> PathBuf {
        if !self.store.path.is_empty() {
            return PathBuf::from(&self.store.path);
        }
        match std::env::var_os("STATE_DIRECTORY") {
            Some(dir) => {
                PathBuf::from(dir.to_string_lossy().split(':').next().unwrap_or_default()).join("cloud-bridge.sqlite")
            }
            None => PathBuf::from("cloud-bridge-state").join("cloud-bridge.sqlite"),
        }
    }

    pub fn emergency_number(&self, market: &str) -> &str {
        self.emergency_numbers
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(market))
            .map(|(_, number)| number.as_str())
            .unwrap_or("112")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_the_environment_overrides_them() {
        let config = Config::layered(
            None,
            [
                ("CLOUD_BRIDGE__LLM__PROVIDER".to_string(), "bedrock".to_string()),
                ("CLOUD_BRIDGE__MQTT__PORT".to_string(), "8883".to_string()),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(config.llm.provider, ProviderKind::Bedrock);
        assert_eq!(config.mqtt.port, 8883);
        assert_eq!(config.emergency_number("uk"), "999");
        assert_eq!(config.emergency_number("US"), "911");
        assert_eq!(config.emergency_number("ZZ"), "112");
        let bad = Config::layered(
            None,
            [("CLOUD_BRIDGE__DELIVERY__MODE".to_string(), "iot_data".to_string())].into_iter(),
        );
        assert!(bad.unwrap_err().to_string().contains("iot_data_endpoint"));
    }
}
