//! Fleet ops through IoT Data, on the wire: `publish` puts the notice retained on
//! the channel's topic with the real iotdataplane client, `rollback` publishes the
//! older content as a higher version (which a car accepts past its high-water
//! mark), every step lands in the audit log, and `status` reads each car's named
//! shadow `knowledge` with GetThingShadow from an in-test server speaking the
//! shadow REST API.

use cloud_bridge::delivery::IotDataDelivery;
use cloud_bridge::fleet::{self, FleetOps, Release};
use cloud_bridge::testing::AwsStandIn;
use edge_agent::fleet::{Failure, KnowledgeReport};
use knowledge::bundle::{Car, Payload, PayloadKind, SignedManifest, SigningKey, Targets, TrustedKeys};

fn signed(key: &SigningKey, dir: &std::path::Path, version: u64, summary: &str) -> protocol::KnowledgeManifestNotice {
    let article: knowledge::Article = serde_json::from_value(serde_json::json!({
        "id": "a", "title": "A", "summary": summary, "body": "b", "intents": ["fuel_level"],
        "aliases": [], "keywords": [], "applies": {"models": [], "years": null, "trims": [], "markets": []},
        "locale": "en", "version": version, "source": "a.toml:1"
    }))
    .unwrap();
    let meta = knowledge::pack::PackMeta {
        name: "p".into(),
        title: "P".into(),
        version,
        locale: "en".into(),
    };
    let path = dir.join(format!("v{version}.json"));
    std::fs::write(&path, Payload::full(meta, vec![article]).to_bytes()).unwrap();
    let release = Release {
        channel: "stable".into(),
        version,
        valid_for: jiff::SignedDuration::from_hours(1),
        targets: Targets::default(),
        payload_url: format!("https://bundles.example/stable/{version}"),
        publisher: "pipeline".into(),
    };
    fleet::sign(&path, key, &release).unwrap()
}

/// The second publish as IoT Data got it: retained, on the channel's topic, the
/// signed bytes untouched and the cohort's rollout beside them.
fn assert_the_notice_went_retained_and_untouched(
    aws: &AwsStandIn,
    cohort: &protocol::Rollout,
    v4: &protocol::KnowledgeManifestNotice,
) {
    let published: Vec<_> = aws
        .seen()
        .into_iter()
        .filter(|s| s.target.starts_with("kestrel/"))
        .collect();
    assert_eq!(published.len(), 2);
    assert_eq!(published[1].target, "kestrel/v1/fleet/stable/knowledge");
    assert_eq!(
        published[1].query.get("retain").map(String::as_str),
        Some("true"),
        "{:?}",
        published[1].query
    );
    let sent = protocol::decode(&published[1].body).unwrap();
    let protocol::Body::KnowledgeManifest(sent) = sent.body else {
        panic!("not a notice")
    };
    assert_eq!(&sent.rollout, cohort);
    assert_eq!(sent.manifest, v4.manifest, "the signed bytes travel untouched");
}

/// A rollback to the content of 3 is a new version 5, signed, that a car at 4 takes.
fn assert_a_newer_signed_version_of_3_a_car_at_4_takes(
    stores: &cloud_bridge::store::Stores,
    back: &knowledge::bundle::Manifest,
    v3: &protocol::KnowledgeManifestNotice,
    key: &SigningKey,
) {
    assert_eq!(back.version, 5);
    assert_eq!(back.payload, PayloadKind::Full);
    let v3_manifest = fleet::manifest_of(v3).unwrap();
    assert_eq!(back.payload_sha256, v3_manifest.payload_sha256);
    let released = stores.fleet.latest_release("stable").unwrap().unwrap();
    assert_eq!(released.version, 5);
    let trusted = TrustedKeys::default().with_key(key, false);
    let manifest = trusted
        .verify(&SignedManifest {
            manifest: released.notice.manifest.clone(),
            signature: released.notice.signature.clone(),
            key_id: released.notice.key_id.clone(),
        })
        .unwrap();
    let car = Car {
        channel: "stable".into(),
        model: "Voyager".into(),
        market: "US".into(),
    };
    knowledge::bundle::check_applicable(&manifest, &car, Some(4), Some(4), jiff::Timestamp::now()).unwrap();
}

/// car-1 reports version 5 and car-2 a refused 4 through their named shadows;
/// cloud-bridge reads both (and finds no shadow for car-3) and records them.
async fn record_shadow_reports(aws: &AwsStandIn, stores: &cloud_bridge::store::Stores, applied_at: jiff::Timestamp) {
    let reports = [
        (
            "car-1",
            KnowledgeReport {
                version: Some(5),
                applied_at: Some(applied_at),
                failure: None,
            },
        ),
        (
            "car-2",
            KnowledgeReport {
                version: Some(3),
                applied_at: Some(applied_at),
                failure: Some(Failure {
                    version: Some(4),
                    reason: "refused: the manifest expired at 2026-01-01T00:00:00Z".into(),
                    at: applied_at,
                }),
            },
        ),
    ];
    for (thing, report) in &reports {
        aws.accept_shadow_update(thing, "knowledge", &report.shadow_update());
    }
    let client = aws.iot_data_client();
    for (thing, _) in &reports {
        let car = fleet::car_from_shadow(&client, thing).await.unwrap().unwrap();
        stores.fleet.record_car(&car).unwrap();
    }
    assert!(fleet::car_from_shadow(&client, "car-3").await.unwrap().is_none());
    assert!(aws.violations().is_empty(), "{:?}", aws.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rollback_and_status_through_iot_data_and_named_shadows() {
    let (_config, stores, dir) = crate::common::temp_stores();
    let aws = AwsStandIn::start().await;
    let transport = IotDataDelivery::with_client(aws.iot_data_client());
    let ops = FleetOps {
        stores: &stores,
        topics: protocol::Topics::default(),
        transport: &transport,
        actor: "alice@ops".into(),
    };
    let key = SigningKey::generate().unwrap();
    let v3 = signed(&key, dir.path(), 3, "Three.");
    let v4 = signed(&key, dir.path(), 4, "Four.");

    ops.publish(v3.clone(), protocol::Rollout::default(), "publish")
        .await
        .unwrap();
    let cohort = protocol::Rollout {
        percent: 10,
        cars: vec!["car-1".into()],
        paused: false,
    };
    ops.publish(v4.clone(), cohort.clone(), "publish").await.unwrap();
    // An older version cannot be published over a newer one.
    let refused = ops
        .publish(v3.clone(), protocol::Rollout::default(), "publish")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("use `rollback`"), "{refused}");

    assert_the_notice_went_retained_and_untouched(&aws, &cohort, &v4);

    // Roll back to the content of 3: a new version 5, signed, that a car at 4 takes.
    let back = ops
        .rollback("stable", 3, &key, jiff::SignedDuration::from_hours(1), None)
        .await
        .unwrap();
    assert_a_newer_signed_version_of_3_a_car_at_4_takes(&stores, &back, &v3, &key);
    ops.pause("stable").await.unwrap();

    // Two cars reported through their named shadows; a third never did.
    let applied_at = jiff::Timestamp::now();
    record_shadow_reports(&aws, &stores, applied_at).await;

    let status = fleet::status(&stores, "stable").unwrap();
    assert_eq!(status.latest.as_ref().map(|(v, r)| (*v, r.paused)), Some((5, true)));
    let cars: Vec<_> = status
        .cars
        .iter()
        .map(|c| (c.thing.as_str(), c.version, c.failure_version))
        .collect();
    assert_eq!(cars, [("car-1", Some(5), None), ("car-2", Some(3), Some(4))]);
    assert_eq!(status.cars[0].applied_at, Some(applied_at));
    let text = status.to_string();
    assert!(
        text.contains("PAUSED") && text.contains("the manifest expired"),
        "{text}"
    );
    let actions: Vec<_> = status
        .audit
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.version))
        .collect();
    assert_eq!(
        actions,
        [
            ("alice@ops", "pause", Some(5)),
            ("alice@ops", "rollback to the content of 3", Some(5)),
            ("alice@ops", "publish", Some(4)),
            ("alice@ops", "publish", Some(3)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_manifest_republishes_but_other_content_under_a_version_is_refused() {
    let (_config, stores, dir) = crate::common::temp_stores();
    let aws = AwsStandIn::start().await;
    let transport = IotDataDelivery::with_client(aws.iot_data_client());
    let ops = FleetOps {
        stores: &stores,
        topics: protocol::Topics::default(),
        transport: &transport,
        actor: "alice@ops".into(),
    };
    let key = SigningKey::generate().unwrap();
    let first = signed(&key, dir.path(), 3, "Three.");
    ops.publish(first.clone(), protocol::Rollout::default(), "publish")
        .await
        .unwrap();
    // Re-signed later (a fresh expiry): the same payload, so the same release.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let refreshed = signed(&key, dir.path(), 3, "Three.");
    assert_ne!(refreshed.manifest, first.manifest);
    ops.publish(refreshed.clone(), protocol::Rollout::default(), "refresh")
        .await
        .unwrap();
    assert_eq!(
        stores.fleet.latest_release("stable").unwrap().unwrap().notice.manifest,
        refreshed.manifest
    );
    let other = signed(&key, dir.path(), 3, "Something else.");
    let error = ops
        .publish(other, protocol::Rollout::default(), "publish")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("other content"), "{error}");
}
