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
    /// A retained publish: what a car gets on subscribing (a fleet channel's notice).
    async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError>;
    /// The IoT Data client behind it, if it is one (fleet status reads shadows).
    fn iot_data_client(&self) -> Option<aws_sdk_iotdataplane::Client> {
        None
    }
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

    async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
        self.client
            .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, true, payload)
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
        self.send(topic, payload, false).await
    }

    async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> Result<(), DeliveryError> {
        self.send(topic, payload, true).await
    }

    fn iot_data_client(&self) -> Option<aws_sdk_iotdataplane::Client> {
        Some(self.client.clone())
    }
}

impl IotDataDelivery {
    pub fn client(&self) -> &aws_sdk_iotdataplane::Client {
        &self.client
    }

    async fn send(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), DeliveryError> {
        self.client
            .publish()
            .topic(topic)
            .qos(1)
            .retain(retain)
            .content_type("application/json")
            .payload(aws_smithy_types::Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::IotData(aws_sdk_iotdataplane::error::DisplayErrorContext(e).to_string()))
    }
}
