//! Delivery back to the car: on the service's own MQTT connection, or through the
//! AWS IoT Data `Publish` API (aws-sdk-iotdataplane) when configured.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot encode the response: {0}")]
    Encode(#[from] protocol::ProtocolError),
    #[error("the broker connection is gone: {0}")]
    Mqtt(String),
    #[error("IoT Data Publish failed: {0}")]
    IotData(String),
}

#[async_trait]
pub trait Delivery: Send + Sync {
    /// Publishes `payload` (an encoded envelope) on `topic` at QoS 1.
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError>;
}

/// On the MQTT 5 connection the service reads from.
pub struct MqttDelivery {
    pub client: rumqttc::v5::AsyncClient,
}

#[async_trait]
impl Delivery for MqttDelivery {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
        self.client
            .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| DeliveryError::Mqtt(e.to_string()))
    }
}

/// Through IoT Data's HTTPS `Publish` (`POST /topics/{topic}?qos=1`).
pub struct IotDataDelivery {
    client: aws_sdk_iotdataplane::Client,
}

impl IotDataDelivery {
    /// Region and credentials from the AWS default chain; `endpoint` is the
    /// account's `iot:Data-ATS` endpoint (or a test server).
    pub async fn from_environment(endpoint: &str, region: Option<String>) -> IotDataDelivery {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(endpoint);
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        let shared = loader.load().await;
        IotDataDelivery::with_client(aws_sdk_iotdataplane::Client::new(&shared))
    }

    pub fn with_client(client: aws_sdk_iotdataplane::Client) -> IotDataDelivery {
        IotDataDelivery { client }
    }
}

#[async_trait]
impl Delivery for IotDataDelivery {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
        self.client
            .publish()
            .topic(topic)
            .qos(1)
            .content_type("application/json")
            .payload(aws_smithy_types::Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::IotData(aws_sdk_iotdataplane::error::DisplayErrorContext(e).to_string()))
    }
}
