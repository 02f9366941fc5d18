//! The wire contract: round trips of every kind, compatibility, size limits and
//! trimming, topics, and the ACL files committed in `protocol/acl/`.

use protocol::topics::check_level;
use protocol::*;

fn escalation(turns: usize, turn_len: usize) -> Envelope {
    Envelope::new(
        "car-0001",
        Some("conv-1"),
        Body::Escalation(Escalation {
            utterance: "book a service for friday".into(),
            intent: Intent::BookService,
            intent_confidence: 0.97,
            top_intent: Some(Intent::BookService),
            top_confidence: Some(0.97),
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.01,
            vehicle: serde_json::json!({"odometer_km": 23480.0}),
            recent_turns: (0..turns)
                .map(|i| RecentTurn {
                    text: format!("turn {i} {}", "x".repeat(turn_len)),
                    answer: "a".into(),
                    intent: "greeting".into(),
                })
                .collect(),
            locale: "en".into(),
            market: "US".into(),
            priority: Priority::Normal,
        }),
    )
    .with_new_trace()
}

#[test]
fn every_kind_round_trips_with_its_envelope() {
    let now = jiff::Timestamp::now();
    let bodies = vec![
        escalation(2, 10).body,
        Body::Response(Response {
            in_reply_to: uuid::Uuid::now_v7(),
            text: "You're booked for Friday at 9.".into(),
            actions: vec![Action::BookingConfirmed {
                appointment_id: "A-1".into(),
                dealer: "Kestrel Downtown".into(),
                starts_at: now,
                service: "annual service".into(),
            }],
            handoff: Some(Handoff {
                status: HandoffStatus::Queued,
                agent: None,
                estimated_wait_seconds: Some(120),
            }),
            more_to_come: true,
            answered_by: Some("local".into()),
        }),
        Body::KnowledgeManifest(KnowledgeManifestNotice {
            channel: "stable".into(),
            manifest: "{\"version\": 7}".into(),
            signature: "c2ln".into(),
            key_id: "ops-2026".into(),
            rollout: protocol::Rollout {
                percent: 10,
                cars: vec!["car-0001".into()],
                paused: false,
            },
        }),
        Body::AnalyticsBatch(AnalyticsBatch {
            period_start: now,
            period_end: now,
            counters: [("intent.fuel_level".to_string(), 3)].into(),
            histograms: [(
                "turn_ms".to_string(),
                Histogram {
                    bounds: vec![1.0, 10.0],
                    counts: vec![5, 1, 0],
                },
            )]
            .into(),
        }),
        Body::Status(Status {
            agent_version: "0.1.0".into(),
            knowledge_version: Some(3),
            knowledge_failure: Some("the manifest expired".into()),
            queued_escalations: 2,
            knowledge_applied_at: Some(now),
            knowledge_failure_version: Some(4),
            knowledge_failure_at: Some(now),
        }),
        Body::Ack(protocol::Ack {
            acknowledges: uuid::Uuid::now_v7(),
        }),
    ];
    for body in bodies {
        let envelope = Envelope::new("car-0001", Some("conv-1"), body);
        let bytes = encode(&envelope).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back, envelope);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for field in ["schema_version", "message_id", "thing_name", "sent_at", "kind"] {
            assert!(json.get(field).is_some(), "{field} missing: {json}");
        }
    }
}

#[test]
fn an_ack_is_small_and_names_the_escalation_it_acknowledges() {
    let escalation_id = uuid::Uuid::now_v7();
    let ack = Envelope::new(
        "car-0001",
        Some("conv-1"),
        Body::Ack(protocol::Ack {
            acknowledges: escalation_id,
        }),
    );
    let bytes = encode(&ack).unwrap();
    assert!(bytes.len() < 400, "{} bytes", bytes.len());
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["kind"], "ack");
    assert_eq!(json["acknowledges"], escalation_id.to_string());
    assert_ne!(json["message_id"], json["acknowledges"], "the ack has an id of its own");
}

#[test]
fn message_ids_are_time_ordered_and_traces_are_w3c() {
    let a = escalation(0, 0);
    let b = escalation(0, 0);
    assert!(a.message_id < b.message_id);
    assert_eq!(a.message_id.get_version_num(), 7);
    let trace = a.traceparent.unwrap();
    let parts: Vec<&str> = trace.split('-').collect();
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3]),
        ("00", 32, 16, "01"),
        "{trace}"
    );
}

#[test]
fn unknown_fields_are_tolerated_and_an_unknown_major_version_is_refused() {
    let mut json: serde_json::Value = serde_json::from_slice(&encode(&escalation(1, 1)).unwrap()).unwrap();
    json["schema_version"] = "1.7".into();
    json["added_in_1_7"] = serde_json::json!({"anything": true});
    json["recent_turns"][0]["new_field"] = 1.into();
    decode(json.to_string().as_bytes()).expect("a newer minor version still reads");
    json["schema_version"] = "2.0".into();
    let err = decode(json.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, ProtocolError::UnsupportedVersion { .. }), "{err}");
    assert!(err.to_string().contains("`2.0` is not supported"), "{err}");
    json["schema_version"] = "1.0".into();
    json["kind"] = "teleport".into();
    assert!(matches!(
        decode(json.to_string().as_bytes()),
        Err(ProtocolError::Invalid(_))
    ));
    assert!(matches!(decode(b"not json"), Err(ProtocolError::Invalid(_))));
}

#[test]
fn labels_travel_as_the_contract_spells_them_and_an_unknown_label_is_refused() {
    let mut json: serde_json::Value = serde_json::from_slice(&encode(&escalation(0, 1)).unwrap()).unwrap();
    assert_eq!(json["intent"], "book_service");
    assert_eq!(json["top_intent"], "book_service");
    assert_eq!(json["sentiment"], "neutral");
    // A 1.3 car sends no top_intent: still read.
    json["schema_version"] = "1.3".into();
    json.as_object_mut().unwrap().remove("top_intent");
    json.as_object_mut().unwrap().remove("top_confidence");
    let Body::Escalation(e) = decode(json.to_string().as_bytes()).unwrap().body else {
        panic!("not an escalation");
    };
    assert_eq!(
        (e.intent, e.top_intent, e.sentiment),
        (Intent::BookService, None, Sentiment::Neutral)
    );
    json["intent"] = "teleport_me".into();
    let err = decode(json.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, ProtocolError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("teleport_me"), "{err}");
}

#[test]
fn oversize_is_refused_on_both_sides_and_an_escalation_is_trimmed_oldest_first() {
    let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(decode(&big), Err(ProtocolError::TooLarge { .. })));

    let mut long = escalation(200, 1_000);
    assert!(matches!(encode(&long), Err(ProtocolError::TooLarge { .. })));
    let (bytes, dropped) = encode_escalation(&mut long).unwrap();
    assert!(bytes.len() <= MAX_PAYLOAD_BYTES);
    assert!(dropped > 0 && dropped < 200, "{dropped}");
    let Body::Escalation(kept) = decode(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(kept.recent_turns.len(), 200 - dropped);
    assert!(
        kept.recent_turns[0].text.starts_with(&format!("turn {dropped} ")),
        "the oldest went first"
    );
    assert!(
        kept.recent_turns.last().unwrap().text.starts_with("turn 199 "),
        "the newest stays"
    );

    let mut hopeless = escalation(3, 10);
    if let Body::Escalation(e) = &mut hopeless.body {
        e.utterance = "y".repeat(MAX_PAYLOAD_BYTES);
    }
    let err = encode_escalation(&mut hopeless).unwrap_err();
    assert!(matches!(err, ProtocolError::CannotTrim { .. }), "{err}");
    assert!(err.to_string().contains("shorten the utterance"), "{err}");
}

#[test]
fn topics_carry_the_thing_name_and_keep_iot_core_rules() {
    let topics = Topics::default();
    assert_eq!(
        topics.escalations("car-0001").unwrap(),
        "kestrel/v1/cars/car-0001/escalations"
    );
    assert_eq!(
        topics.responses("car-0001").unwrap(),
        "kestrel/v1/cars/car-0001/responses"
    );
    assert_eq!(
        topics.fleet_knowledge("stable").unwrap(),
        "kestrel/v1/fleet/stable/knowledge"
    );
    assert_eq!(
        topics.shared_escalations("bridge").unwrap(),
        "$share/bridge/kestrel/v1/cars/+/escalations"
    );
    assert_eq!(
        topics.knowledge_shadow("car-0001", "update").unwrap(),
        "$aws/things/car-0001/shadow/name/knowledge/update"
    );
    assert_eq!(
        topics.parse_car_topic("kestrel/v1/cars/car-0001/escalations"),
        Some(("car-0001", "escalations"))
    );
    assert_eq!(topics.parse_car_topic("kestrel/v1/cars/a/b/escalations"), None);
    for bad in ["", "a/b", "+", "#", "$aws", "car 1", "ca\u{e9}r"] {
        assert!(check_level(bad).is_err(), "{bad:?}");
        assert!(topics.escalations(bad).is_err(), "{bad:?}");
    }
    assert!(
        Topics::new("a/b/c/d/e").is_ok(),
        "a/b/c/d/e/cars/x/escalations has 7 slashes"
    );
    let err = Topics::new("a/b/c/d/e/f").unwrap_err();
    assert!(err.to_string().contains("at most 7 slashes"), "{err}");
}

fn acl() -> Acl {
    Acl {
        topics: Topics::default(),
        channels: vec!["stable".into(), "beta".into()],
        cloud_user: "cloud-bridge".into(),
    }
}

#[test]
fn the_committed_acl_files_are_the_rendered_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("acl");
    let mosquitto = acl().mosquitto();
    let policy = serde_json::to_string_pretty(&acl().iot_car_policy("REGION", "ACCOUNT_ID")).unwrap() + "\n";
    if std::env::var_os("PROTOCOL_WRITE_ACL").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mosquitto.acl"), &mosquitto).unwrap();
        std::fs::write(dir.join("iot-car-policy.json"), &policy).unwrap();
    }
    let stale = "is stale: rerun with PROTOCOL_WRITE_ACL=1 cargo test -p protocol";
    assert_eq!(
        std::fs::read_to_string(dir.join("mosquitto.acl")).unwrap(),
        mosquitto,
        "mosquitto.acl {stale}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("iot-car-policy.json")).unwrap(),
        policy,
        "iot-car-policy.json {stale}"
    );
}

#[test]
fn a_car_may_use_only_its_own_topics_and_read_the_fleet() {
    let acl = acl();
    let m = acl.mosquitto();
    assert!(m.contains("pattern write kestrel/v1/cars/%u/escalations\n"));
    assert!(m.contains("pattern read kestrel/v1/cars/%u/responses\n"));
    assert!(m.contains("pattern read kestrel/v1/fleet/stable/knowledge\n"));
    assert!(
        !m.contains("pattern write kestrel/v1/fleet"),
        "fleet topics are read-only for cars"
    );
    assert!(
        !m.lines().any(|l| l.starts_with("pattern") && l.contains("/+/")),
        "no car gets a wildcard over others"
    );
    let policy = acl.iot_car_policy("eu-west-1", "123456789012").to_string();
    assert!(policy.contains("arn:aws:iot:eu-west-1:123456789012:client/${iot:Connection.Thing.ThingName}"));
    assert!(policy.contains("topic/kestrel/v1/cars/${iot:Connection.Thing.ThingName}/escalations"));
    assert!(policy.contains("topicfilter/kestrel/v1/fleet/stable/knowledge"));
    assert!(
        !policy.contains("cars/+") && !policy.contains("cars/*"),
        "no car may reach another's topics"
    );
}

#[test]
fn a_rollout_takes_the_listed_cars_and_a_stable_share_and_nobody_when_paused() {
    use protocol::Rollout;
    let cars: Vec<String> = (0..1000).map(|i| format!("car-{i:04}")).collect();
    let share = |r: &Rollout| cars.iter().filter(|c| r.includes(c)).count();
    assert_eq!(share(&Rollout::default()), 1000);
    let ten = Rollout {
        percent: 10,
        cars: vec![],
        paused: false,
    };
    let thirty = Rollout {
        percent: 30,
        ..ten.clone()
    };
    assert!((60..=140).contains(&share(&ten)), "{}", share(&ten));
    // Widening keeps every car already in.
    assert!(cars.iter().filter(|c| ten.includes(c)).all(|c| thirty.includes(c)));
    let listed = Rollout {
        percent: 0,
        cars: vec!["car-0007".into()],
        paused: false,
    };
    assert_eq!(share(&listed), 1);
    assert!(listed.includes("car-0007"));
    assert_eq!(
        share(&Rollout {
            paused: true,
            ..Rollout::default()
        }),
        0
    );
    // An old notice without a rollout means everyone.
    let old: protocol::KnowledgeManifestNotice =
        serde_json::from_str(r#"{"channel":"s","manifest":"{}","signature":"x","key_id":"k"}"#).unwrap();
    assert_eq!(old.rollout, Rollout::default());
}
