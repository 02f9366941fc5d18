//! `edge-agent serve`: the daemon. Binds the API's Unix socket (and optional
//! loopback TCP), serves until the cancellation token fires, then lets in-flight
//! requests finish within the grace period, flushes, and returns.
//!
//! There is one cancellation tree: the token passed in (cancelled by SIGTERM or
//! SIGINT in [`crate::signals`]) ends the listeners, the SSE streams, the
//! background tasks the requests started, and the watchdog's probes.
//!
//! Under systemd it says `READY=1` once the socket is bound (the models and the
//! knowledge base are loaded before), runs the watchdog ([`crate::watchdog`]), and
//! says `STOPPING=1` when the token fires.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api;
use crate::config::Config;
use crate::engine::Engine;
use crate::uplink::UplinkError;

/// Why the daemon could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot {action} {}", path.display())]
    Socket {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is in use: is another edge-agent running?", .0.display())]
    InUse(PathBuf),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read /etc/group")]
    Groups(#[source] std::io::Error),
    #[error("api.socket_group: no group named `{0}`")]
    NoGroup(String),
    #[error(transparent)]
    Topics(#[from] protocol::ProtocolError),
    #[error(transparent)]
    Uplink(#[from] UplinkError),
}

fn socket_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_path_buf();
    move |source| ServeError::Socket { action, path, source }
}

/// Serves the API until `shutdown` is cancelled.
/// Memory a turn frees goes back to the system soon after, not at glibc's
/// leisure: the heap is trimmed once 64 KiB are free at its top (default 128
/// KiB, raised as the process frees large blocks), and blocks of 64 KiB or more
/// are mapped on their own. On a head unit the footprint matters more than the
/// microseconds this costs: the daemon bench's peak RSS after load went from
/// 50.4 to about 48 MB. Other C libraries keep their defaults.
#[allow(unsafe_code)] // mallopt(3): the one unsafe call in the crate.
pub fn return_freed_memory_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, under the allocator's own
    // lock; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

pub async fn run(engine: Arc<Engine>, config: &Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    let socket = config.socket_path();
    let unix = bind_unix(&socket, &config.api.socket_group)?;
    // Before any loop registers and makes its ticker.
    daemon::systemd::prepare_heartbeats(engine.heartbeats());
    let tracker = TaskTracker::new();
    let served = serve_api(&engine, config, unix, &tracker, &shutdown).await?;
    let fleet = start_fleet_updates(&engine, config, &tracker, &shutdown)?;
    let uplink = start_uplink(&engine, config, fleet, &shutdown)?;
    tracing::info!(socket = %socket.display(), "API listening");
    eprintln!("edge-agent: serving on {}", socket.display());
    // The models and the knowledge base were loaded before `run`, and the
    // socket is bound: requests are answered from here on.
    let watchdog = crate::watchdog::start(&engine, socket.clone(), &tracker, &shutdown);
    daemon::systemd::notify_ready(&format!(
        "answering on {}{}",
        socket.display(),
        if watchdog.is_some() { ", watchdog on" } else { "" }
    ));
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        daemon::systemd::notify_stopping();
    });
    drain(served, Duration::from_millis(config.api.shutdown_grace_ms), &shutdown).await;
    stop_uplink(uplink).await;
    tracker.close();
    if tokio::time::timeout(Duration::from_millis(500), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(tasks = tracker.len(), "background answers still running at exit");
    }
    let _ = std::fs::remove_file(&socket);
    tracing::info!("API stopped");
    Ok(())
}

/// The API on the Unix socket, and on loopback TCP when configured: resolves
/// when every listener has stopped.
async fn serve_api(
    engine: &Arc<Engine>,
    config: &Config,
    unix: UnixListener,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<impl std::future::Future<Output = ()>, ServeError> {
    let app = api::router(engine.clone(), &config.api, tracker.clone(), shutdown.clone());
    let limits = crate::listener::Limits {
        max_connections: config.api.max_connections,
        max_per_client: config.api.max_connections_per_client,
        header_timeout: Duration::from_millis(config.api.header_timeout_ms),
    };
    let refused = engine.metrics.connections_refused.clone();
    let unix_server = crate::listener::serve(unix, app.clone(), limits, refused.clone(), shutdown.clone());
    let tcp_server = if config.api.tcp.is_empty() {
        None
    } else {
        let listener = TcpListener::bind(&config.api.tcp)
            .await
            .map_err(|source| ServeError::Listen {
                addr: config.api.tcp.clone(),
                source,
            })?;
        tracing::info!(addr = %config.api.tcp, "API listening on loopback TCP");
        Some(crate::listener::serve(listener, app, limits, refused, shutdown.clone()))
    };
    Ok(async move {
        match tcp_server {
            Some(tcp) => {
                tokio::join!(unix_server, tcp);
            }
            None => unix_server.await,
        }
    })
}

/// Waits until the listeners stop after `shutdown`, or the grace period ends.
async fn drain(served: impl std::future::Future<Output = ()>, grace: Duration, shutdown: &CancellationToken) {
    let deadline = async {
        shutdown.cancelled().await;
        let started = Instant::now();
        tokio::time::sleep(grace).await;
        started
    };
    tokio::select! {
        () = served => {}
        started = deadline => {
            tracing::warn!(waited_ms = started.elapsed().as_millis() as u64, "requests still open at the end of the grace period: closing them");
        }
    }
}

/// The fleet updater and the uplink's part in it, when a channel is followed
/// and there is an uplink to hear it on.
fn start_fleet_updates(
    engine: &Arc<Engine>,
    config: &Config,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Option<crate::uplink::FleetLink>, ServeError> {
    if config.fleet.channel.is_empty() {
        return Ok(None);
    }
    if config.uplink.host.is_empty() {
        tracing::warn!(channel = %config.fleet.channel, "fleet.channel is set but there is no uplink: no fleet updates");
        return Ok(None);
    }
    let updater = match crate::fleet::updater_for(config, engine.assistant().live_knowledge()) {
        Ok(updater) => Arc::new(updater),
        Err(error) => {
            // The assistant still answers; only updates wait for a fixed config.
            tracing::error!(%error, "fleet updates are off: the updater cannot start");
            return Ok(None);
        }
    };
    updater.watched_by(engine.heartbeats().register("knowledge"));
    updater.clean_up();
    let (notices, received) = tokio::sync::mpsc::channel(16);
    let topic = protocol::Topics::new(&config.uplink.topic_prefix)?.fleet_knowledge(&config.fleet.channel)?;
    let link = crate::uplink::FleetLink {
        topic,
        notices,
        reports: updater.reports(),
        shadow: config.fleet.report == crate::config::FleetReport::Shadow,
        report_every: Duration::from_secs(config.fleet.report_interval_seconds.max(1)),
    };
    let retry = (
        Duration::from_millis(config.fleet.retry_initial_ms),
        Duration::from_millis(config.fleet.retry_max_ms),
    );
    tracker.spawn(crate::fleet::run(updater, received, retry, shutdown.clone()));
    tracing::info!(channel = %config.fleet.channel, "following fleet knowledge updates");
    Ok(Some(link))
}

type UplinkTask = tokio::task::JoinHandle<Result<(), UplinkError>>;

fn start_uplink(
    engine: &Arc<Engine>,
    config: &Config,
    fleet: Option<crate::uplink::FleetLink>,
    shutdown: &CancellationToken,
) -> Result<Option<UplinkTask>, ServeError> {
    if config.uplink.host.is_empty() {
        tracing::info!("no uplink configured: escalations wait in the outbox");
        return Ok(None);
    }
    let connector = crate::uplink::RumqttcConnector::new(&config.uplink)?;
    Ok(Some(tokio::spawn(crate::uplink::run(
        connector,
        engine.clone(),
        config.uplink.clone(),
        fleet,
        shutdown.clone(),
    ))))
}

async fn stop_uplink(uplink: Option<UplinkTask>) {
    let Some(uplink) = uplink else { return };
    match tokio::time::timeout(Duration::from_millis(500), uplink).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::error!(%error, "the uplink stopped with an error"),
        Ok(Err(error)) => tracing::error!(%error, "the uplink task failed"),
        Err(_) => tracing::warn!("the uplink did not stop in time"),
    }
}

/// Binds the socket with mode 0660 (and the HMI's group, when configured). A stale
/// socket file from a crashed run is replaced; a live one is an error.
fn bind_unix(path: &Path, group: &str) -> Result<UnixListener, ServeError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(socket_error("create", parent))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(socket_error("remove the stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(socket_error("listen on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(socket_error("set the mode of", path))?;
    if !group.is_empty() {
        let gid = group_id(group)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(socket_error("give api.socket_group", path))?;
    }
    Ok(listener)
}

/// `api.socket_group` names a group this system has (empty: none is set).
pub fn check_socket_group(group: &str) -> Result<(), ServeError> {
    if !group.is_empty() {
        group_id(group)?;
    }
    Ok(())
}

/// A group name (or number) to its gid, from /etc/group.
fn group_id(group: &str) -> Result<u32, ServeError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(ServeError::Groups)?;
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| ServeError::NoGroup(group.to_string()))
}
