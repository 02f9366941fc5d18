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

use std::sync::atomic::{AtomicBool, Ordering};
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
    let config = bench_config(dir.path(), &key);
    let args = RuntimeArgs {
        model: ModelArgs::default(),
        config: ConfigArgs { config: None },
        signals: None,
    };
    let engine = Arc::new(edge_agent::assemble::open_engine(&config, &args).unwrap());
    let live = engine.assistant().live_knowledge();
    let updater = Arc::new(edge_agent::fleet::updater_for(&config, live.clone()).unwrap());
    let shipped = live.load().articles().unwrap().len();
    let payload = payload_of(&live.load(), articles);
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
    let (before, _) = runtime.block_on(Asking::start(&runtime, &socket).after(Duration::from_secs(2)));

    let during = Asking::start(&runtime, &socket);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let applied = updater.apply_local(&notice, &bytes).unwrap();
    let apply = started.elapsed();
    let (latencies, errors) = runtime.block_on(during.after(Duration::from_millis(200)));
    shutdown.cancel();
    let _ = runtime.block_on(server);

    assert_eq!(live.load().info().articles, articles.max(shipped));
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
        percentile(&before, 0.5),
        percentile(&before, 0.99)
    );
    println!(
        "/v1/ask during the apply: {} answers, {} errors, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        errors,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
}

/// The embedded config with its state and socket in `dir`, no rate limit, and
/// `key` trusted on the `stable` channel.
fn bench_config(dir: &std::path::Path, key: &SigningKey) -> Config {
    let mut config = Config::embedded();
    config.state.dir = dir.display().to_string();
    config.api.socket = dir.join("api.sock").display().to_string();
    config.api.rate_per_second = 100_000;
    config.api.rate_burst = 100_000;
    config.fleet.channel = "stable".into();
    config.fleet.keys = TrustedKeys::default().with_key(key, false);
    config
}

/// The shipped articles, then generated ones, each distinct, up to `articles`.
fn payload_of(kb: &knowledge::KnowledgeBase, articles: usize) -> Payload {
    let shipped = kb.articles().unwrap();
    let mut all = shipped.clone();
    for i in 0..articles.saturating_sub(shipped.len()) {
        let mut a = shipped[i % shipped.len()].clone();
        a.id = format!("generated-{i:05}");
        a.title = format!("{} (variant {i})", a.title);
        a.summary = format!("{} Reference {i}.", a.summary);
        all.push(a);
    }
    Payload::full(kb.meta(), all)
}

/// A driver asking one of [`QUESTIONS`] every 10 ms, each on its own connection.
struct Asking {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<f64>, usize)>,
}

impl Asking {
    fn start(runtime: &tokio::runtime::Runtime, socket: &std::path::Path) -> Asking {
        let stop = Arc::new(AtomicBool::new(false));
        let (until, socket) = (stop.clone(), socket.to_path_buf());
        let task = runtime.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut i = 0;
            while !until.load(Ordering::Relaxed) {
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
        });
        Asking { stop, task }
    }

    /// Stops asking after `wait`: the answer latencies in ms, and the errors.
    async fn after(self, wait: Duration) -> (Vec<f64>, usize) {
        tokio::time::sleep(wait).await;
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}
