//! cloud-bridge: the escalated half of the product. It reads what cars could not
//! answer from MQTT, runs the supervisor pipeline (understanding, routing,
//! knowledge, profile, servicing tools, response generation on Bedrock or the
//! local provider), answers the car, books, or hands off to a person.
//!
//! See `ARCHITECTURE.md` for the map; `service` owns the broker connection,
//! `supervisor` the pipeline, `store` the state, `llm` the model seam.

pub mod agent;
pub mod batch;
pub mod broker;
pub mod cli;
pub mod config;
pub mod delivery;
#[cfg(feature = "demo")]
pub mod demo;
pub mod failpoint;
pub mod fleet;
pub mod http;
pub mod llm;
pub mod metrics;
pub mod report;
pub mod service;
pub mod servicing;
pub mod store;
pub mod supervisor;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tools;

use std::sync::Arc;

use anyhow::Context as _;
use daemon::locate::{self, ModelEmbedder};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ProviderKind};
use crate::llm::bedrock::{BedrockProvider, BedrockSettings};
use crate::llm::local::LocalProvider;
use crate::llm::LlmProvider;
use crate::metrics::Metrics;
use crate::store::{SqliteStore, Stores};
use crate::supervisor::Supervisor;

/// Opens every store on the configured SQLite file.
pub fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    let path = config.store_path();
    let store = SqliteStore::open(&path).with_context(|| format!("cannot open the store {}", path.display()))?;
    Ok(Stores::sqlite(Arc::new(store)))
}

/// The shipped model as the knowledge base's embedder (cars embed with the same).
fn embedder() -> anyhow::Result<Arc<ModelEmbedder>> {
    let classifier = Arc::new(
        locate::load_classifier(&locate::ModelArgs::default())
            .context("cannot load the model the knowledge base embeds with")?,
    );
    Ok(Arc::new(ModelEmbedder::new(classifier)))
}

/// Compiles `pack` (the configured or shipped one when `None`) into `out`.
pub fn build_knowledge(
    config: &Config,
    pack: Option<&std::path::Path>,
    out: &std::path::Path,
) -> anyhow::Result<knowledge::BuildReport> {
    compile_knowledge(config, pack, out, embedder()?.as_ref())
}

fn compile_knowledge(
    config: &Config,
    pack: Option<&std::path::Path>,
    out: &std::path::Path,
    embedder: &dyn knowledge::Embedder,
) -> anyhow::Result<knowledge::BuildReport> {
    let pack = match pack {
        Some(p) => p.to_path_buf(),
        None => locate::find_pack_dir(&config.knowledge.pack)?,
    };
    Ok(knowledge::compile(&pack, out, embedder, &locate::intent_labels())?)
}

/// The cloud knowledge base: the configured pack (the shipped one by default),
/// compiled beside the store with the shipped model's embeddings.
pub fn open_knowledge(config: &Config) -> anyhow::Result<knowledge::KnowledgeBase> {
    let db = config.store_path().with_file_name("cloud-knowledge.sqlite");
    // One model load for both the compile and the searches.
    let embedder = embedder()?;
    compile_knowledge(config, None, &db, embedder.as_ref())?;
    Ok(knowledge::KnowledgeBase::open(&db, embedder)?)
}

/// The configured provider.
pub async fn provider(config: &Config, metrics: Metrics) -> Arc<dyn LlmProvider> {
    match config.llm.provider {
        ProviderKind::Local => Arc::new(LocalProvider),
        ProviderKind::Bedrock => {
            let l = &config.llm;
            let settings = BedrockSettings {
                model_id: l.model_id.clone(),
                max_tokens: l.max_tokens,
                temperature: l.temperature,
                guardrail: (!l.guardrail_id.is_empty()).then(|| (l.guardrail_id.clone(), l.guardrail_version.clone())),
                deadline: std::time::Duration::from_millis(l.deadline_ms),
                retry_initial: std::time::Duration::from_millis(l.retry_initial_ms),
                retry_max: std::time::Duration::from_millis(l.retry_max_ms),
                max_tool_rounds: l.max_tool_rounds,
            };
            let nonempty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
            Arc::new(
                BedrockProvider::from_environment(settings, nonempty(&l.region), nonempty(&l.endpoint_url), metrics)
                    .await,
            )
        }
    }
}

/// The service until `shutdown`: the supervisor on MQTT, and the HTTP endpoints.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let stores = open_stores(&config)?;
    let knowledge = tokio::task::block_in_place(|| open_knowledge(&config))?;
    tracing::info!(articles = knowledge.info().articles, "cloud knowledge base ready");
    let provider = provider(&config, metrics.clone()).await;
    let label = provider.label();
    let supervisor = Arc::new(Supervisor::new(
        stores.clone(),
        provider,
        Some(knowledge),
        config.clone(),
        metrics.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let app = http::router(metrics.clone(), stores, label.clone());
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
    });
    eprintln!(
        "cloud-bridge: provider {label}; broker {}:{}; health on http://{}/health",
        config.mqtt.host, config.mqtt.port, config.http.listen
    );
    // Under systemd: ready once the stores, the knowledge and the HTTP listener
    // are up (the broker may come later: the service reconnects on its own), and
    // the watchdog is fed while the MQTT loop beats.
    let heartbeats = daemon::heartbeat::Heartbeats::default();
    let heartbeat = heartbeats.register("mqtt");
    let watchdog_tasks = tokio_util::task::TaskTracker::new();
    daemon::systemd::start_watchdog(&heartbeats, &watchdog_tasks, &shutdown);
    daemon::systemd::notify_ready(&format!(
        "provider {label}; health on http://{}/health",
        config.http.listen
    ));
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        daemon::systemd::notify_stopping();
    });
    service::run(config, supervisor, metrics, Some(heartbeat), shutdown).await?;
    http.await??;
    watchdog_tasks.close();
    watchdog_tasks.wait().await;
    Ok(())
}
