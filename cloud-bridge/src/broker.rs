//! How an instance reaches the broker: the MQTT 5 options its config names, with
//! mutual TLS in production. The service and the fleet publisher both connect so.

use std::time::Duration;

use rumqttc::v5::MqttOptions;

use crate::config::Config;

/// A TLS file the config names cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("mqtt: cannot read the {what} {path}: {error}")]
pub struct CredentialsError {
    what: &'static str,
    path: String,
    error: std::io::Error,
}

/// The MQTT options for a supervisor instance.
pub fn mqtt_options(config: &Config) -> Result<MqttOptions, CredentialsError> {
    let m = &config.mqtt;
    let client_id = if m.client_id.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("cloud-bridge-{}-{}", host.trim(), std::process::id())
    } else {
        m.client_id.clone()
    };
    let mut options = MqttOptions::new(client_id, &m.host, m.port);
    options
        .set_keep_alive(Duration::from_secs(m.keep_alive_seconds))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(3600))
        .set_manual_acks(true)
        .set_receive_maximum(Some(m.receive_maximum))
        .set_max_packet_size(Some(protocol::MAX_PAYLOAD_BYTES as u32 + 1024));
    // Small messages that must not wait for Nagle's algorithm.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    if m.tls {
        let read = |path: &str, what: &'static str| {
            std::fs::read(path).map_err(|error| CredentialsError {
                what,
                path: path.to_string(),
                error,
            })
        };
        options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
            ca: read(&m.ca_file, "CA bundle")?,
            alpn: None,
            client_auth: Some((read(&m.cert_file, "certificate")?, read(&m.key_file, "key")?)),
        }));
    }
    Ok(options)
}
