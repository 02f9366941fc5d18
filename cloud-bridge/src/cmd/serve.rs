//! `cloud-bridge serve`: the supervisor on MQTT and the HTTP endpoints, until
//! SIGTERM or SIGINT cancels the one token every task hangs off.

use std::sync::Arc;

use anyhow::Context as _;
use cloud_bridge::config::Config;
use cloud_bridge::metrics::Metrics;
use cloud_bridge::supervisor::Supervisor;
use cloud_bridge::{assemble, http, service};
use tokio_util::sync::CancellationToken;

/// Serves until a signal stops it.
pub fn until_stopped(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        daemon::signals::cancel_on_signals(shutdown.clone())?;
        service(config, shutdown).await
    })
}

/// The service until `shutdown`: the supervisor on MQTT, and the HTTP endpoints.
pub async fn service(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let stores = assemble::open_stores(&config)?;
    let knowledge = tokio::task::block_in_place(|| assemble::open_knowledge(&config))?;
    tracing::info!(articles = knowledge.info().articles, "cloud knowledge base ready");
    let provider = assemble::provider(&config, metrics.clone()).await;
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
