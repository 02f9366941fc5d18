//! `cloud-bridge demo`: the whole product on one machine with embedded defaults.
//! An in-process broker (rumqttd, MQTT 3.1.1 for the car and 5 for the cloud), the
//! supervisor with the local provider, and a car (edge-agent's engine and uplink)
//! in a temporary folder. A scripted driver asks a local question and three that
//! escalate; an agent takes the handoff and answers.
//!
//! The demo's car has a made-up owner profile and the store two made-up recall
//! campaigns, seeded here and only here: production stores start empty, filled
//! by fleet ops (`cloud-bridge profiles`, `cloud-bridge recalls`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use edge_agent::engine::Event;
use tokio_util::sync::CancellationToken;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// rumqttd with a 3.1.1 and a 5 listener. It cannot be stopped: it ends with the process.
fn start_broker(v4: u16, v5: u16) -> anyhow::Result<()> {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 2000,
        max_payload_size: 256 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, port: u16| rumqttd::ServerSettings {
        name: name.into(),
        listen: ([127, 0, 0, 1], port).into(),
        tls: None,
        next_connection_delay_ms: 1,
        connections: connections.clone(),
    };
    let config = rumqttd::Config {
        id: 0,
        v4: Some(HashMap::from([("1".to_string(), server("v4", v4))])),
        v5: Some(HashMap::from([("2".to_string(), server("v5", v5))])),
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::spawn(move || {
        if let Err(e) = broker.start() {
            eprintln!("broker stopped: {e}");
        }
    });
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", v5)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the in-process broker did not start")
}

pub fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (v4, v5) = (free_port()?, free_port()?);
    start_broker(v4, v5)?;
    let http = format!("127.0.0.1:{}", free_port()?);
    let config = cloud_config(&dir.path().join("cloud/cloud-bridge.sqlite"), v5, &http)?;
    let car_config = car_config(&dir.path().join("car"), v4)?;
    seed(&cloud_bridge::assemble::open_stores(&config)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        daemon::signals::cancel_on_signals(shutdown.clone())?;
        let cloud = tokio::spawn(super::serve::service(config.clone(), shutdown.child_token()));
        let (engine, uplink) = start_car(&car_config, &shutdown)?;
        let stores = cloud_bridge::assemble::open_stores(&config)?;
        wait_healthy(&http, Duration::from_secs(60)).await?;
        println!(
            "demo: broker on 127.0.0.1:{v4} (MQTT 3.1.1, the car) and :{v5} (MQTT 5, the cloud); local provider\n"
        );
        for (i, text) in SCRIPT.iter().enumerate() {
            drive_one_turn(&engine, &stores, &format!("demo-{i}"), text).await?;
        }
        shutdown.cancel();
        let _ = uplink.await;
        cloud.await??;
        anyhow::Ok(())
    })?;
    Ok(())
}

/// What the demo driver says, one conversation each.
const SCRIPT: [&str; 4] = [
    "how do i pair my phone",
    "book a brake inspection next friday morning",
    "are there any recalls on my car",
    "i want to talk to a real person",
];

fn cloud_config(store: &std::path::Path, mqtt5_port: u16, http: &str) -> anyhow::Result<cloud_bridge::config::Config> {
    let vars = [
        ("CLOUD_BRIDGE__MQTT__PORT", mqtt5_port.to_string()),
        ("CLOUD_BRIDGE__STORE__PATH", store.display().to_string()),
        ("CLOUD_BRIDGE__HTTP__LISTEN", http.to_string()),
        ("CLOUD_BRIDGE__LLM__PROVIDER", "local".to_string()),
    ];
    Ok(cloud_bridge::config::Config::layered(
        None,
        vars.into_iter().map(|(k, v)| (k.to_string(), v)),
    )?)
}

fn car_config(state: &std::path::Path, mqtt4_port: u16) -> anyhow::Result<edge_agent::config::Config> {
    let vars = [
        ("EDGE_AGENT__STATE__DIR", state.display().to_string()),
        ("EDGE_AGENT__UPLINK__HOST", "127.0.0.1".to_string()),
        ("EDGE_AGENT__UPLINK__PORT", mqtt4_port.to_string()),
        ("EDGE_AGENT__UPLINK__TLS", "false".to_string()),
        ("EDGE_AGENT__UPLINK__THING_NAME", "demo-car".to_string()),
    ];
    Ok(edge_agent::config::Config::layered(
        None,
        vars.into_iter().map(|(k, v)| (k.to_string(), v)),
    )?)
}

type UplinkTask = tokio::task::JoinHandle<Result<(), edge_agent::uplink::UplinkError>>;

/// The car in-process: its engine, and its uplink to the broker.
fn start_car(
    car_config: &edge_agent::config::Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<edge_agent::engine::Engine>, UplinkTask)> {
    let args = edge_agent::cli::RuntimeArgs {
        model: Default::default(),
        config: edge_agent::cli::ConfigArgs { config: None },
        signals: None,
    };
    let engine = Arc::new(
        tokio::task::block_in_place(|| edge_agent::assemble::open_engine(car_config, &args))
            .context("cannot start the car")?,
    );
    let connector = edge_agent::uplink::RumqttcConnector::new(&car_config.uplink)?;
    let uplink = tokio::spawn(edge_agent::uplink::run(
        connector,
        engine.clone(),
        car_config.uplink.clone(),
        None,
        shutdown.child_token(),
    ));
    Ok((engine, uplink))
}

/// One turn of the script: the car's answer, the cloud's when it escalated,
/// and a human agent's when it was handed off.
async fn drive_one_turn(
    engine: &edge_agent::engine::Engine,
    stores: &cloud_bridge::store::Stores,
    conversation: &str,
    text: &str,
) -> anyhow::Result<()> {
    let mut events = engine.subscribe();
    let asked = engine.ask(uuid::Uuid::now_v7(), conversation, text)?;
    println!("driver> {text}");
    println!(
        "car   > {}   [intent {}]",
        asked.turn.answer,
        asked.turn.understood.intent.as_str()
    );
    if asked.turn.escalation.is_some() {
        match wait_response(&mut events, conversation, Duration::from_secs(20)).await {
            None => println!("cloud > (no answer within 20 s)"),
            Some((reply, by, handoff)) => {
                println!("cloud > {reply}   [{}]", by.unwrap_or_default());
                if handoff {
                    play_the_agent(stores, &mut events, conversation).await?;
                }
            }
        }
    }
    println!();
    Ok(())
}

/// A human agent, Sam, takes the handoff and says hello.
async fn play_the_agent(
    stores: &cloud_bridge::store::Stores,
    events: &mut Events,
    conversation: &str,
) -> anyhow::Result<()> {
    let open = stores.handoffs.list(false)?;
    let Some(h) = open.iter().find(|h| h.conversation_id == conversation) else {
        return Ok(());
    };
    cloud_bridge::agent::take(stores, &h.handoff_id, "Sam")?;
    if let Some((t, by, _)) = wait_response(events, conversation, Duration::from_secs(10)).await {
        println!("cloud > {t}   [{}]", by.unwrap_or_default());
    }
    cloud_bridge::agent::reply(
        stores,
        &h.handoff_id,
        "Sam",
        "Hi, this is Sam. How can I help you today?",
    )?;
    if let Some((t, by, _)) = wait_response(events, conversation, Duration::from_secs(10)).await {
        println!("cloud > {t}   [{}]", by.unwrap_or_default());
    }
    Ok(())
}

/// The demo's fictional owner and recalls.
fn seed(stores: &cloud_bridge::store::Stores) -> anyhow::Result<()> {
    use cloud_bridge::store::{Profile, Recall};
    stores.profiles.put(&Profile {
        thing: "demo-car".into(),
        owner_name: "Alex (demo)".into(),
        model: "Voyager".into(),
        model_year: 2025,
        vin: String::new(),
        mileage_km: 12_400,
        market: "US".into(),
        locale: "en".into(),
        time_zone: "America/New_York".into(),
        preferred_dealer: "Kestrel Downtown Service".into(),
        warranty_until: jiff::civil::date(2028, 1, 1),
        warranty_km: 100_000,
        service_history: Vec::new(),
        preferences: Default::default(),
    })?;
    for (campaign, years, summary, remedy) in [
        (
            "24V-118",
            (2024, 2025),
            "The rear seat-belt pretensioner connector may not be fully seated.",
            "A dealer checks and reseats the connector, free of charge, in about 30 minutes.",
        ),
        (
            "25V-031",
            (2025, 2025),
            "The charge-port door actuator software may leave the door unlatched.",
            "A software update at a dealer or over the air, free of charge.",
        ),
    ] {
        stores.appointments.put_recall(&Recall {
            campaign: campaign.into(),
            model: "Voyager".into(),
            years,
            summary: summary.into(),
            remedy: remedy.into(),
        })?;
    }
    Ok(())
}

/// Until the supervisor's `/health` says 200 (connected and subscribed).
async fn wait_healthy(addr: &str, within: Duration) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let request = format!("GET /health HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
            let mut response = Vec::new();
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_to_end(&mut response).await.is_ok()
                && response.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the supervisor did not become healthy within {within:?}")
}

/// The car's event stream.
type Events = tokio::sync::broadcast::Receiver<edge_agent::event_log::Numbered<Event>>;

async fn wait_response(
    events: &mut Events,
    conversation: &str,
    within: Duration,
) -> Option<(String, Option<String>, bool)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.ok()?.ok()?.event;
        if let Event::Response {
            conversation_id,
            text,
            handoff,
            answered_by,
            ..
        } = event
        {
            if conversation_id == conversation {
                return Some((text, answered_by, handoff.is_some()));
            }
        }
    }
}
