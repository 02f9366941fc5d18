//! Fleet knowledge updates on the car: a signed notice arrives on the channel's
//! retained topic, the payload is downloaded (resumably, over HTTPS), checked,
//! compiled into a new knowledge base beside the live one, and swapped in.
//!
//! What this module owns:
//! - the checks, in order: signature over the manifest's exact bytes (by a
//!   trusted, unrevoked key), channel, expiry, vehicle model and market, version
//!   above the high-water mark, then the payload's size and sha256, then that a
//!   delta fits the version the car has;
//! - the apply, atomic on the file system: the new base is written to a staging
//!   file (with its embeddings computed here, off the answering path), the live
//!   file is hard-linked as `previous`, and the staging file is renamed over the
//!   live one. A crash at any step leaves the old base or the new one, never a
//!   mix; the old one answers until the new one is open ([`LiveKnowledge`]);
//! - the fleet state (`fleet-state.json`, beside the base but not in it): the
//!   high-water mark, the version applied and when, and the last failure. A
//!   local `kb rollback` restores the previous file and leaves the high-water
//!   mark where it is, so a replayed old bundle is still refused.
//!
//! Steps of the apply carry named failure points ([`FAILPOINTS`]) for the crash
//! tests.

pub mod download;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use knowledge::bundle::{
    check_applicable, check_payload, Car, Manifest, Payload, PayloadKind, Refusal, SignedManifest, TrustedKeys,
};
use knowledge::{Embedder, KnowledgeBase, KnowledgeError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use download::{DownloadError, Downloader, Fetched};

use crate::failpoint;
use daemon::heartbeat::Heartbeat;

/// The knowledge base answers come from; an applied update replaces it whole.
pub type LiveKnowledge = Arc<ArcSwap<KnowledgeBase>>;

/// The apply's failure points, in order.
pub const FAILPOINTS: &[&str] = &[
    "apply:verified",
    "apply:staging-written",
    "apply:previous-kept",
    "apply:swapped",
    "apply:recorded",
];

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    // The reason is in the message, not a `source`: printed as a chain
    // (`{:#}`), it would otherwise be said twice.
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("download failed: {0}")]
    Download(DownloadError),
    #[error("the payload is {size} bytes, more than fleet.max_payload_bytes ({limit})")]
    TooLarge { size: u64, limit: u64 },
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("no previous knowledge version is kept: nothing to roll back to")]
    NoPrevious,
    #[error("the fleet state {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
}

impl From<Refusal> for UpdateError {
    fn from(refusal: Refusal) -> UpdateError {
        UpdateError::Refused(refusal)
    }
}

impl From<DownloadError> for UpdateError {
    fn from(error: DownloadError) -> UpdateError {
        UpdateError::Download(error)
    }
}

impl UpdateError {
    /// Worth trying again later (the network), as opposed to a verdict.
    pub fn is_transient(&self) -> bool {
        matches!(self, UpdateError::Download(_))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UpdateError + '_ {
    move |error| UpdateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Where the live base, its predecessor, the staging file, the state and the
/// downloads live: all beside the base, on one file system, so renames are atomic.
#[derive(Debug, Clone)]
pub struct KbFiles {
    pub current: PathBuf,
    pub previous: PathBuf,
    pub staging: PathBuf,
    pub state: PathBuf,
    pub downloads: PathBuf,
    /// The full content of the highest version applied (from its verified
    /// payload), to rebuild the base from if it is ever lost.
    pub kept: PathBuf,
}

impl KbFiles {
    pub fn beside(current: &Path) -> KbFiles {
        let dir = current.parent().unwrap_or(Path::new(".")).to_path_buf();
        KbFiles {
            current: current.to_path_buf(),
            previous: current.with_extension("previous.sqlite"),
            staging: current.with_extension("staging.sqlite"),
            state: dir.join("fleet-state.json"),
            downloads: dir.join("downloads"),
            kept: current.with_extension("applied.json"),
        }
    }

    /// Removes what a crash mid-apply may have left (a staging file is never
    /// live). Only the process that applies updates calls it: a `kb status` run
    /// beside the daemon must not pull a staging file from under its apply.
    pub fn clean_up(&self) {
        for stale in [self.staging.clone(), self.previous.with_extension("tmp")] {
            if stale.exists() {
                tracing::info!(path = %stale.display(), "removing a file left by an interrupted update");
                let _ = std::fs::remove_file(&stale);
            }
        }
    }
}

/// One failed update, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub version: Option<u64>,
    pub reason: String,
    pub at: jiff::Timestamp,
}

/// The car's fleet state: kept outside the knowledge base file, so that restoring
/// an older file (a rollback) never lowers the high-water mark.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// The highest bundle version ever applied.
    pub high_water: Option<u64>,
    /// The bundle version answering now (none: the shipped pack).
    pub current: Option<u64>,
    pub applied_at: Option<jiff::Timestamp>,
    /// The bundle version of the kept previous base (none: the shipped pack).
    pub previous: Option<u64>,
    pub last_failure: Option<Failure>,
    /// The kept copy of the highest version's content ([`KbFiles::kept`]).
    #[serde(default)]
    pub kept: Option<Kept>,
    /// A version whose content was lost (the base was rebuilt from the shipped
    /// pack and could not be restored): its notice is taken again.
    #[serde(default)]
    pub lost: Option<u64>,
}

/// Which version the kept copy holds, and its bytes' sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub version: u64,
    pub channel: String,
    pub sha256: String,
}

impl FleetState {
    pub fn load(path: &Path) -> Result<FleetState, UpdateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UpdateError::State {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FleetState::default()),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Written to a temporary file, synced, and renamed over the old state.
    pub fn save(&self, path: &Path) -> Result<(), UpdateError> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("the state serialises");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(&bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(path)
    }

    /// The version a notice must be above: the high-water mark, or just below it
    /// when that version's content was lost, so that it is applied again.
    pub fn applicable_above(&self) -> Option<u64> {
        match (self.high_water, self.lost) {
            (Some(high), Some(lost)) if lost == high && self.current != Some(high) => high.checked_sub(1),
            (high, _) => high,
        }
    }

    /// Brings the state in line with the base on disk: a crash between the swap
    /// and the state's write leaves a newer base than the state says.
    pub fn reconcile(&mut self, live_bundle: Option<u64>) -> bool {
        let before = self.clone();
        if live_bundle.is_some() && live_bundle > self.high_water {
            self.high_water = live_bundle;
        }
        if live_bundle != self.current {
            if live_bundle > self.current {
                self.previous = self.current;
                self.applied_at = Some(jiff::Timestamp::now());
            }
            self.current = live_bundle;
        }
        *self != before
    }
}

fn sync_dir(path: &Path) -> Result<(), UpdateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What the car reports about its knowledge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeReport {
    pub version: Option<u64>,
    pub applied_at: Option<jiff::Timestamp>,
    pub failure: Option<Failure>,
}

impl KnowledgeReport {
    /// The update a car publishes on its named shadow `knowledge`
    /// (`$aws/things/{thing}/shadow/name/knowledge/update`): the reported state.
    pub fn shadow_update(&self) -> serde_json::Value {
        serde_json::json!({ "state": { "reported": {
            "version": self.version,
            "applied_at": self.applied_at,
            "failure": self.failure.as_ref().map(|f| &f.reason),
            "failure_version": self.failure.as_ref().and_then(|f| f.version),
            "failure_at": self.failure.as_ref().map(|f| f.at),
        }}})
    }
}

impl From<&FleetState> for KnowledgeReport {
    fn from(s: &FleetState) -> Self {
        KnowledgeReport {
            version: s.current,
            applied_at: s.applied_at,
            failure: s.last_failure.clone(),
        }
    }
}

/// An update that went live.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub version: u64,
    pub articles: usize,
    pub content_hash: String,
    pub fetched: Option<Fetched>,
    pub apply_ms: u64,
}

/// What handling one notice came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied(Applied),
    /// This version is the one answering (a retained notice seen again).
    AlreadyApplied(u64),
    /// The rollout does not take this car now (not in the cohort, or paused).
    NotInRollout(u64),
}

/// Who the car is, for the checks.
#[derive(Debug, Clone)]
pub struct Identity {
    pub thing: String,
    pub car: Car,
}

/// Checks, downloads and applies bundles for one car.
pub struct Updater {
    files: KbFiles,
    identity: Identity,
    keys: TrustedKeys,
    embedder: Arc<dyn Embedder>,
    live: LiveKnowledge,
    state: Mutex<FleetState>,
    /// One apply at a time, even if a superseded attempt is still finishing.
    applying: Mutex<()>,
    downloader: Option<Downloader>,
    max_payload_bytes: u64,
    reports: watch::Sender<KnowledgeReport>,
    /// The watchdog's view of this loop, when the daemon runs one.
    heartbeat: std::sync::OnceLock<Heartbeat>,
    /// Refusals are logged (the daemon), or left to the command that prints them.
    log_refusals: std::sync::atomic::AtomicBool,
}

/// How long one apply (embedding every article of a full bundle on the car) may
/// take before the watchdog counts the updater as wedged. 10,000 articles take
/// about 3 s on a desktop core; a head unit is allowed a hundred times that.
pub const APPLY_ALLOWANCE: Duration = Duration::from_secs(300);

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("files", &self.files)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What [`Updater::new`] needs besides the live base.
pub struct UpdaterConfig {
    pub files: KbFiles,
    pub identity: Identity,
    pub keys: TrustedKeys,
    pub downloader: Option<Downloader>,
    pub max_payload_bytes: u64,
}

impl Updater {
    /// Reads the fleet state and reconciles it with the live base.
    pub fn new(
        config: UpdaterConfig,
        embedder: Arc<dyn Embedder>,
        live: LiveKnowledge,
    ) -> Result<Updater, UpdateError> {
        let mut state = match FleetState::load(&config.files.state) {
            Ok(state) => state,
            Err(error) => {
                // The base itself records its bundle version: the mark is rebuilt
                // from it rather than trusted to a file that cannot be read.
                tracing::error!(%error, "the fleet state is unreadable: rebuilding it from the knowledge base");
                FleetState::default()
            }
        };
        if state.reconcile(live.load().info().bundle_version) {
            tracing::info!(?state, "fleet state brought in line with the knowledge base");
            state.save(&config.files.state)?;
        }
        let (reports, _) = watch::channel(KnowledgeReport::from(&state));
        Ok(Updater {
            files: config.files,
            identity: config.identity,
            keys: config.keys,
            embedder,
            live,
            state: Mutex::new(state),
            applying: Mutex::new(()),
            downloader: config.downloader,
            max_payload_bytes: config.max_payload_bytes,
            reports,
            heartbeat: std::sync::OnceLock::new(),
            log_refusals: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// A command that prints the refusal itself: the updater records it but does
    /// not log it too (the reason is said once).
    pub fn leave_refusals_to_the_caller(&self) {
        self.log_refusals.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Removes what an interrupted apply left; for the one process that applies.
    pub fn clean_up(&self) {
        let _one = self.applying.lock().expect("apply lock");
        self.files.clean_up();
    }

    pub fn state(&self) -> FleetState {
        self.state.lock().expect("fleet state").clone()
    }

    pub fn live(&self) -> &LiveKnowledge {
        &self.live
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Follows what the car reports.
    pub fn reports(&self) -> watch::Receiver<KnowledgeReport> {
        self.reports.subscribe()
    }

    /// Verifies a notice and checks that it is for this car and newer.
    pub fn check(&self, notice: &protocol::KnowledgeManifestNotice) -> Result<Manifest, Refusal> {
        let manifest = self.keys.verify(&SignedManifest {
            manifest: notice.manifest.clone(),
            signature: notice.signature.clone(),
            key_id: notice.key_id.clone(),
        })?;
        let state = self.state();
        check_applicable(
            &manifest,
            &self.identity.car,
            state.applicable_above(),
            state.current,
            jiff::Timestamp::now(),
        )?;
        Ok(manifest)
    }

    /// Lets the watchdog see this updater: [`run`] beats `heartbeat` while it
    /// waits, and each apply is a task with [`APPLY_ALLOWANCE`]. Set once.
    pub fn watched_by(&self, heartbeat: Heartbeat) {
        let _ = self.heartbeat.set(heartbeat);
    }

    /// Handles one notice: check, download (one attempt), apply. A verdict
    /// (anything but a network failure) is recorded as the last failure.
    pub async fn handle(self: &Arc<Self>, notice: &protocol::KnowledgeManifestNotice) -> Result<Outcome, UpdateError> {
        let manifest = match self.check(notice) {
            Ok(m) => m,
            Err(Refusal::NotNewer { version, .. }) if Some(version) == self.state().current => {
                return Ok(Outcome::AlreadyApplied(version));
            }
            Err(refusal) => return Err(self.failed(notice_version(notice), refusal.into())),
        };
        if !notice.rollout.includes(&self.identity.thing) {
            return Ok(Outcome::NotInRollout(manifest.version));
        }
        if manifest.payload_size > self.max_payload_bytes {
            let error = UpdateError::TooLarge {
                size: manifest.payload_size,
                limit: self.max_payload_bytes,
            };
            return Err(self.failed(Some(manifest.version), error));
        }
        let Some(downloader) = &self.downloader else {
            return Err(UpdateError::Download(DownloadError::Http(
                "no downloader configured".into(),
            )));
        };
        let part = self.files.downloads.join(format!("{}.part", manifest.payload_sha256));
        let fetched = downloader
            .fetch(&manifest.payload_url, &part, manifest.payload_size)
            .await?;
        let payload = tokio::fs::read(&part).await.map_err(io(&part))?;
        // A corrupt download is not kept: the next attempt starts over.
        if let Err(refusal) = check_payload(&manifest, &payload) {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(self.failed(Some(manifest.version), refusal.into()));
        }
        let this = self.clone();
        let _task = self.heartbeat.get().map(|h| h.task_for(APPLY_ALLOWANCE));
        let applied = tokio::task::spawn_blocking(move || this.apply_checked(&manifest, &payload))
            .await
            .map_err(|e| UpdateError::Io {
                path: self.files.current.clone(),
                error: std::io::Error::other(e.to_string()),
            })??;
        let _ = tokio::fs::remove_file(&part).await;
        Ok(Outcome::Applied(Applied {
            fetched: Some(fetched),
            ..applied
        }))
    }

    /// Applies a notice with a payload already at hand (`kb apply`; a USB stick).
    pub fn apply_local(
        &self,
        notice: &protocol::KnowledgeManifestNotice,
        payload: &[u8],
    ) -> Result<Applied, UpdateError> {
        let manifest = self
            .check(notice)
            .map_err(|r| self.failed(notice_version(notice), r.into()))?;
        self.apply_checked(&manifest, payload)
    }

    /// The apply itself, for a manifest already verified: blocking.
    fn apply_checked(&self, manifest: &Manifest, payload: &[u8]) -> Result<Applied, UpdateError> {
        let _one = self.applying.lock().expect("apply lock");
        let started = std::time::Instant::now();
        let result = self.apply_steps(manifest, payload);
        match result {
            Ok(mut applied) => {
                applied.apply_ms = started.elapsed().as_millis() as u64;
                tracing::info!(
                    version = applied.version, articles = applied.articles, ms = applied.apply_ms,
                    publisher = %manifest.publisher, "knowledge update applied"
                );
                Ok(applied)
            }
            Err(error) => {
                let _ = std::fs::remove_file(&self.files.staging);
                Err(self.failed(Some(manifest.version), error))
            }
        }
    }

    fn apply_steps(&self, manifest: &Manifest, payload: &[u8]) -> Result<Applied, UpdateError> {
        let files = &self.files;
        check_payload(manifest, payload)?;
        // Re-checked under the lock: another apply may have raised the mark.
        {
            let state = self.state();
            check_applicable(
                manifest,
                &self.identity.car,
                state.applicable_above(),
                state.current,
                jiff::Timestamp::now(),
            )?;
        }
        let live = self.live.load_full();
        let base_articles = match manifest.payload {
            PayloadKind::Delta { .. } => live.articles()?,
            PayloadKind::Full => Vec::new(),
        };
        let (meta, articles) = Payload::parse(payload)?.resolve(manifest, &base_articles)?;
        failpoint::hit("apply:verified");

        let _ = std::fs::remove_file(&files.staging);
        knowledge::pack::write_base(
            &files.staging,
            &meta,
            &articles,
            self.embedder.as_ref(),
            &[
                ("bundle_version", manifest.version.to_string()),
                ("bundle_channel", manifest.channel.clone()),
            ],
        )?;
        // It must open before it may go live.
        let staged = KnowledgeBase::open(&files.staging, self.embedder.clone())?;
        let content_hash = staged.content_hash()?;
        drop(staged);
        failpoint::hit("apply:staging-written");

        if files.current.exists() {
            let tmp = files.previous.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            std::fs::hard_link(&files.current, &tmp).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &files.previous).map_err(io(&files.previous))?;
        }
        failpoint::hit("apply:previous-kept");

        std::fs::rename(&files.staging, &files.current).map_err(io(&files.current))?;
        sync_dir(&files.current)?;
        failpoint::hit("apply:swapped");
        let kept = keep_content(files, manifest, Payload::full(meta, articles))
            .inspect_err(|error| tracing::warn!(%error, "no copy of the applied content is kept: a lost base falls back to the shipped pack"))
            .ok();

        let previous = live.info().bundle_version;
        let report = {
            let mut state = self.state.lock().expect("fleet state");
            state.high_water = Some(manifest.version.max(state.high_water.unwrap_or(0)));
            state.previous = previous;
            state.current = Some(manifest.version);
            state.applied_at = Some(jiff::Timestamp::now());
            state.last_failure = None;
            if kept.is_some() {
                state.kept = kept;
            }
            if state.lost <= Some(manifest.version) {
                state.lost = None;
            }
            state.save(&files.state)?;
            KnowledgeReport::from(&*state)
        };
        failpoint::hit("apply:recorded");

        let next = KnowledgeBase::open(&files.current, self.embedder.clone())?;
        let articles = next.info().articles;
        self.live.store(Arc::new(next));
        self.reports.send_replace(report);
        Ok(Applied {
            version: manifest.version,
            articles,
            content_hash,
            fetched: None,
            apply_ms: 0,
        })
    }

    /// Records a verdict as the last failure (logged once per version and reason)
    /// and hands the error back.
    fn failed(&self, version: Option<u64>, error: UpdateError) -> UpdateError {
        if error.is_transient() {
            return error;
        }
        let reason = error.to_string();
        let report = {
            let mut state = self.state.lock().expect("fleet state");
            let repeat = state
                .last_failure
                .as_ref()
                .is_some_and(|f| f.version == version && f.reason == reason);
            let shown = knowledge::bundle::version_text(version);
            if repeat {
                tracing::debug!(version = %shown, %reason, "knowledge update refused again");
                return error;
            }
            if self.log_refusals.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(version = %shown, %reason, "knowledge update not applied");
            }
            state.last_failure = Some(Failure {
                version,
                reason,
                at: jiff::Timestamp::now(),
            });
            if let Err(e) = state.save(&self.files.state) {
                tracing::error!(error = %e, "cannot record the failure in the fleet state");
            }
            KnowledgeReport::from(&*state)
        };
        self.reports.send_replace(report);
        error
    }
}

fn notice_version(notice: &protocol::KnowledgeManifestNotice) -> Option<u64> {
    #[derive(Deserialize)]
    struct Version {
        version: u64,
    }
    serde_json::from_str::<Version>(&notice.manifest)
        .ok()
        .map(|v| v.version)
}

/// The updater for `config`'s car, over the live base (whose embedder computes the
/// new base's vectors). The downloader is set up when a channel is followed.
pub fn updater_for(config: &crate::config::Config, live: LiveKnowledge) -> Result<Updater, UpdateError> {
    let fleet = &config.fleet;
    let downloader = if fleet.channel.is_empty() {
        None
    } else {
        Some(Downloader::new(
            &fleet.ca_file,
            Duration::from_secs(fleet.idle_timeout_seconds),
        )?)
    };
    let embedder = live.load().embedder();
    Updater::new(
        UpdaterConfig {
            files: KbFiles::beside(&config.knowledge_db()),
            identity: Identity {
                thing: config.uplink.thing_name.clone(),
                car: Car {
                    channel: fleet.channel.clone(),
                    model: config.vehicle.model.clone(),
                    market: config.vehicle.market.clone(),
                },
            },
            keys: fleet.keys.clone(),
            downloader,
            max_payload_bytes: fleet.max_payload_bytes,
        },
        embedder,
        live,
    )
}

/// Writes the applied content (whole, whatever the payload was) beside the
/// base, synced, for [`restore_kept`].
fn keep_content(files: &KbFiles, manifest: &Manifest, content: Payload) -> Result<Kept, UpdateError> {
    let bytes = content.to_bytes();
    let tmp = files.kept.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &files.kept).map_err(io(&files.kept))?;
    sync_dir(&files.kept)?;
    Ok(Kept {
        version: manifest.version,
        channel: manifest.channel.clone(),
        sha256: knowledge::bundle::sha256_hex(&bytes),
    })
}

/// The base was lost (missing or unusable) and is about to be rebuilt: when a
/// fleet version was applied, puts that version back from the kept copy and
/// returns it. Without a usable copy it records the gap (reported as the last
/// failure) so that the version's notice is taken again, and returns `None`: the
/// caller builds the shipped pack meanwhile.
pub fn restore_kept(files: &KbFiles, embedder: Arc<dyn Embedder>) -> Result<Option<u64>, UpdateError> {
    let mut state = FleetState::load(&files.state).unwrap_or_default();
    let Some(high) = state.high_water else { return Ok(None) };
    let restored = restore_version(files, state.kept.as_ref().filter(|k| k.version == high), embedder);
    let at = jiff::Timestamp::now();
    let version = match restored {
        Ok(()) => {
            tracing::warn!(
                version = high,
                "the knowledge base was lost: restored from the kept copy of the applied version"
            );
            state.current = Some(high);
            state.lost = None;
            Some(high)
        }
        Err(reason) => {
            let reason = format!(
                "the knowledge base was lost and version {high} could not be restored ({reason}): answering from the shipped pack until it is applied again"
            );
            tracing::error!(%reason);
            state.previous = state.current;
            state.current = None;
            state.lost = Some(high);
            state.last_failure = Some(Failure {
                version: Some(high),
                reason,
                at,
            });
            None
        }
    };
    state.save(&files.state)?;
    Ok(version)
}

fn restore_version(files: &KbFiles, kept: Option<&Kept>, embedder: Arc<dyn Embedder>) -> Result<(), String> {
    let kept = kept.ok_or("no copy of it is kept")?;
    let bytes = std::fs::read(&files.kept).map_err(|e| format!("{}: {e}", files.kept.display()))?;
    if knowledge::bundle::sha256_hex(&bytes) != kept.sha256 {
        return Err("the kept copy is damaged".to_string());
    }
    let payload = Payload::parse(&bytes).map_err(|e| e.to_string())?;
    let knowledge::bundle::Content::Full { articles } = payload.content else {
        return Err("the kept copy is not whole content".to_string());
    };
    let _ = std::fs::remove_file(&files.staging);
    knowledge::pack::write_base(
        &files.staging,
        &payload.pack,
        &articles,
        embedder.as_ref(),
        &[
            ("bundle_version", kept.version.to_string()),
            ("bundle_channel", kept.channel.clone()),
        ],
    )
    .map_err(|e| e.to_string())?;
    KnowledgeBase::open(&files.staging, embedder).map_err(|e| e.to_string())?;
    std::fs::rename(&files.staging, &files.current).map_err(|e| e.to_string())?;
    sync_dir(&files.current).map_err(|e| e.to_string())
}

/// Restores the kept previous base (`edge-agent kb rollback`). The high-water
/// mark stays: fleet ops move the fleet forward with a new version.
pub fn rollback(files: &KbFiles) -> Result<FleetState, UpdateError> {
    if !files.previous.is_file() {
        return Err(UpdateError::NoPrevious);
    }
    let mut state = FleetState::load(&files.state)?;
    std::fs::rename(&files.previous, &files.current).map_err(io(&files.current))?;
    sync_dir(&files.current)?;
    state.current = state.previous.take();
    state.applied_at = Some(jiff::Timestamp::now());
    state.save(&files.state)?;
    Ok(state)
}

/// Runs the updater until `shutdown`: takes notices as they come (a newer one
/// replaces the one in progress), retries downloads with a jittered backoff, and
/// resumes them where they stopped.
pub async fn run(
    updater: Arc<Updater>,
    mut notices: mpsc::Receiver<Vec<u8>>,
    retry: (Duration, Duration),
    shutdown: CancellationToken,
) {
    let mut backoff = daemon::backoff::Backoff::new(
        retry.0,
        retry.1.max(retry.0),
        u64::from(std::process::id()) ^ jiff::Timestamp::now().as_nanosecond() as u64,
    );
    let mut pending: Option<protocol::KnowledgeManifestNotice> = None;
    // The uplink has gone: finish what is in hand, and listen no more.
    let mut closed = false;
    // While it waits, and while a download runs (each of its steps is bounded by
    // the idle timeout), the loop beats; an apply is a task of its own.
    let mut ticker = updater
        .heartbeat
        .get()
        .map_or_else(|| tokio::time::interval(Duration::from_secs(3600)), Heartbeat::ticker);
    let beat = || {
        if let Some(heartbeat) = updater.heartbeat.get() {
            heartbeat.beat();
        }
    };
    loop {
        let notice = match pending.take() {
            Some(n) => n,
            None => tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    beat();
                    continue;
                }
                bytes = notices.recv() => match bytes {
                    None => return,
                    Some(bytes) => match parse_notice(&bytes) {
                        Some(n) => n,
                        None => continue,
                    },
                },
            },
        };
        let outcome = {
            let handling = updater.handle(&notice);
            tokio::pin!(handling);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => beat(),
                    outcome = &mut handling => break Some(outcome),
                    bytes = notices.recv(), if !closed => {
                        // A newer notice (a widened or paused rollout, a refreshed URL)
                        // replaces this one; a download resumes where it stopped.
                        closed = bytes.is_none();
                        pending = bytes.as_deref().and_then(parse_notice).or(Some(notice.clone()));
                        break None;
                    }
                }
            }
        };
        let Some(outcome) = outcome else { continue };
        match outcome {
            Ok(outcome) => log_outcome(&outcome, &mut backoff),
            Err(error) if error.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "knowledge download interrupted: it resumes");
                let retry_at = tokio::time::Instant::now() + delay;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = ticker.tick() => {
                            beat();
                            continue;
                        }
                        _ = tokio::time::sleep_until(retry_at) => pending = Some(notice),
                        bytes = notices.recv(), if !closed => {
                            closed = bytes.is_none();
                            pending = bytes.as_deref().and_then(parse_notice).or(Some(notice));
                        }
                    }
                    break;
                }
            }
            Err(_) => {} // recorded and reported by the updater
        }
    }
}

fn log_outcome(outcome: &Outcome, backoff: &mut daemon::backoff::Backoff) {
    match outcome {
        Outcome::Applied(applied) => {
            backoff.reset();
            tracing::info!(version = applied.version, fetched = ?applied.fetched, "knowledge is now version {}", applied.version);
        }
        Outcome::AlreadyApplied(version) => tracing::debug!(version, "knowledge notice already applied"),
        Outcome::NotInRollout(version) => {
            tracing::info!(version, "knowledge update not for this car yet (rollout stage)");
        }
    }
}

fn parse_notice(bytes: &[u8]) -> Option<protocol::KnowledgeManifestNotice> {
    if bytes.is_empty() {
        // A cleared retained message: nothing on the channel.
        return None;
    }
    match protocol::decode(bytes) {
        Ok(envelope) => match envelope.body {
            protocol::Body::KnowledgeManifest(notice) => Some(notice),
            other => {
                tracing::warn!(kind = ?std::mem::discriminant(&other), "not a knowledge notice on the fleet topic");
                None
            }
        },
        Err(error) => {
            tracing::warn!(%error, "unreadable message on the fleet topic");
            None
        }
    }
}
