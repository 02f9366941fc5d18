//! The car's own state in SQLite: conversation history and the escalations waiting
//! for the uplink.
//!
//! Nothing a driver asks for is dropped: an escalation is written here (status
//! `pending`) before the driver is told it will be handled, and leaves this table
//! only when the cloud has acknowledged it (the uplink's job; a broker's PUBACK
//! only marks it sent) or when withdrawn by the driver.
//! History is pruned by age and by count per conversation, on every write.
//!
//! The driver's answer never depends on this disk: when the database cannot be
//! written (full, read-only, damaged) a write fails without failing the turn,
//! escalations go to the preallocated [`spool`], and [`Store::health`] says why.
//! A database damaged at start is replaced ([`recovery`]), its readable rows
//! carried over. The folder is private (0700) and every file in it 0600.

mod recovery;
pub mod spool;

use std::cell::RefCell;
use std::path::Path;

pub use recovery::{Recovered, KEPT_AT_MOST};
use spool::{is_spool_id, Spool, SpoolError, SpooledEscalation};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {location}: {source}")]
    Sqlite {
        location: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Schema(#[from] knowledge::KnowledgeError),
    #[error(
        "the outbox is full ({max} messages) of emergencies, which are never dropped: this request cannot be queued"
    )]
    QueueFull { max: usize },
    #[error("neither the state database nor the spool could take the escalation: {0}")]
    Spool(#[from] SpoolError),
    #[error("state file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the state folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE turns (
        conversation_id TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        at              TEXT NOT NULL,      -- RFC 3339
        at_unix         INTEGER NOT NULL,
        record          TEXT NOT NULL,      -- the turn, as JSON
        PRIMARY KEY (conversation_id, seq)
    ) STRICT;
    CREATE INDEX turns_by_age ON turns (at_unix);
    CREATE TABLE escalations (
        id              INTEGER PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        priority        TEXT NOT NULL CHECK (priority IN ('urgent', 'normal')),
        intent          TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'cancelled')),
        payload         TEXT NOT NULL       -- what the uplink will send, as JSON
    ) STRICT;
    CREATE INDEX escalations_pending ON escalations (status, priority, id);
"#,
    // 2: the outbox: an id for receivers to deduplicate on, and a time to live.
    r#"
    ALTER TABLE escalations ADD COLUMN message_id TEXT;
    ALTER TABLE escalations ADD COLUMN created_unix INTEGER;
    ALTER TABLE escalations ADD COLUMN ttl_seconds INTEGER;   -- NULL: never expires
    "#,
    // 3: the queue's length kept by triggers, so checking the maximum costs no scan.
    r#"
    CREATE TABLE outbox_length (n INTEGER NOT NULL) STRICT;
    INSERT INTO outbox_length SELECT count(*) FROM escalations WHERE status = 'pending';
    CREATE TRIGGER outbox_length_insert AFTER INSERT ON escalations WHEN NEW.status = 'pending'
        BEGIN UPDATE outbox_length SET n = n + 1; END;
    CREATE TRIGGER outbox_length_delete AFTER DELETE ON escalations WHEN OLD.status = 'pending'
        BEGIN UPDATE outbox_length SET n = n - 1; END;
    CREATE TRIGGER outbox_length_update AFTER UPDATE OF status ON escalations
        WHEN OLD.status = 'pending' AND NEW.status != 'pending'
        BEGIN UPDATE outbox_length SET n = n - 1; END;
    "#,
    // 4: what was delivered, so the cloud's answer finds its conversation (and
    // turn) after the row left the outbox. Pruned with the history.
    r#"
    CREATE TABLE delivered (
        message_id      TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        intent          TEXT NOT NULL,
        delivered_unix  INTEGER NOT NULL
    ) STRICT;
    "#,
    // 5: end-to-end acknowledgement. A row stays until the cloud acknowledges it;
    // `sent_unix` says when the broker last took it (the driver's "sent").
    r#"
    ALTER TABLE escalations ADD COLUMN sent_unix INTEGER;
    ALTER TABLE escalations ADD COLUMN created_unix_ms INTEGER;
    CREATE INDEX escalations_by_message ON escalations (message_id);
    ALTER TABLE delivered ADD COLUMN queued_unix_ms INTEGER;
    ALTER TABLE delivered ADD COLUMN acknowledged_unix_ms INTEGER;
    -- Acknowledged but not answered: asked again (same message id) now and then,
    -- since an answer can be lost with a broker that keeps nothing.
    ALTER TABLE delivered ADD COLUMN payload TEXT;
    ALTER TABLE delivered ADD COLUMN answered_unix INTEGER;
    ALTER TABLE delivered ADD COLUMN asked_unix_ms INTEGER;
    ALTER TABLE delivered ADD COLUMN asked_again INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX delivered_unanswered ON delivered (asked_unix_ms) WHERE answered_unix IS NULL;
    -- The cloud's messages already taken (their envelope ids), across restarts.
    CREATE TABLE responses_seen (
        message_id  TEXT PRIMARY KEY,
        seen_unix   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX responses_seen_by_age ON responses_seen (seen_unix);
    "#,
];

/// Before this instant the wall clock is not believed (a head unit that booted
/// with a wrong clock): nothing expires until it is right.
pub const PLAUSIBLE_CLOCK_AFTER_UNIX: i64 = 1_767_225_600; // 2026-01-01

/// How big the queue may grow and how long a request stays worth sending.
#[derive(Debug, Clone)]
pub struct QueuePolicy {
    pub max_queued: usize,
    /// Seconds an escalation of an intent stays worth sending; intents not listed
    /// use `default_ttl_seconds`. Emergencies never expire.
    pub ttl_seconds: std::collections::BTreeMap<String, u64>,
    pub default_ttl_seconds: u64,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            max_queued: 1000,
            ttl_seconds: Default::default(),
            default_ttl_seconds: 7 * 86_400,
        }
    }
}

/// An escalation that left the queue without being delivered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    pub id: i64,
    pub conversation_id: String,
    pub intent: String,
    pub reason: DropReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Its time to live passed before it could be sent.
    Expired,
    /// The queue was full and it was the oldest non-urgent message.
    Evicted,
    /// Larger than a publish may be, even with its history trimmed.
    TooLarge,
}

/// An escalation to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewEscalation<'a> {
    pub conversation_id: &'a str,
    pub priority: Priority,
    /// A contract label.
    pub intent: &'a str,
    /// What the uplink will send (already scrubbed by the privacy rules).
    pub payload: &'a serde_json::Value,
}

/// What queueing did.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub id: i64,
    pub message_id: uuid::Uuid,
    /// Messages evicted to make room (never an urgent one).
    pub evicted: Vec<Dropped>,
}

/// One turn as kept in history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub at: String,
    pub text: String,
    pub answer: String,
    pub intent: String,
    pub intent_confidence: f32,
    pub sentiment: String,
    pub sentiment_score: f32,
    pub route: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub escalation_id: Option<i64>,
    /// The cloud's answer to an earlier escalation of this conversation (its
    /// `intent` is the escalation's; `text` is empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_cloud: bool,
}

/// The wire's priority, stored as it is sent.
pub use protocol::Priority;

/// An escalation waiting for the uplink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEscalation {
    pub id: i64,
    /// What receivers deduplicate on (delivery is at least once).
    pub message_id: Option<uuid::Uuid>,
    pub conversation_id: String,
    pub created_at: String,
    pub priority: Priority,
    pub intent: String,
    pub payload: serde_json::Value,
}

/// An outbox row, named for the driver's status events.
#[derive(Debug, Clone, PartialEq)]
pub struct Outboxed {
    pub id: i64,
    pub conversation_id: String,
    pub intent: String,
}

/// How long and how much history is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub days: u32,
    pub max_turns_per_conversation: u32,
}

pub struct Store {
    conn: Connection,
    location: String,
    retention: Retention,
    /// Escalations the database could not take.
    spool: RefCell<Spool>,
    /// Why the database is in memory only (it could not be opened on disk).
    unavailable: Option<String>,
    /// The last write's failure, cleared by a write that works.
    write_error: RefCell<Option<String>>,
    /// The damaged database replaced at start.
    recovered: Option<Recovered>,
    failures: Option<prometheus_client::metrics::counter::Counter>,
}

/// How the state stands, for `/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateHealth {
    /// Writes reach the database on disk.
    pub writable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Escalations waiting in the spool.
    pub spooled: usize,
    /// The spool is a file (it survives a restart).
    pub spool_durable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Recovered>,
}

/// Creates `dir` (and its parents) private to the daemon's user, and makes an
/// existing one private, with the regular files an older install left open. A
/// mode that cannot be changed (a folder someone else owns) is logged, not fatal.
pub fn private_folder(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let make_private = |path: &Path, mode: u32| {
        if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), %error, "cannot make it private");
        }
    };
    if std::fs::metadata(dir)?.permissions().mode() & 0o777 != 0o700 {
        make_private(dir, 0o700);
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            make_private(&entry.path(), 0o600);
        }
    }
    Ok(())
}

/// Opens (creating when missing) a file readable and writable by its owner only,
/// and makes an existing one so.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("location", &self.location).finish()
    }
}

trait At<T> {
    fn at(self, location: &str) -> Result<T>;
}

impl<T> At<T> for std::result::Result<T, rusqlite::Error> {
    fn at(self, location: &str) -> Result<T> {
        self.map_err(|source| StoreError::Sqlite {
            location: location.to_string(),
            source,
        })
    }
}

impl Store {
    /// Opens the state database at `path`, with its spool beside it. A damaged
    /// database is replaced (its readable rows carried over); one that cannot be
    /// opened at all leaves the store in memory, degraded, rather than failing.
    pub fn open(path: &Path, retention: Retention) -> Result<Store> {
        let location = path.display().to_string();
        let folder = path.parent().map(private_folder).transpose();
        let spool = Spool::open(&path.with_extension("spool"));
        let opened = folder
            .map_err(|source| StoreError::Folder {
                path: path.parent().unwrap_or(path).display().to_string(),
                source,
            })
            .and_then(|_| open_on_disk(path, &location));
        let (conn, recovered, unavailable) = match opened {
            Ok((conn, recovered)) => (conn, recovered, None),
            Err(error @ StoreError::Schema(knowledge::KnowledgeError::SchemaTooNew { .. })) => return Err(error),
            Err(error) => {
                tracing::error!(%error, "the state database is unavailable: history is kept in memory, escalations in the spool");
                (
                    Connection::open_in_memory().at(":memory:")?,
                    None,
                    Some(error.to_string()),
                )
            }
        };
        let mut store = Store::with_connection(conn, &location, retention)?;
        store.spool = RefCell::new(spool);
        store.unavailable = unavailable;
        store.recovered = recovered;
        Ok(store)
    }

    pub fn in_memory(retention: Retention) -> Result<Store> {
        Store::with_connection(Connection::open_in_memory().at(":memory:")?, ":memory:", retention)
    }

    fn with_connection(mut conn: Connection, location: &str, retention: Retention) -> Result<Store> {
        knowledge::schema::apply_migrations(&mut conn, location, MIGRATIONS)?;
        Ok(Store {
            conn,
            location: location.to_string(),
            retention,
            spool: RefCell::new(Spool::in_memory()),
            unavailable: None,
            write_error: RefCell::new(None),
            recovered: None,
            failures: None,
        })
    }

    /// Counts every failed write in `counter` (the daemon's metric).
    pub fn count_failures_in(&mut self, counter: prometheus_client::metrics::counter::Counter) {
        self.failures = Some(counter);
    }

    /// Whether writes reach the disk, what stops them, and what waits in the spool.
    pub fn health(&self) -> StateHealth {
        let problem = self.unavailable.clone().or_else(|| self.write_error.borrow().clone());
        let spool = self.spool.borrow();
        StateHealth {
            writable: problem.is_none(),
            problem,
            spooled: spool.len(),
            spool_durable: spool.is_durable(),
            recovered: self.recovered.clone(),
        }
    }

    /// Notes how a write went: a failure is kept for health and counted.
    fn note<T>(&self, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => {
                self.write_error.borrow_mut().take();
            }
            Err(error @ StoreError::Sqlite { .. }) => {
                *self.write_error.borrow_mut() = Some(error.to_string());
                if let Some(failures) = &self.failures {
                    failures.inc();
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Appends a turn and applies the retention limits.
    pub fn record_turn(&self, conversation_id: &str, turn: &TurnRecord, now: jiff::Timestamp) -> Result<()> {
        self.note(self.append_turn(conversation_id, turn, now))
    }

    fn append_turn(&self, conversation_id: &str, turn: &TurnRecord, now: jiff::Timestamp) -> Result<()> {
        let record = serde_json::to_string(turn).expect("a turn serialises");
        let loc = &self.location;
        self.conn
            .execute(
                "INSERT INTO turns (conversation_id, seq, at, at_unix, record)
                 VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM turns WHERE conversation_id = ?1), ?2, ?3, ?4)",
                params![conversation_id, turn.at, now.as_second(), record],
            )
            .at(loc)?;
        let oldest = now.as_second() - i64::from(self.retention.days) * 86_400;
        self.conn
            .execute("DELETE FROM turns WHERE at_unix < ?1", [oldest])
            .at(loc)?;
        self.conn
            .execute(
                "DELETE FROM turns WHERE conversation_id = ?1 AND seq <=
                 (SELECT max(seq) FROM turns WHERE conversation_id = ?1) - ?2",
                params![conversation_id, self.retention.max_turns_per_conversation],
            )
            .at(loc)?;
        Ok(())
    }

    /// The conversation's turns, oldest first; empty when unknown.
    pub fn turns(&self, conversation_id: &str) -> Result<Vec<TurnRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record FROM turns WHERE conversation_id = ?1 ORDER BY seq")
            .at(&self.location)?;
        let rows = stmt
            .query_map([conversation_id], |r| r.get::<_, String>(0))
            .at(&self.location)?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.at(&self.location)?;
            match serde_json::from_str(&text) {
                Ok(turn) => out.push(turn),
                Err(e) => tracing::warn!(conversation_id, error = %e, "skipped an unreadable history row"),
            }
        }
        Ok(out)
    }

    /// Deletes a conversation's history. Its queued escalations stay queued: what
    /// the driver asked for is still delivered.
    pub fn forget(&self, conversation_id: &str) -> Result<usize> {
        self.conn
            .execute("DELETE FROM turns WHERE conversation_id = ?1", [conversation_id])
            .at(&self.location)
    }

    /// Deletes all history and every escalation not yet sent (a change of owner).
    pub fn forget_everything(&self) -> Result<()> {
        let mut spool = self.spool.borrow_mut();
        for slot in 0..spool::SLOTS {
            spool.remove(slot)?;
        }
        self.conn
            .execute_batch("DELETE FROM turns; DELETE FROM escalations;")
            .at(&self.location)
    }

    /// Queues an escalation, synced to disk before it returns: the driver is told
    /// it is queued only after it would survive a power cut. At the queue's
    /// maximum the oldest non-urgent message is evicted; an urgent one never is.
    /// When the database cannot take it, the spool does.
    pub fn queue_escalation(
        &self,
        new: &NewEscalation<'_>,
        now: jiff::Timestamp,
        policy: &QueuePolicy,
    ) -> Result<Queued> {
        if self.unavailable.is_none() {
            match self.note(self.queue_durably(new, now, policy)) {
                Err(StoreError::Sqlite { source, .. }) => {
                    tracing::error!(error = %source, "the state database cannot take an escalation: it goes to the spool");
                }
                other => return other,
            }
        }
        self.spool_escalation(new, now)
    }

    fn spool_escalation(&self, new: &NewEscalation<'_>, now: jiff::Timestamp) -> Result<Queued> {
        let message_id = uuid::Uuid::now_v7();
        let (id, evicted) = self.spool.borrow_mut().put(SpooledEscalation {
            message_id,
            conversation_id: new.conversation_id.to_string(),
            created_at: now.to_string(),
            priority: new.priority,
            intent: new.intent.to_string(),
            payload: new.payload.clone(),
        })?;
        tracing::warn!(id, %message_id, intent = new.intent, "escalation kept in the spool");
        Ok(Queued {
            id,
            message_id,
            evicted: evicted.into_iter().collect(),
        })
    }

    fn queue_durably(&self, new: &NewEscalation<'_>, now: jiff::Timestamp, policy: &QueuePolicy) -> Result<Queued> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .at(&self.location)?;
        let queued = self.queue_in_transaction(new, now, policy);
        // Back to NORMAL for history, whether or not queueing worked.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .at(&self.location)?;
        queued
    }

    fn queue_in_transaction(
        &self,
        new: &NewEscalation<'_>,
        now: jiff::Timestamp,
        policy: &QueuePolicy,
    ) -> Result<Queued> {
        let &NewEscalation {
            conversation_id,
            priority,
            intent,
            payload,
        } = new;
        let loc = &self.location;
        let tx = self.conn.unchecked_transaction().at(loc)?;
        let queued: i64 = tx.query_row("SELECT n FROM outbox_length", [], |r| r.get(0)).at(loc)?;
        let mut evicted = Vec::new();
        if queued as usize >= policy.max_queued {
            let oldest_normal: Option<(i64, String, String)> = tx
                .query_row(
                    "SELECT id, conversation_id, intent FROM escalations
                     WHERE status = 'pending' AND priority = 'normal' ORDER BY id LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .at(loc)?;
            match (oldest_normal, priority) {
                (Some((id, conversation_id, intent)), _) => {
                    tx.execute("DELETE FROM escalations WHERE id = ?1", [id]).at(loc)?;
                    evicted.push(Dropped {
                        id,
                        conversation_id,
                        intent,
                        reason: DropReason::Evicted,
                    });
                }
                // Full of emergencies: an emergency still goes in, nothing else does.
                (None, Priority::Urgent) => {}
                (None, Priority::Normal) => return Err(StoreError::QueueFull { max: policy.max_queued }),
            }
        }
        let ttl = match priority {
            Priority::Urgent => None,
            Priority::Normal => Some(
                policy
                    .ttl_seconds
                    .get(intent)
                    .copied()
                    .unwrap_or(policy.default_ttl_seconds) as i64,
            ),
        };
        let message_id = uuid::Uuid::now_v7();
        tx.execute(
            "INSERT INTO escalations (conversation_id, created_at, priority, intent, status, payload,
                                      message_id, created_unix, ttl_seconds, created_unix_ms)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8, ?9)",
            params![
                conversation_id,
                now.to_string(),
                priority.as_str(),
                intent,
                payload.to_string(),
                message_id.to_string(),
                now.as_second(),
                ttl,
                now.as_millisecond()
            ],
        )
        .at(loc)?;
        let id = tx.last_insert_rowid();
        tx.commit().at(loc)?;
        Ok(Queued {
            id,
            message_id,
            evicted,
        })
    }

    /// Removes the pending escalations whose time to live has passed, and returns
    /// them so the drivers can be told. Called at send time. The wall clock is
    /// trusted only when plausible and not behind a message's own time, so a head
    /// unit that booted with a wrong clock expires nothing.
    pub fn expire_due(&self, now: jiff::Timestamp) -> Result<Vec<Dropped>> {
        let now = now.as_second();
        if now < PLAUSIBLE_CLOCK_AFTER_UNIX {
            return Ok(Vec::new());
        }
        let loc = &self.location;
        let due: Vec<Dropped> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT id, conversation_id, intent FROM escalations
                     WHERE status = 'pending' AND ttl_seconds IS NOT NULL AND created_unix IS NOT NULL
                       AND created_unix <= ?1 AND created_unix + ttl_seconds < ?1",
                )
                .at(loc)?;
            let rows = stmt
                .query_map([now], |r| {
                    Ok(Dropped {
                        id: r.get(0)?,
                        conversation_id: r.get(1)?,
                        intent: r.get(2)?,
                        reason: DropReason::Expired,
                    })
                })
                .at(loc)?;
            rows.collect::<std::result::Result<_, _>>().at(loc)?
        };
        for dropped in &due {
            self.conn
                .execute("DELETE FROM escalations WHERE id = ?1", [dropped.id])
                .at(loc)?;
        }
        Ok(due)
    }

    /// Removes an escalation that can never be sent (too large even trimmed).
    pub fn refuse(&self, id: i64) -> Result<Option<Dropped>> {
        if let Some(slot) = is_spool_id(id) {
            let removed = self.spool.borrow_mut().remove(slot)?;
            return Ok(removed.map(|e| Dropped {
                id,
                conversation_id: e.conversation_id,
                intent: e.intent,
                reason: DropReason::TooLarge,
            }));
        }
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT conversation_id, intent FROM escalations WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .at(&self.location)?;
        self.delivered(id)?;
        Ok(row.map(|(conversation_id, intent)| Dropped {
            id,
            conversation_id,
            intent,
            reason: DropReason::TooLarge,
        }))
    }

    /// The broker took the escalation (its PUBACK): it is `sent`, and stays
    /// queued until the cloud acknowledges it. The escalation, when it is still
    /// queued.
    pub fn mark_sent(&self, id: i64, now: jiff::Timestamp) -> Result<Option<Outboxed>> {
        if let Some(slot) = is_spool_id(id) {
            return Ok(self.spool.borrow().get(slot).map(|e| Outboxed {
                id,
                conversation_id: e.conversation_id.clone(),
                intent: e.intent.clone(),
            }));
        }
        let loc = &self.location;
        self.conn
            .execute(
                "UPDATE escalations SET sent_unix = ?2 WHERE id = ?1 AND status = 'pending'",
                params![id, now.as_second()],
            )
            .at(loc)?;
        self.conn
            .query_row(
                "SELECT id, conversation_id, intent FROM escalations WHERE id = ?1 AND status = 'pending'",
                [id],
                row_to_outboxed,
            )
            .optional()
            .at(loc)
    }

    /// The cloud acknowledged an escalation: it leaves the outbox (kept in
    /// `delivered` so its answer finds its conversation). `None` when it had
    /// already left (a repeated acknowledgement).
    pub fn acknowledged(&self, message_id: &uuid::Uuid) -> Result<Option<Outboxed>> {
        if let Some((id, e)) = self.spool.borrow_mut().remove_message(message_id)? {
            self.delivered_from_spool(&e);
            return Ok(Some(Outboxed {
                id,
                conversation_id: e.conversation_id,
                intent: e.intent,
            }));
        }
        let row = self
            .conn
            .query_row(
                "SELECT id, conversation_id, intent FROM escalations WHERE message_id = ?1",
                [message_id.to_string()],
                row_to_outboxed,
            )
            .optional()
            .at(&self.location)?;
        if let Some(row) = &row {
            self.delivered(row.id)?;
        }
        Ok(row)
    }

    /// Records a spooled escalation the cloud acknowledged as delivered, so that
    /// its answer finds its conversation and is asked for again if it is lost.
    /// Best effort: the database may still be unwritable.
    fn delivered_from_spool(&self, e: &SpooledEscalation) {
        let now = jiff::Timestamp::now();
        let recorded = self.conn.execute(
            "INSERT OR IGNORE INTO delivered (message_id, conversation_id, intent, delivered_unix,
                                              acknowledged_unix_ms, payload, asked_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)",
            params![
                e.message_id.to_string(),
                e.conversation_id,
                e.intent,
                now.as_second(),
                now.as_millisecond(),
                e.payload.to_string()
            ],
        );
        if let Err(error) = recorded {
            tracing::debug!(%error, "a spooled escalation's delivery could not be recorded");
        }
    }

    /// Moves an escalation out of the outbox into `delivered`.
    fn delivered(&self, id: i64) -> Result<()> {
        let loc = &self.location;
        let now = jiff::Timestamp::now();
        let tx = self.conn.unchecked_transaction().at(loc)?;
        tx.execute(
            "INSERT OR REPLACE INTO delivered (message_id, conversation_id, intent, delivered_unix,
                                              queued_unix_ms, acknowledged_unix_ms, payload, asked_unix_ms)
             SELECT message_id, conversation_id, intent, ?2, created_unix_ms, ?3, payload, ?3 FROM escalations
             WHERE id = ?1 AND message_id IS NOT NULL",
            params![id, now.as_second(), now.as_millisecond()],
        )
        .at(loc)?;
        tx.execute("DELETE FROM escalations WHERE id = ?1", [id]).at(loc)?;
        tx.execute(
            "DELETE FROM delivered WHERE delivered_unix < ?1",
            [now.as_second() - i64::from(self.retention.days) * 86_400],
        )
        .at(loc)?;
        tx.commit().at(loc)
    }

    /// True the first time the cloud's message `message_id` is seen; false for a
    /// repeat (a redelivery after a restart, a stored reply sent again).
    pub fn first_sight(&self, message_id: &uuid::Uuid, now: jiff::Timestamp) -> Result<bool> {
        let loc = &self.location;
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO responses_seen (message_id, seen_unix) VALUES (?1, ?2)",
                params![message_id.to_string(), now.as_second()],
            )
            .at(loc)?;
        self.conn
            .execute(
                "DELETE FROM responses_seen WHERE seen_unix < ?1",
                [now.as_second() - i64::from(self.retention.days) * 86_400],
            )
            .at(loc)?;
        Ok(inserted == 1)
    }

    /// The cloud answered the escalation `message_id`: it is not asked again.
    pub fn answered(&self, message_id: &uuid::Uuid, now: jiff::Timestamp) -> Result<()> {
        self.conn
            .execute(
                "UPDATE delivered SET answered_unix = ?2 WHERE message_id = ?1 AND answered_unix IS NULL",
                params![message_id.to_string(), now.as_second()],
            )
            .at(&self.location)
            .map(drop)
    }

    /// Acknowledged escalations whose answer has not come `wait_ms` after they
    /// were last asked (the wait doubling each time, at most `max_times`), at
    /// most `limit`: they are asked again, and their time is reset.
    pub fn unanswered_due(
        &self,
        now: jiff::Timestamp,
        wait_ms: i64,
        max_times: u32,
        limit: usize,
    ) -> Result<Vec<PendingEscalation>> {
        let loc = &self.location;
        let now_ms = now.as_millisecond();
        let due: Vec<PendingEscalation> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT message_id, conversation_id, intent, payload FROM delivered
                     WHERE answered_unix IS NULL AND payload IS NOT NULL AND asked_again < ?3
                       AND asked_unix_ms + ?2 * (1 << asked_again) <= ?1
                     ORDER BY asked_unix_ms LIMIT ?4",
                )
                .at(loc)?;
            let rows = stmt
                .query_map(params![now_ms, wait_ms, max_times, limit as i64], |r| {
                    let payload: String = r.get(3)?;
                    let message_id: String = r.get(0)?;
                    Ok(PendingEscalation {
                        id: 0,
                        message_id: message_id.parse().ok(),
                        conversation_id: r.get(1)?,
                        created_at: String::new(),
                        priority: Priority::Normal,
                        intent: r.get(2)?,
                        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    })
                })
                .at(loc)?;
            rows.collect::<std::result::Result<_, _>>().at(loc)?
        };
        for row in &due {
            let id = row.message_id.map(|m| m.to_string()).unwrap_or_default();
            self.conn
                .execute(
                    "UPDATE delivered SET asked_unix_ms = ?2, asked_again = asked_again + 1 WHERE message_id = ?1",
                    params![id, now_ms],
                )
                .at(loc)?;
        }
        Ok(due)
    }

    /// The conversation and intent of a delivered escalation, by its message id.
    pub fn delivered_escalation(&self, message_id: &uuid::Uuid) -> Result<Option<(String, String)>> {
        self.conn
            .query_row(
                "SELECT conversation_id, intent FROM delivered WHERE message_id = ?1",
                [message_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .at(&self.location)
    }

    /// Whether the delivered escalation `message_id` has its answer recorded;
    /// `None` when no delivered row is kept for it.
    pub fn answer_recorded(&self, message_id: &uuid::Uuid) -> Result<Option<bool>> {
        self.conn
            .query_row(
                "SELECT answered_unix IS NOT NULL FROM delivered WHERE message_id = ?1",
                [message_id.to_string()],
                |r| r.get(0),
            )
            .optional()
            .at(&self.location)
    }

    /// Pending escalations, the spool's first, then urgent first, then oldest first.
    pub fn pending_escalations(&self) -> Result<Vec<PendingEscalation>> {
        let mut rows = self.spool.borrow().pending();
        rows.extend(self.next_pending(usize::MAX)?);
        Ok(rows)
    }

    /// How many escalations wait (those in the spool too; only those when the
    /// database cannot be read).
    pub fn pending_count(&self) -> Result<usize> {
        let spooled = self.spool.borrow().len();
        let n = self
            .conn
            .query_row("SELECT count(*) FROM escalations WHERE status = 'pending'", [], |r| {
                r.get::<_, i64>(0)
            })
            .at(&self.location);
        match n {
            Ok(n) => Ok(n as usize + spooled),
            Err(error) if spooled > 0 => {
                tracing::warn!(%error, "the outbox cannot be counted: only the spool is");
                Ok(spooled)
            }
            Err(error) => Err(error),
        }
    }

    /// The ids of the first `limit` pending escalations, in sending order (cheap:
    /// the index alone); the spool's first. With a database that cannot be read,
    /// the spool's alone.
    pub fn next_pending_ids(&self, limit: usize) -> Result<Vec<i64>> {
        let mut ids: Vec<i64> = self.spool.borrow().pending().iter().map(|r| r.id).take(limit).collect();
        match self.database_pending_ids(limit - ids.len()) {
            Ok(more) => ids.extend(more),
            Err(error) if !ids.is_empty() => {
                tracing::warn!(%error, "the outbox cannot be read: the spool goes alone");
            }
            Err(error) => return Err(error),
        }
        Ok(ids)
    }

    fn database_pending_ids(&self, limit: usize) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM escalations WHERE status = 'pending' ORDER BY priority = 'urgent' DESC, id LIMIT ?1",
            )
            .at(&self.location)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], |r| r.get(0)).at(&self.location)?;
        rows.collect::<std::result::Result<_, _>>().at(&self.location)
    }

    /// The rows of `ids` that are still pending, in sending order.
    pub fn pending_by_ids(&self, ids: &[i64]) -> Result<Vec<PendingEscalation>> {
        let mut out = Vec::with_capacity(ids.len());
        let spooled = self.spool.borrow().pending();
        for &id in ids {
            if is_spool_id(id).is_some() {
                out.extend(spooled.iter().find(|r| r.id == id).cloned());
                continue;
            }
            let row = self
                .conn
                .query_row(
                    "SELECT id, conversation_id, created_at, priority, intent, payload, message_id FROM escalations
                     WHERE id = ?1 AND status = 'pending'",
                    [id],
                    row_to_pending,
                )
                .optional()
                .at(&self.location)?;
            out.extend(row);
        }
        Ok(out)
    }

    /// The first `limit` pending escalations in sending order (urgent first, then
    /// oldest first): the uplink reads only its window, however long the queue.
    pub fn next_pending(&self, limit: usize) -> Result<Vec<PendingEscalation>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, conversation_id, created_at, priority, intent, payload, message_id FROM escalations
                 WHERE status = 'pending' ORDER BY priority = 'urgent' DESC, id LIMIT ?1",
            )
            .at(&self.location)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], row_to_pending).at(&self.location)?;
        rows.collect::<std::result::Result<_, _>>().at(&self.location)
    }

    /// Withdraws a pending, non-urgent escalation (the driver said cancel right
    /// after asking). Emergencies are never withdrawn. True when it was withdrawn.
    pub fn cancel_escalation(&self, id: i64) -> Result<bool> {
        if let Some(slot) = is_spool_id(id) {
            let mut spool = self.spool.borrow_mut();
            if spool.get(slot).is_none_or(|e| e.priority == Priority::Urgent) {
                return Ok(false);
            }
            return Ok(spool.remove(slot)?.is_some());
        }
        let changed = self
            .conn
            .execute(
                "UPDATE escalations SET status = 'cancelled'
                 WHERE id = ?1 AND status = 'pending' AND priority = 'normal'",
                [id],
            )
            .at(&self.location)?;
        Ok(changed == 1)
    }
}

/// The database on disk, created private, checked, and replaced when damaged.
fn open_on_disk(path: &Path, location: &str) -> Result<(Connection, Option<Recovered>)> {
    let file_error = |source| StoreError::File {
        path: location.to_string(),
        source,
    };
    private_file(path).map_err(file_error)?;
    for companion in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(companion);
        if Path::new(&name).exists() {
            private_file(Path::new(&name)).map_err(file_error)?;
        }
    }
    let reason = match recovery::check(path).at(location)? {
        recovery::Checked::Sound(conn) => return Ok((tuned(conn, location)?, None)),
        recovery::Checked::Damaged(reason) => reason,
    };
    let now = jiff::Timestamp::now();
    tracing::error!(location, %reason, "the state database is damaged: it is moved aside and a fresh one takes its place");
    let kept = recovery::move_aside(path, now).map_err(file_error)?;
    private_file(path).map_err(file_error)?;
    let mut conn = tuned(Connection::open(path).at(location)?, location)?;
    knowledge::schema::apply_migrations(&mut conn, location, MIGRATIONS)?;
    let rows_carried = recovery::carry_over(&kept, &conn);
    let kept_as = recovery::prune_kept(path, &kept).then(|| kept.display().to_string());
    let recovered = Recovered {
        at: now.to_string(),
        reason,
        kept_as,
        rows_carried,
    };
    tracing::error!(rows_carried, kept_as = ?recovered.kept_as, "the damaged state database was replaced; its readable rows were carried over");
    Ok((conn, Some(recovered)))
}

/// The connection settings of the state database.
fn tuned(conn: Connection, location: &str) -> Result<Connection> {
    conn.busy_timeout(std::time::Duration::from_secs(5)).at(location)?;
    conn.pragma_update(None, "journal_mode", "WAL").at(location)?;
    // NORMAL in WAL mode: history commits are not fsynced one by one (a power
    // cut may lose the last turns of history, never corrupt the file). An
    // escalation is written with FULL (see `queue_escalation`).
    conn.pragma_update(None, "synchronous", "NORMAL").at(location)?;
    Ok(conn)
}

fn row_to_outboxed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Outboxed> {
    Ok(Outboxed {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        intent: r.get(2)?,
    })
}

fn row_to_pending(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingEscalation> {
    let priority: String = r.get(3)?;
    let payload: String = r.get(5)?;
    let message_id: Option<String> = r.get(6)?;
    Ok(PendingEscalation {
        id: r.get(0)?,
        message_id: message_id.and_then(|m| m.parse().ok()),
        conversation_id: r.get(1)?,
        created_at: r.get(2)?,
        priority: if priority == "urgent" {
            Priority::Urgent
        } else {
            Priority::Normal
        },
        intent: r.get(4)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn queue(
        store: &Store,
        priority: Priority,
        intent: &str,
        payload: &serde_json::Value,
        now: jiff::Timestamp,
        policy: &QueuePolicy,
    ) -> Queued {
        let new = NewEscalation {
            conversation_id: "c",
            priority,
            intent,
            payload,
        };
        store.queue_escalation(&new, now, policy).unwrap()
    }

    #[test]
    fn the_queue_evicts_the_oldest_normal_message_and_never_an_urgent_one() {
        let store = Store::in_memory(Retention {
            days: 30,
            max_turns_per_conversation: 10,
        })
        .unwrap();
        let policy = QueuePolicy {
            max_queued: 3,
            ..QueuePolicy::default()
        };
        let now = at("2026-11-24T10:00:00Z");
        let payload = serde_json::json!({});
        let q = |priority, intent: &str| {
            store.queue_escalation(
                &NewEscalation {
                    conversation_id: "c",
                    priority,
                    intent,
                    payload: &payload,
                },
                now,
                &policy,
            )
        };
        q(Priority::Urgent, "emergency").unwrap();
        let first_normal = q(Priority::Normal, "book_service").unwrap();
        q(Priority::Normal, "traffic").unwrap();
        let full = q(Priority::Normal, "complaint").unwrap();
        assert_eq!(full.evicted.len(), 1);
        assert_eq!(full.evicted[0].id, first_normal.id, "the oldest normal goes");
        assert_eq!(full.evicted[0].reason, DropReason::Evicted);
        q(Priority::Urgent, "emergency").unwrap();
        q(Priority::Urgent, "emergency").unwrap();
        q(Priority::Urgent, "emergency").unwrap();
        let intents: Vec<String> = store
            .pending_escalations()
            .unwrap()
            .into_iter()
            .map(|p| p.intent)
            .collect();
        assert_eq!(
            intents,
            ["emergency", "emergency", "emergency", "emergency"],
            "urgent ones are never evicted"
        );
        assert!(matches!(
            q(Priority::Normal, "traffic"),
            Err(StoreError::QueueFull { max: 3 })
        ));
        assert!(
            q(Priority::Urgent, "emergency").unwrap().evicted.is_empty(),
            "an emergency still goes in"
        );
        let ids: std::collections::HashSet<_> = store
            .pending_escalations()
            .unwrap()
            .into_iter()
            .map(|p| p.message_id.unwrap())
            .collect();
        assert_eq!(ids.len(), 5, "every message has its own id");
    }

    #[test]
    fn expiry_follows_the_intents_ttl_and_distrusts_an_implausible_clock() {
        let store = Store::in_memory(Retention {
            days: 30,
            max_turns_per_conversation: 10,
        })
        .unwrap();
        let policy = QueuePolicy {
            ttl_seconds: [("traffic".to_string(), 600)].into(),
            ..QueuePolicy::default()
        };
        let then = at("2026-11-24T10:00:00Z");
        for (p, intent) in [
            (Priority::Normal, "traffic"),
            (Priority::Normal, "book_service"),
            (Priority::Urgent, "emergency"),
        ] {
            queue(&store, p, intent, &serde_json::json!({}), then, &policy);
        }
        assert!(store.expire_due(at("2026-11-24T10:09:00Z")).unwrap().is_empty());
        assert!(
            store.expire_due(at("1970-01-02T00:00:00Z")).unwrap().is_empty(),
            "a clock at 1970 expires nothing"
        );
        assert!(
            store.expire_due(at("2026-11-24T09:00:00Z")).unwrap().is_empty(),
            "nor one behind the message"
        );
        let expired = store.expire_due(at("2026-11-24T12:00:00Z")).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].intent.as_str(), expired[0].reason),
            ("traffic", DropReason::Expired)
        );
        let years_later = store.expire_due(at("2030-01-01T00:00:00Z")).unwrap();
        assert_eq!(years_later.len(), 1, "the booking after its week; never the emergency");
        assert_eq!(store.pending_escalations().unwrap()[0].intent, "emergency");
    }

    fn turn(text: &str) -> TurnRecord {
        TurnRecord {
            at: "2026-11-24T10:00:00Z".into(),
            text: text.into(),
            answer: "a".into(),
            intent: "greeting".into(),
            intent_confidence: 0.9,
            sentiment: "neutral".into(),
            sentiment_score: 0.0,
            route: "local".into(),
            sources: vec![],
            escalation_id: None,
            from_cloud: false,
        }
    }

    #[test]
    fn history_is_pruned_by_count_and_by_age() {
        let store = Store::in_memory(Retention {
            days: 30,
            max_turns_per_conversation: 3,
        })
        .unwrap();
        let now: jiff::Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        for i in 0..5 {
            store.record_turn("c1", &turn(&format!("t{i}")), now).unwrap();
        }
        let texts: Vec<String> = store.turns("c1").unwrap().into_iter().map(|t| t.text).collect();
        assert_eq!(texts, ["t2", "t3", "t4"]);
        let later = now + jiff::SignedDuration::from_hours(31 * 24);
        store.record_turn("c2", &turn("new"), later).unwrap();
        assert!(store.turns("c1").unwrap().is_empty(), "31 days old");
        assert_eq!(store.turns("c2").unwrap().len(), 1);
    }

    #[test]
    fn escalations_stay_pending_urgent_first_and_cancel_never_withdraws_an_emergency() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/edge.sqlite");
        let retention = Retention {
            days: 30,
            max_turns_per_conversation: 10,
        };
        let now = jiff::Timestamp::now();
        {
            let store = Store::open(&path, retention).unwrap();
            let policy = QueuePolicy::default();
            queue(
                &store,
                Priority::Normal,
                "book_service",
                &serde_json::json!({"a": 1}),
                now,
                &policy,
            );
            queue(
                &store,
                Priority::Urgent,
                "emergency",
                &serde_json::json!({}),
                now,
                &policy,
            );
        }
        // Reopened: nothing was lost.
        let store = Store::open(&path, retention).unwrap();
        let pending = store.pending_escalations().unwrap();
        assert_eq!(
            pending.iter().map(|p| p.intent.as_str()).collect::<Vec<_>>(),
            ["emergency", "book_service"]
        );
        assert_eq!(pending[1].payload["a"], 1);
        let (urgent, normal) = (pending[0].id, pending[1].id);
        assert!(
            !store.cancel_escalation(urgent).unwrap(),
            "an emergency is never withdrawn"
        );
        assert!(store.cancel_escalation(normal).unwrap());
        assert!(!store.cancel_escalation(normal).unwrap(), "already withdrawn");
        assert_eq!(store.pending_escalations().unwrap().len(), 1);
        store.forget("c").unwrap();
        assert_eq!(
            store.pending_escalations().unwrap().len(),
            1,
            "forgetting history keeps the queue"
        );
    }
}
