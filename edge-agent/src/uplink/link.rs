//! The MQTT link seam: what one connection reports ([`LinkEvent`]), the traits the
//! uplink drives ([`MqttLink`], [`Connector`]), and rumqttc behind them,
//! configured for AWS IoT Core (a fresh client and event loop per connection).

use std::future::Future;
use std::time::Duration;

use super::UplinkError;
use crate::config::UplinkConfig;

/// What the link reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    Connected {
        session_present: bool,
    },
    /// A publish left with this packet id (in the order publishes were made).
    Sent {
        pkid: u16,
    },
    /// The broker acknowledged a publish.
    Acked {
        pkid: u16,
    },
    /// The broker answered a subscription: `granted` is false when it refused
    /// any of its filters.
    Subscribed {
        granted: bool,
    },
    Received {
        topic: String,
        payload: Vec<u8>,
    },
    Other,
}

/// One MQTT connection: the seam tests can drive.
pub trait MqttLink: Send {
    /// Queues a QoS 1 publish without waiting.
    fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), UplinkError>;
    fn subscribe(&mut self, topic: &str) -> Result<(), UplinkError>;
    /// Drives the connection to its next event; an error ends the connection.
    fn next(&mut self) -> impl Future<Output = Result<LinkEvent, UplinkError>> + Send;
}

/// Makes a fresh connection for each attempt.
pub trait Connector: Send {
    type Link: MqttLink;
    fn connect(&mut self) -> Self::Link;
}

/// rumqttc, configured for AWS IoT Core.
pub struct RumqttcConnector {
    options: rumqttc::MqttOptions,
}

impl RumqttcConnector {
    pub fn new(config: &UplinkConfig) -> Result<RumqttcConnector, UplinkError> {
        let mut options = rumqttc::MqttOptions::new(&config.thing_name, &config.host, config.port);
        options
            .set_keep_alive(Duration::from_secs(config.keep_alive_seconds))
            .set_clean_session(false)
            // Room for the largest publish IoT Core takes, plus MQTT framing.
            .set_max_packet_size(protocol::MAX_PAYLOAD_BYTES + 1024, protocol::MAX_PAYLOAD_BYTES + 1024)
            .set_inflight(config.inflight)
            .set_request_channel_capacity(usize::from(config.inflight) * 2 + 8);
        if config.tls {
            let read = |path: &str, what: &str| {
                std::fs::read(path).map_err(|e| UplinkError::Config(format!("cannot read the {what} {path}: {e}")))
            };
            let ca = read(&config.ca_file, "CA bundle")?;
            let cert = read(&config.cert_file, "device certificate")?;
            let key = read(&config.key_file, "device key")?;
            let alpn = config.alpn.then(|| vec![b"x-amzn-mqtt-ca".to_vec()]);
            options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca,
                alpn,
                client_auth: Some((cert, key)),
            }));
        }
        Ok(RumqttcConnector { options })
    }
}

pub struct RumqttcLink {
    client: rumqttc::AsyncClient,
    eventloop: rumqttc::EventLoop,
}

impl Connector for RumqttcConnector {
    type Link = RumqttcLink;

    fn connect(&mut self) -> RumqttcLink {
        let capacity = usize::from(self.options.inflight()) * 2 + 8;
        let (client, mut eventloop) = rumqttc::AsyncClient::new(self.options.clone(), capacity);
        // Small messages that must not wait for Nagle's algorithm.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        RumqttcLink { client, eventloop }
    }
}

impl MqttLink for RumqttcLink {
    fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), UplinkError> {
        self.client
            .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .map_err(|e| UplinkError::Request(e.to_string()))
    }

    fn subscribe(&mut self, topic: &str) -> Result<(), UplinkError> {
        self.client
            .try_subscribe(topic, rumqttc::QoS::AtLeastOnce)
            .map_err(|e| UplinkError::Request(e.to_string()))
    }

    async fn next(&mut self) -> Result<LinkEvent, UplinkError> {
        use rumqttc::{Event, Incoming, Outgoing};
        let event = self
            .eventloop
            .poll()
            .await
            .map_err(|e| UplinkError::Connection(e.to_string()))?;
        Ok(match event {
            Event::Incoming(Incoming::ConnAck(ack)) => LinkEvent::Connected {
                session_present: ack.session_present,
            },
            Event::Incoming(Incoming::PubAck(ack)) => LinkEvent::Acked { pkid: ack.pkid },
            Event::Incoming(Incoming::SubAck(ack)) => LinkEvent::Subscribed {
                granted: ack
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, rumqttc::SubscribeReasonCode::Success(_))),
            },
            Event::Incoming(Incoming::Publish(p)) => LinkEvent::Received {
                topic: p.topic,
                payload: p.payload.to_vec(),
            },
            Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent { pkid },
            _ => LinkEvent::Other,
        })
    }
}
