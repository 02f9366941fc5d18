//! The daemon under load, and the knowledge pack compiler.
//!
//! cargo bench -p edge-agent --bench daemon
//!
//! 1. `POST /v1/ask` over the Unix socket on the compact encoder, driven open loop:
//!    requests are sent on a fixed schedule (200/s) whatever the answers do, and
//!    each latency is measured from its scheduled send time, so a stall shows as
//!    queueing delay instead of hiding it (no coordinated omission). Each request
//!    opens its own connection, as a worst case for the HMI.
//! 2. The daemon's peak RSS (VmHWM) after the load.
//! 3. `kb build` of the shipped pack, and of a generated 10,000-article pack.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE_PER_SECOND: u64 = 200;
const SECONDS: u64 = 20;

fn main() {
    let texts = utterances();
    let started = Instant::now();
    let daemon = testkit::Daemon::start(&[
        ("EDGE_AGENT__API__RATE_PER_SECOND", "100000"),
        ("EDGE_AGENT__API__RATE_BURST", "100000"),
    ]);
    println!(
        "daemon ready in {:.0} ms (model + knowledge base)",
        started.elapsed().as_secs_f64() * 1e3
    );
    let socket = daemon.socket.clone();
    let rss_idle = testkit::peak_rss_mb(daemon.child.id());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (latencies, failures) = runtime.block_on(open_loop(&socket, Arc::new(texts)));
    let rss_peak = testkit::peak_rss_mb(daemon.child.id());
    let metrics = runtime
        .block_on(edge_agent::client::request(
            &socket,
            hyper::Method::GET,
            "/metrics",
            None,
        ))
        .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
        .unwrap_or_default();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let turns = metric("edge_agent_turn_seconds_count");
    if turns > 0.0 {
        println!(
            "inside the daemon: {turns:.0} turns, mean {:.3} ms each (classify, search, history write)",
            metric("edge_agent_turn_seconds_sum") / turns * 1e3
        );
    }
    drop(daemon);

    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "POST /v1/ask, open loop {RATE_PER_SECOND}/s for {SECONDS} s: {} answered, {failures} failed; latency from the scheduled send: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        sorted.last().copied().unwrap_or(0.0)
    );
    println!(
        "daemon peak RSS: {:.1} MB after start, {:.1} MB after the load",
        rss_idle, rss_peak
    );

    let scratch = tempfile::tempdir().unwrap();
    kb_builds(scratch.path());
}

/// The dev sets' utterances: varied, real-sounding, and not the training lines.
fn utterances() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/eval");
    let mut out = Vec::new();
    for name in ["dev.jsonl", "dev2.jsonl"] {
        for example in models::corpus::load_jsonl(&root.join(name)).unwrap() {
            out.push(example.text);
        }
    }
    out
}

/// The schedule is kept by a plain thread (tokio's timer wheel has 1 ms ticks,
/// which would add up to a millisecond of the generator's own lateness); each
/// request is handed to the runtime at its scheduled instant.
async fn open_loop(socket: &Path, texts: Arc<Vec<String>>) -> (Vec<f64>, usize) {
    let total = RATE_PER_SECOND * SECONDS;
    let interval = Duration::from_nanos(1_000_000_000 / RATE_PER_SECOND);
    let handle = tokio::runtime::Handle::current();
    let socket = socket.to_path_buf();
    let scheduler = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(100);
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let scheduled = start + interval * i as u32;
            let now = Instant::now();
            if scheduled > now + Duration::from_micros(300) {
                std::thread::sleep(scheduled - now - Duration::from_micros(300));
            }
            while Instant::now() < scheduled {
                std::hint::spin_loop();
            }
            let socket = socket.clone();
            let texts = texts.clone();
            tasks.push(handle.spawn(async move {
                let text = &texts[i as usize % texts.len()];
                let body = serde_json::json!({"text": text, "conversation_id": format!("bench-{}", i % 50)});
                let result = edge_agent::client::request(&socket, hyper::Method::POST, "/v1/ask", Some(body)).await;
                let latency = scheduled.elapsed().as_secs_f64() * 1e3;
                match result {
                    Ok((200, _)) => Some(latency),
                    _ => None,
                }
            }));
        }
        tasks
    });
    let tasks = tokio::task::spawn_blocking(move || scheduler.join().unwrap())
        .await
        .unwrap();
    let (mut latencies, mut failures) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Some(ms) => latencies.push(ms),
            None => failures += 1,
        }
    }
    (latencies, failures)
}

fn kb_builds(dir: &Path) {
    use edge_agent::cli::ModelArgs;
    let classifier = Arc::new(daemon::locate::load_classifier(&ModelArgs::default()).unwrap());
    let embedder = daemon::locate::ModelEmbedder::new(classifier);
    let shipped = daemon::locate::find_pack_dir("").unwrap();
    let mut times = Vec::new();
    let mut articles = 0;
    for round in 0..5 {
        let started = Instant::now();
        let report =
            edge_agent::knowledge_base::build(&shipped, &dir.join(format!("kb-{round}.sqlite")), &embedder).unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        articles = report.articles;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "kb build, shipped pack ({articles} articles): median {:.0} ms, worst {:.0} ms",
        times[2], times[4]
    );

    let generated = dir.join("generated");
    generate_pack(&generated, 10_000);
    let started = Instant::now();
    let report = edge_agent::knowledge_base::build(&generated, &dir.join("kb-10k.sqlite"), &embedder).unwrap();
    println!(
        "kb build, generated pack ({} articles in {} files): {:.2} s",
        report.articles,
        report.files,
        started.elapsed().as_secs_f64()
    );
}

/// A pack of `n` articles of realistic size, made from the shipped pack's texts
/// recombined, 100 per file.
fn generate_pack(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("articles")).unwrap();
    std::fs::write(
        dir.join("pack.toml"),
        "name = \"generated\"\ntitle = \"Generated load pack\"\nversion = 1\n",
    )
    .unwrap();
    let parts = [
        "brake", "cabin", "charging", "seat", "mirror", "tyre", "engine", "door", "screen", "lamp",
    ];
    let intents = [
        "feature_howto",
        "warning_light",
        "vehicle_health",
        "tire_change",
        "fuel_type",
    ];
    for file in 0..n.div_ceil(100) {
        let mut text = String::new();
        for i in file * 100..((file + 1) * 100).min(n) {
            let part = parts[i % parts.len()];
            let other = parts[(i / 10) % parts.len()];
            text.push_str(&format!(
                "[[article]]\nid = \"gen-{i}\"\ntitle = \"{part} {other} procedure {i}\"\nintents = [\"{}\"]\n\
                 aliases = [\"{other} {part} {i}\", \"how to adjust the {part}\"]\nkeywords = [\"{part}\", \"{other}\"]\n\
                 summary = \"To adjust the {part} on model variant {i}, open Settings, then Vehicle, then {other}. Confirm the change on the screen.\"\n\
                 body = \"This procedure applies to the {part} and the {other} of variant {i}. Follow the steps in order, and have a dealer check the {part} if the warning stays on after the adjustment.\"\n\n",
                intents[i % intents.len()]
            ));
        }
        std::fs::write(dir.join(format!("articles/part-{file:03}.toml")), text).unwrap();
    }
}
