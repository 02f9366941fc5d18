//! Applying a fleet knowledge bundle while the car answers.
//!
//! cargo bench -p edge-agent --bench fleet_apply [-- ARTICLES]
//!
//! The daemon's engine and API run in this process on a Unix socket; a signed
//! full bundle of ARTICLES (default 10,000) generated articles is applied with
//! the compact encoder (verify, write the staging base with every embedding,
//! swap), while `POST /v1/ask` questions that search the knowledge base are
//! sent every 10 ms, each on its own connection. Prints the apply time and the
//! answer latencies before and during the apply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_agent::cli::{ConfigArgs, ModelArgs, RuntimeArgs};
use edge_agent::config::Config;
use knowledge::bundle::{Payload, SigningKey, Targets, TrustedKeys};

const QUESTIONS: &[&str] = &[
    "what does the orange engine light mean",
    "how do i pair my phone",
    "what should my tyre pressure be",
    "how do i open the fuel door",
];

fn main() {
    let articles: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let mut config = Config::embedded();
    config.state.dir = dir.path().display().to_string();
    config.api.socket = dir.path().join("api.sock").display().to_string();
    config.api.rate_per_second = 100_000;
    config.api.rate_burst = 100_000;
    config.fleet.channel = "stable".into();
    config.fleet.keys = TrustedKeys::default().with_key(&key, false);
    let args = RuntimeArgs {
        model: ModelArgs::default(),
        config: ConfigArgs { config: None },
        signals: None,
    };
    let engine = Arc::new(edge_agent::assemble::open_engine(&config, &args).unwrap());
    let live = engine.assistant().live_knowledge();
    let updater = Arc::new(edge_agent::fleet::updater_for(&config, live.clone()).unwrap());

    // The bundle: the shipped articles, then generated ones, each distinct.
    let shipped = live.load().articles().unwrap();
    let mut all = shipped.clone();
    for i in 0..articles.saturating_sub(shipped.len()) {
        let mut a = shipped[i % shipped.len()].clone();
        a.id = format!("generated-{i:05}");
        a.title = format!("{} (variant {i})", a.title);
        a.summary = format!("{} Reference {i}.", a.summary);
        all.push(a);
    }
    let payload = Payload::full(live.load().meta(), all);
    let bytes = payload.to_bytes();
    let manifest = testkit::bundle::manifest(
        2,
        &payload,
        &bytes,
        "https://bundles.example/stable/2",
        Targets::default(),
    );
    let notice = testkit::bundle::notice(&key, &manifest);

    let runtime = testkit::threaded_runtime();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let socket = config.socket_path();
    let server = {
        let (engine, config, shutdown) = (engine.clone(), config.clone(), shutdown.clone());
        runtime.spawn(async move { edge_agent::serve::run(engine, &config, shutdown).await })
    };
    runtime.block_on(async {
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // Answers, one every 10 ms, until told to stop.
    let ask = |stop: Arc<std::sync::atomic::AtomicBool>| {
        let socket = socket.clone();
        runtime.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let body = serde_json::json!({"text": QUESTIONS[i % QUESTIONS.len()], "conversation_id": format!("bench-{i}")});
                match edge_agent::client::request(&socket, hyper::Method::POST, "/v1/ask", Some(body)).await {
                    Ok((200, _)) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                    _ => errors += 1,
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10).saturating_sub(started.elapsed())).await;
            }
            (latencies, errors)
        })
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = ask(stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (before, _) = runtime.block_on(idle).unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = ask(stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let applied = updater.apply_local(&notice, &bytes).unwrap();
    let apply = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (latencies, errors) = runtime.block_on(during).unwrap();
    shutdown.cancel();
    let _ = runtime.block_on(server);

    assert_eq!(live.load().info().articles, articles.max(shipped.len()));
    let pct = |v: &[f64], p: f64| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    println!(
        "apply of {} articles ({:.1} MB payload, compact encoder): {:.2} s (verify, embed, write, swap: {} ms in the updater)",
        applied.articles,
        bytes.len() as f64 / 1e6,
        apply.as_secs_f64(),
        applied.apply_ms
    );
    println!(
        "/v1/ask before: {} answers, p50 {:.1} ms, p99 {:.1} ms",
        before.len(),
        pct(&before, 0.5),
        pct(&before, 0.99)
    );
    println!(
        "/v1/ask during the apply: {} answers, {} errors, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        errors,
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0)
    );
}
