//! Delivery through aws-sdk-iotdataplane `Publish`, on the wire: the real client
//! against the in-process server, which decodes the topic and checks SigV4.

use cloud_bridge::delivery::{Delivery, IotDataDelivery};
use cloud_bridge::testing::AwsStandIn;
use protocol::{Body, Envelope, Response};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_is_published_through_iot_data_signed_and_intact() {
    let aws = AwsStandIn::start().await;
    let delivery = IotDataDelivery::with_client(aws.iot_data_client());
    let envelope = Envelope::new(
        "car-7",
        Some("conv-1"),
        Body::Response(Response {
            in_reply_to: uuid::Uuid::now_v7(),
            text: "Your booking is confirmed.".into(),
            actions: vec![],
            handoff: None,
            more_to_come: false,
            answered_by: Some("local".into()),
        }),
    );
    let topic = protocol::Topics::default().responses("car-7").unwrap();
    let payload = protocol::encode(&envelope).unwrap();
    delivery.publish(&topic, payload.clone()).await.unwrap();

    let seen = aws.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].target, "kestrel/v1/cars/car-7/responses",
        "the topic, percent-decoded"
    );
    assert!(
        seen[0].path.contains("%2F"),
        "the topic travels percent-encoded: {}",
        seen[0].path
    );
    assert_eq!(seen[0].query.get("qos").map(String::as_str), Some("1"));
    assert!(seen[0].signature_ok, "{:?}", aws.violations());
    assert_eq!(seen[0].body.as_ref(), payload.as_slice());
    assert_eq!(protocol::decode(&seen[0].body).unwrap(), envelope);
}
