//! The SQLite implementation of every store: one file in WAL mode, one connection
//! per process behind a mutex (every call is a few microseconds). Conditional
//! writes are SQL `WHERE` clauses and unique constraints, which is what a
//! DynamoDB implementation would express as condition expressions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use super::*;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE escalations (
    message_id TEXT PRIMARY KEY,
    thing TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    owner TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    payload BLOB NOT NULL,
    handled_at TEXT,
    day TEXT,
    outcome TEXT
);
CREATE INDEX escalations_open ON escalations (lease_until) WHERE handled_at IS NULL;
CREATE INDEX escalations_day ON escalations (day) WHERE handled_at IS NOT NULL;
CREATE TABLE turns (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    thing TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    at TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE profiles (thing TEXT PRIMARY KEY, profile TEXT NOT NULL);
CREATE TABLE appointments (
    appointment_id TEXT PRIMARY KEY,
    thing TEXT NOT NULL,
    dealer TEXT NOT NULL,
    service TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE UNIQUE INDEX appointments_slot ON appointments (dealer, starts_at) WHERE status != 'cancelled';
CREATE INDEX appointments_thing ON appointments (thing);
CREATE TABLE recalls (
    campaign TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    year_from INTEGER NOT NULL,
    year_to INTEGER NOT NULL,
    summary TEXT NOT NULL,
    remedy TEXT NOT NULL
);
INSERT INTO recalls VALUES
    ('24V-118', 'Voyager', 2024, 2025, 'The rear seat-belt pretensioner connector may not be fully seated.', 'A dealer checks and reseats the connector, free of charge, in about 30 minutes.'),
    ('25V-031', 'Voyager', 2025, 2025, 'The charge-port door actuator software may leave the door unlatched.', 'A software update at a dealer or over the air, free of charge.');
CREATE TABLE handoffs (
    handoff_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    thing TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    urgent INTEGER NOT NULL,
    state TEXT NOT NULL,
    agent TEXT,
    created_at TEXT NOT NULL,
    taken_at TEXT,
    closed_at TEXT,
    estimated_wait_seconds INTEGER NOT NULL,
    utterance TEXT NOT NULL,
    last_status_at TEXT
);
CREATE INDEX handoffs_state ON handoffs (state, created_at);
CREATE TABLE outbound (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    thing TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    response TEXT NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0,
    delivered_at INTEGER
);
CREATE INDEX outbound_pending ON outbound (seq) WHERE delivered_at IS NULL;
CREATE TABLE analytics_batches (message_id TEXT PRIMARY KEY, day TEXT NOT NULL);
CREATE TABLE edge_counters (
    day TEXT NOT NULL,
    counter TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (day, counter)
);
"#,
    r#"
CREATE TABLE knowledge_releases (
    channel TEXT NOT NULL,
    version INTEGER NOT NULL,
    notice TEXT NOT NULL,
    published_at TEXT NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (channel, version)
) WITHOUT ROWID;
CREATE TABLE car_knowledge (
    thing TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    reported_at INTEGER NOT NULL
);
CREATE TABLE fleet_audit (
    seq INTEGER PRIMARY KEY,
    entry TEXT NOT NULL
);
"#,
    // 3: the reply as published (its bytes, so a re-delivery has the same id).
    r#"
ALTER TABLE escalations ADD COLUMN reply BLOB;
"#,
    // 4: production recalls come only from fleet ops (`cloud-bridge recalls`):
    // the two fictional campaigns migration 1 seeded are removed (the demo
    // seeds its own).
    r#"
DELETE FROM recalls WHERE campaign IN ('24V-118', '25V-031');
"#,
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Stops the checkpointer when the store is dropped.
    _checkpointer: Checkpointer,
}

/// Copies the WAL into the database from its own connection and thread, so that
/// no writer pays for a checkpoint while it holds the store (an automatic one
/// stalls a commit, and every task waiting on the store, for milliseconds). It
/// runs often, so that each pass copies little.
struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(100);
    /// WAL frames (4 KiB pages) beyond which a pass also restarts the log.
    const RESTART_AT_FRAMES: i64 = 16_384;

    /// Copies what it can without waiting. A WAL that never stops growing (the
    /// writers never pause long enough for a passive pass to reach its end) is
    /// then restarted: new writers wait while the few frames left are copied.
    fn pass(conn: &Connection) -> rusqlite::Result<()> {
        let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))?;
        if frames > Self::RESTART_AT_FRAMES {
            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    fn start(path: &Path) -> StoreResult<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(1))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Self::EVERY) {
                    if let Err(error) = Self::pass(&conn) {
                        tracing::warn!(%error, "WAL checkpoint failed; the next one retries");
                    }
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { stop })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn parse_ts(text: &str) -> StoreResult<jiff::Timestamp> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("timestamp `{text}`: {e}")))
}

fn json_column<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store records serialise")
}

impl SqliteStore {
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        knowledge::schema::apply_migrations(&mut conn, &path.display().to_string(), MIGRATIONS)?;
        // Checkpoints run in the background (see `Checkpointer`), never in a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.pragma_update(None, "cache_size", -16_000)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            _checkpointer: Checkpointer::start(path)?,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("store mutex")
    }
}

impl DedupeStore for SqliteStore {
    fn claim_many(&self, claims: &[NewClaim], owner: &str, lease_ms: i64) -> StoreResult<Vec<Claim>> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut found = Vec::with_capacity(claims.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO escalations (message_id, thing, received_at, owner, lease_until, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (message_id) DO NOTHING",
            )?;
            for c in claims {
                let inserted = insert.execute(params![c.message_id, c.thing, now, owner, now + lease_ms, c.payload])?;
                found.push(if inserted == 1 { Claim::New } else { Claim::Duplicate });
            }
        }
        tx.commit()?;
        Ok(found)
    }

    fn complete_many(&self, completed: &[Completed]) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for Completed { outcome, turns, reply } in completed {
            let day = outcome
                .handled_at
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .date()
                .to_string();
            tx.prepare_cached(
                "UPDATE escalations SET handled_at = ?2, day = ?3, outcome = ?4, reply = ?5 WHERE message_id = ?1",
            )?
            .execute(params![
                outcome.message_id,
                outcome.handled_at.to_string(),
                day,
                to_json(outcome),
                reply
            ])?;
            for (turn, usage) in turns {
                append_turn(&tx, &outcome.conversation_id, &outcome.thing, turn, *usage)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn reply(&self, message_id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT reply FROM escalations WHERE message_id = ?1 AND handled_at IS NOT NULL",
                [message_id],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    fn take_over_stale(&self, owner: &str, lease_ms: i64, limit: usize) -> StoreResult<Vec<Vec<u8>>> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let stale: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx.prepare(
                "SELECT message_id, payload FROM escalations WHERE handled_at IS NULL AND lease_until < ?1
                 ORDER BY received_at LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut taken = Vec::new();
        for (id, payload) in stale {
            let changed = tx.execute(
                "UPDATE escalations SET owner = ?2, lease_until = ?3
                 WHERE message_id = ?1 AND handled_at IS NULL AND lease_until < ?4",
                params![id, owner, now + lease_ms, now],
            )?;
            if changed == 1 {
                taken.push(payload);
            }
        }
        tx.commit()?;
        Ok(taken)
    }
}

fn append_turn(
    conn: &Connection,
    conversation_id: &str,
    thing: &str,
    turn: &ConversationTurn,
    usage: Usage,
) -> StoreResult<()> {
    let role = match turn.role {
        Role::Driver => "driver",
        Role::Assistant => "assistant",
        Role::Agent => "agent",
    };
    conn.prepare_cached(
        "INSERT INTO turns (conversation_id, seq, thing, role, text, at, input_tokens, output_tokens, cost_usd)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE conversation_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        conversation_id,
        thing,
        role,
        turn.text,
        turn.at.to_string(),
        usage.input_tokens as i64,
        usage.output_tokens as i64,
        usage.cost_usd
    ])?;
    Ok(())
}

impl ConversationStore for SqliteStore {
    fn append(&self, conversation_id: &str, thing: &str, turn: &ConversationTurn, usage: Usage) -> StoreResult<()> {
        append_turn(&self.conn(), conversation_id, thing, turn, usage)
    }

    fn recent(&self, conversation_id: &str, limit: usize) -> StoreResult<Vec<ConversationTurn>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT role, text, at FROM turns WHERE conversation_id = ?1 ORDER BY seq DESC LIMIT ?2")?;
        let rows = stmt.query_map(params![conversation_id, limit as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut turns = Vec::new();
        for row in rows {
            let (role, text, at) = row?;
            let role = match role.as_str() {
                "driver" => Role::Driver,
                "agent" => Role::Agent,
                _ => Role::Assistant,
            };
            turns.push(ConversationTurn {
                role,
                text,
                at: parse_ts(&at)?,
            });
        }
        turns.reverse();
        Ok(turns)
    }

    fn usage(&self, conversation_id: &str) -> StoreResult<Usage> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0)
             FROM turns WHERE conversation_id = ?1",
            [conversation_id],
            |r| {
                Ok(Usage {
                    input_tokens: r.get::<_, i64>(0)? as u64,
                    output_tokens: r.get::<_, i64>(1)? as u64,
                    cost_usd: r.get(2)?,
                })
            },
        )?)
    }
}

impl ProfileStore for SqliteStore {
    fn get(&self, thing: &str) -> StoreResult<Option<Profile>> {
        let text: Option<String> = self
            .conn()
            .prepare_cached("SELECT profile FROM profiles WHERE thing = ?1")?
            .query_row([thing], |r| r.get(0))
            .optional()?;
        text.map(|t| json_column(&t)).transpose()
    }

    fn put(&self, profile: &Profile) -> StoreResult<()> {
        self.conn().execute(
            "INSERT INTO profiles (thing, profile) VALUES (?1, ?2)
             ON CONFLICT (thing) DO UPDATE SET profile = excluded.profile",
            params![profile.thing, to_json(profile)],
        )?;
        Ok(())
    }
}

fn appointment_status(text: &str) -> AppointmentStatus {
    match text {
        "confirmed" => AppointmentStatus::Confirmed,
        "cancelled" => AppointmentStatus::Cancelled,
        _ => AppointmentStatus::Held,
    }
}

fn status_text(status: AppointmentStatus) -> &'static str {
    match status {
        AppointmentStatus::Held => "held",
        AppointmentStatus::Confirmed => "confirmed",
        AppointmentStatus::Cancelled => "cancelled",
    }
}

fn appointment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn appointment_from(row: (String, String, String, String, String, String)) -> StoreResult<Appointment> {
    let (appointment_id, thing, dealer, service, starts_at, status) = row;
    Ok(Appointment {
        appointment_id,
        thing,
        dealer,
        service,
        starts_at: parse_ts(&starts_at)?,
        status: appointment_status(&status),
    })
}

const APPOINTMENT_COLUMNS: &str = "appointment_id, thing, dealer, service, starts_at, status";

impl AppointmentStore for SqliteStore {
    fn taken(&self, dealer: &str, from: jiff::Timestamp, to: jiff::Timestamp) -> StoreResult<Vec<jiff::Timestamp>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT starts_at FROM appointments WHERE dealer = ?1 AND status != 'cancelled'
             AND starts_at >= ?2 AND starts_at < ?3",
        )?;
        let rows = stmt.query_map(params![dealer, from.to_string(), to.to_string()], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|r| parse_ts(&r?)).collect()
    }

    fn hold(&self, a: &Appointment) -> StoreResult<()> {
        let result = self.conn().execute(
            &format!("INSERT INTO appointments ({APPOINTMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                a.appointment_id,
                a.thing,
                a.dealer,
                a.service,
                a.starts_at.to_string(),
                status_text(a.status)
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => Err(
                StoreError::Conflict(format!("{} at {} is already booked", a.dealer, a.starts_at)),
            ),
            Err(e) => Err(e.into()),
        }
    }

    fn confirm(&self, appointment_id: &str, thing: &str) -> StoreResult<Appointment> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE appointments SET status = 'confirmed' WHERE appointment_id = ?1 AND thing = ?2 AND status = 'held'",
            params![appointment_id, thing],
        )?;
        let row = conn
            .query_row(
                &format!("SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE appointment_id = ?1 AND thing = ?2"),
                params![appointment_id, thing],
                appointment_row,
            )
            .optional()?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!(
                "no appointment {appointment_id} for this car"
            )));
        };
        let appointment = appointment_from(row)?;
        if changed == 0 && appointment.status != AppointmentStatus::Confirmed {
            return Err(StoreError::Conflict(format!(
                "appointment {appointment_id} is {}",
                status_text(appointment.status)
            )));
        }
        Ok(appointment)
    }

    fn by_thing(&self, thing: &str) -> StoreResult<Vec<Appointment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE thing = ?1 ORDER BY starts_at"
        ))?;
        let rows = stmt.query_map([thing], appointment_row)?;
        rows.map(|r| appointment_from(r?)).collect()
    }

    fn put_recall(&self, recall: &Recall) -> StoreResult<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO recalls (campaign, model, year_from, year_to, summary, remedy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                recall.campaign,
                recall.model,
                recall.years.0,
                recall.years.1,
                recall.summary,
                recall.remedy
            ],
        )?;
        Ok(())
    }

    fn recalls(&self, model: &str, year: u16) -> StoreResult<Vec<Recall>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT campaign, model, year_from, year_to, summary, remedy FROM recalls
             WHERE model = ?1 AND year_from <= ?2 AND year_to >= ?2 ORDER BY campaign",
        )?;
        let rows = stmt.query_map(params![model, year], |r| {
            Ok(Recall {
                campaign: r.get(0)?,
                model: r.get(1)?,
                years: (r.get(2)?, r.get(3)?),
                summary: r.get(4)?,
                remedy: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const HANDOFF_COLUMNS: &str = "handoff_id, message_id, thing, conversation_id, reason, urgent, state, agent, \
     created_at, taken_at, closed_at, estimated_wait_seconds, utterance";

fn handoff_state(text: &str) -> HandoffState {
    match text {
        "assigned" => HandoffState::Assigned,
        "closed" => HandoffState::Closed,
        _ => HandoffState::Queued,
    }
}

fn handoff_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Handoff>> {
    let created: String = r.get(8)?;
    let taken: Option<String> = r.get(9)?;
    let closed: Option<String> = r.get(10)?;
    let handoff = Handoff {
        handoff_id: r.get(0)?,
        message_id: r.get(1)?,
        thing: r.get(2)?,
        conversation_id: r.get(3)?,
        reason: r.get(4)?,
        urgent: r.get(5)?,
        state: handoff_state(&r.get::<_, String>(6)?),
        agent: r.get(7)?,
        created_at: jiff::Timestamp::UNIX_EPOCH,
        taken_at: None,
        closed_at: None,
        estimated_wait_seconds: r.get(11)?,
        utterance: r.get(12)?,
    };
    Ok((|| {
        let mut h = handoff;
        h.created_at = parse_ts(&created)?;
        h.taken_at = taken.as_deref().map(parse_ts).transpose()?;
        h.closed_at = closed.as_deref().map(parse_ts).transpose()?;
        Ok(h)
    })())
}

impl SqliteStore {
    fn handoffs_where(&self, clause: &str) -> StoreResult<Vec<Handoff>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {HANDOFF_COLUMNS} FROM handoffs {clause}"))?;
        let rows = stmt.query_map([], handoff_from)?;
        rows.map(|r| r?).collect()
    }
}

impl HandoffStore for SqliteStore {
    fn open(&self, h: &Handoff) -> StoreResult<()> {
        self.conn().execute(
            &format!(
                "INSERT INTO handoffs ({HANDOFF_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (handoff_id) DO NOTHING"
            ),
            params![
                h.handoff_id,
                h.message_id,
                h.thing,
                h.conversation_id,
                h.reason,
                h.urgent,
                h.state.as_str(),
                h.agent,
                h.created_at.to_string(),
                h.taken_at.map(|t| t.to_string()),
                h.closed_at.map(|t| t.to_string()),
                h.estimated_wait_seconds,
                h.utterance
            ],
        )?;
        Ok(())
    }

    fn get(&self, handoff_id: &str) -> StoreResult<Option<Handoff>> {
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!("SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE handoff_id = ?1"),
                [handoff_id],
                handoff_from,
            )
            .optional()?;
        found.transpose()
    }

    fn list(&self, all: bool) -> StoreResult<Vec<Handoff>> {
        let filter = if all { "" } else { "WHERE state != 'closed'" };
        self.handoffs_where(&format!(
            "{filter} ORDER BY CASE state WHEN 'queued' THEN 0 WHEN 'assigned' THEN 1 ELSE 2 END, urgent DESC, created_at"
        ))
    }

    fn queued(&self) -> StoreResult<Vec<Handoff>> {
        self.handoffs_where("WHERE state = 'queued' ORDER BY urgent DESC, created_at")
    }

    fn transition(
        &self,
        handoff_id: &str,
        from: HandoffState,
        to: HandoffState,
        agent: Option<&str>,
        at: jiff::Timestamp,
    ) -> StoreResult<Handoff> {
        let column = match to {
            HandoffState::Assigned => "taken_at",
            HandoffState::Closed => "closed_at",
            HandoffState::Queued => "last_status_at",
        };
        let changed = self.conn().execute(
            &format!(
                "UPDATE handoffs SET state = ?3, agent = COALESCE(?4, agent), {column} = ?5
                 WHERE handoff_id = ?1 AND state = ?2"
            ),
            params![handoff_id, from.as_str(), to.as_str(), agent, at.to_string()],
        )?;
        let found = HandoffStore::get(self, handoff_id)?
            .ok_or_else(|| StoreError::NotFound(format!("no handoff {handoff_id}")))?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "handoff {handoff_id} is {}, not {}",
                found.state.as_str(),
                from.as_str()
            )));
        }
        Ok(found)
    }

    fn touch_status(
        &self,
        handoff_id: &str,
        previous: Option<jiff::Timestamp>,
        at: jiff::Timestamp,
    ) -> StoreResult<bool> {
        let changed = self.conn().execute(
            "UPDATE handoffs SET last_status_at = ?3
             WHERE handoff_id = ?1 AND COALESCE(last_status_at, '') = COALESCE(?2, '')",
            params![handoff_id, previous.map(|p| p.to_string()), at.to_string()],
        )?;
        Ok(changed == 1)
    }

    fn last_status(&self, handoff_id: &str) -> StoreResult<Option<jiff::Timestamp>> {
        let text: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT last_status_at FROM handoffs WHERE handoff_id = ?1",
                [handoff_id],
                |r| r.get(0),
            )
            .optional()?;
        text.flatten().as_deref().map(parse_ts).transpose()
    }

    fn enqueue(&self, thing: &str, conversation_id: &str, response: &protocol::Response) -> StoreResult<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO outbound (thing, conversation_id, response) VALUES (?1, ?2, ?3)",
            params![thing, conversation_id, to_json(response)],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn lease_outbound(&self, owner: &str, lease_ms: i64, limit: usize) -> StoreResult<Vec<OutboundMessage>> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let rows: Vec<(i64, String, String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT seq, thing, conversation_id, response FROM outbound
                 WHERE delivered_at IS NULL AND lease_until < ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut leased = Vec::new();
        for (seq, thing, conversation_id, response) in rows {
            let changed = tx.execute(
                "UPDATE outbound SET lease_owner = ?2, lease_until = ?3
                 WHERE seq = ?1 AND delivered_at IS NULL AND lease_until < ?4",
                params![seq, owner, now + lease_ms, now],
            )?;
            if changed == 1 {
                leased.push(OutboundMessage {
                    seq,
                    thing,
                    conversation_id,
                    response: json_column(&response)?,
                });
            }
        }
        tx.commit()?;
        Ok(leased)
    }

    fn delivered(&self, seq: i64) -> StoreResult<()> {
        self.conn().execute(
            "UPDATE outbound SET delivered_at = ?2 WHERE seq = ?1",
            params![seq, now_ms()],
        )?;
        Ok(())
    }
}

impl AnalyticsStore for SqliteStore {
    fn record_batch(&self, message_id: &str, day: &str, counters: &BTreeMap<String, u64>) -> StoreResult<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let fresh = tx.execute(
            "INSERT INTO analytics_batches (message_id, day) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![message_id, day],
        )? == 1;
        if fresh {
            let mut stmt = tx.prepare(
                "INSERT INTO edge_counters (day, counter, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (day, counter) DO UPDATE SET value = value + excluded.value",
            )?;
            for (counter, value) in counters {
                stmt.execute(params![day, counter, *value as i64])?;
            }
        }
        tx.commit()?;
        Ok(fresh)
    }

    fn report(&self, days: u32, today: jiff::civil::Date) -> StoreResult<Vec<DayReport>> {
        let conn = self.conn();
        (0..days)
            .rev()
            .map(|back| {
                let day = today
                    .checked_sub(jiff::Span::new().days(i64::from(back)))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                day_report(&conn, &day.to_string())
            })
            .collect()
    }
}

/// One day's report. The cars count every turn (escalated ones too); the
/// escalations alone are the fallback when no car's counters arrived that day.
fn day_report(conn: &Connection, day: &str) -> StoreResult<DayReport> {
    let mut report = DayReport {
        day: day.to_string(),
        ..Default::default()
    };
    let escalated = tally_escalations(conn, day, &mut report)?;
    let edge = tally_edge_counters(conn, day, &mut report)?;
    if report.escalations > 0 {
        report.mean_sentiment = Some(escalated.sentiment_sum / report.escalations as f64);
    }
    let (neg, all) = if edge.sentiments > 0 {
        (edge.negative, edge.sentiments)
    } else {
        (escalated.negative, report.escalations)
    };
    if all > 0 {
        report.negative_share = Some(neg as f64 / all as f64);
    }
    let intents = if edge.intents.is_empty() {
        escalated.intents
    } else {
        edge.intents
    };
    let mut top: Vec<(String, u64)> = intents.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    report.top_intents = top;
    let waits = handoff_waits(conn, day, &mut report)?;
    if !waits.is_empty() {
        report.mean_wait_seconds = Some(waits.iter().sum::<f64>() / waits.len() as f64);
        report.max_wait_seconds = waits.iter().copied().reduce(f64::max);
    }
    Ok(report)
}

/// Intents and feelings counted over a day.
#[derive(Default)]
struct Tally {
    intents: BTreeMap<String, u64>,
    sentiment_sum: f64,
    negative: u64,
    /// Turns with a sentiment counted (the cars' counters).
    sentiments: u64,
}

/// The day's handled escalations: their count, corrections and token use go in
/// the report; their intents and feelings come back.
fn tally_escalations(conn: &Connection, day: &str, report: &mut DayReport) -> StoreResult<Tally> {
    let mut tally = Tally::default();
    let mut stmt = conn.prepare_cached("SELECT outcome FROM escalations WHERE day = ?1 AND handled_at IS NOT NULL")?;
    let rows = stmt.query_map([day], |r| r.get::<_, String>(0))?;
    for row in rows {
        let outcome: Outcome = json_column(&row?)?;
        report.escalations += 1;
        *tally.intents.entry(outcome.intent.clone()).or_default() += 1;
        tally.sentiment_sum += f64::from(outcome.sentiment_score);
        tally.negative += u64::from(outcome.sentiment == "negative");
        report.corrections += u64::from(outcome.correction.is_some());
        report.input_tokens += outcome.usage.input_tokens;
        report.output_tokens += outcome.usage.output_tokens;
        report.cost_usd += outcome.usage.cost_usd;
    }
    Ok(tally)
}

/// The cars' counters for the day: turns by handling go in the report; intents
/// and feelings come back.
fn tally_edge_counters(conn: &Connection, day: &str, report: &mut DayReport) -> StoreResult<Tally> {
    let mut tally = Tally::default();
    let mut stmt = conn.prepare_cached("SELECT counter, value FROM edge_counters WHERE day = ?1")?;
    let rows = stmt.query_map([day], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
    for row in rows {
        let (counter, value) = row?;
        if let Some(intent) = counter.strip_prefix("intent.") {
            *tally.intents.entry(intent.to_string()).or_default() += value;
        } else if let Some(handling) = counter.strip_prefix("handling.") {
            report.edge_turns += value;
            match handling {
                "local" => report.edge_local += value,
                "escalated" => report.edge_escalated += value,
                _ => {}
            }
        } else if let Some(sentiment) = counter.strip_prefix("sentiment.") {
            tally.sentiments += value;
            if sentiment == "negative" {
                tally.negative += value;
            }
        }
    }
    Ok(tally)
}

/// The day's handoffs counted in the report; how long each taken one waited,
/// in seconds.
fn handoff_waits(conn: &Connection, day: &str, report: &mut DayReport) -> StoreResult<Vec<f64>> {
    let mut stmt =
        conn.prepare_cached("SELECT created_at, taken_at FROM handoffs WHERE substr(created_at, 1, 10) = ?1")?;
    let rows = stmt.query_map([day], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
    let mut waits = Vec::new();
    for row in rows {
        let (created, taken) = row?;
        report.handoffs += 1;
        if let Some(taken) = taken {
            let wait = parse_ts(&taken)?.duration_since(parse_ts(&created)?);
            waits.push(wait.as_secs_f64());
        }
    }
    Ok(waits)
}

impl FleetStore for SqliteStore {
    fn put_release(&self, release: &Release) -> StoreResult<()> {
        let conn = self.conn();
        // One content per version: a second put may change the rollout or
        // refresh the manifest, never what the cars get.
        let existing: Option<String> = conn
            .query_row(
                "SELECT notice FROM knowledge_releases WHERE channel = ?1 AND version = ?2",
                params![release.channel, release.version as i64],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(existing) = existing {
            // A refreshed manifest (a new presigned URL, a later expiry) is fine;
            // other content under the same version is not.
            let existing: protocol::KnowledgeManifestNotice = json_column(&existing)?;
            let payload = |notice: &protocol::KnowledgeManifestNotice| -> StoreResult<serde_json::Value> {
                let manifest: serde_json::Value = json_column(&notice.manifest)?;
                Ok(serde_json::json!([
                    manifest["payload_sha256"],
                    manifest["payload"],
                    manifest["targets"]
                ]))
            };
            if payload(&existing)? != payload(&release.notice)? {
                return Err(StoreError::Conflict(format!(
                    "{} version {} was already published with other content: publish a new version",
                    release.channel, release.version
                )));
            }
        }
        conn.execute(
            "INSERT INTO knowledge_releases (channel, version, notice, published_at, published_by)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (channel, version) DO UPDATE SET notice = excluded.notice",
            params![
                release.channel,
                release.version as i64,
                to_json(&release.notice),
                release.published_at.to_string(),
                release.published_by
            ],
        )?;
        Ok(())
    }

    fn release(&self, channel: &str, version: u64) -> StoreResult<Option<Release>> {
        self.one_release(channel, "AND version = ?2", params![channel, version as i64])
    }

    fn latest_release(&self, channel: &str) -> StoreResult<Option<Release>> {
        self.one_release(channel, "ORDER BY version DESC LIMIT 1", params![channel])
    }

    fn record_car(&self, report: &CarKnowledge) -> StoreResult<()> {
        self.conn().execute(
            "INSERT INTO car_knowledge (thing, report, reported_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (thing) DO UPDATE SET report = excluded.report, reported_at = excluded.reported_at
             WHERE excluded.reported_at >= car_knowledge.reported_at",
            params![report.thing, to_json(report), report.reported_at.as_millisecond()],
        )?;
        Ok(())
    }

    fn cars(&self) -> StoreResult<Vec<CarKnowledge>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT report FROM car_knowledge ORDER BY thing")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| json_column(&r?)).collect()
    }

    fn audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.conn()
            .execute("INSERT INTO fleet_audit (entry) VALUES (?1)", params![to_json(entry)])?;
        Ok(())
    }

    fn audit_log(&self, limit: usize) -> StoreResult<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT entry FROM fleet_audit ORDER BY seq DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
        rows.map(|r| json_column(&r?)).collect()
    }
}

impl SqliteStore {
    /// The first release of `channel` that `rest` (the query's tail) selects.
    fn one_release(&self, channel: &str, rest: &str, args: impl rusqlite::Params) -> StoreResult<Option<Release>> {
        let row = self
            .conn()
            .query_row(
                &format!(
                    "SELECT version, notice, published_at, published_by FROM knowledge_releases
                     WHERE channel = ?1 {rest}"
                ),
                args,
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((version, notice, at, by)) = row else {
            return Ok(None);
        };
        Ok(Some(Release {
            channel: channel.to_string(),
            version: version as u64,
            notice: json_column(&notice)?,
            published_at: parse_ts(&at)?,
            published_by: by,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        (dir, store)
    }

    fn outcome(id: &str, intent: &str, score: f32) -> Outcome {
        Outcome {
            message_id: id.into(),
            thing: "car".into(),
            conversation_id: "c".into(),
            edge_intent: "out_of_scope".into(),
            intent: intent.into(),
            correction: (intent != "out_of_scope").then(|| "rule".to_string()),
            sentiment: if score < 0.0 { "negative" } else { "neutral" }.into(),
            sentiment_score: score,
            route: "answer".into(),
            provider: "local".into(),
            articles: vec![],
            usage: Usage {
                input_tokens: 100,
                output_tokens: 10,
                cost_usd: 0.5,
            },
            failure: None,
            handled_at: jiff::Timestamp::now(),
        }
    }

    #[test]
    fn a_message_is_claimed_once_and_an_abandoned_claim_is_taken_over_once() {
        let (_dir, s) = store();
        assert_eq!(s.claim("m1", "car", b"p1", "a", 60_000).unwrap(), Claim::New);
        assert_eq!(s.claim("m1", "car", b"p1", "b", 60_000).unwrap(), Claim::Duplicate);
        // A live lease is not taken over; an expired one is, by one instance only.
        assert!(s.take_over_stale("b", 60_000, 10).unwrap().is_empty());
        assert_eq!(s.claim("m2", "car", b"p2", "a", -1).unwrap(), Claim::New);
        assert_eq!(s.take_over_stale("b", 60_000, 10).unwrap(), vec![b"p2".to_vec()]);
        assert!(s.take_over_stale("c", 60_000, 10).unwrap().is_empty());
        // A completed one never is.
        assert_eq!(s.claim("m3", "car", b"p3", "a", -1).unwrap(), Claim::New);
        s.complete(&outcome("m3", "fuel_level", 0.0), &[]).unwrap();
        assert!(s.take_over_stale("c", 60_000, 10).unwrap().is_empty());
    }

    #[test]
    fn a_slot_is_held_once_and_only_the_owner_confirms_it() {
        let (_dir, s) = store();
        let at: jiff::Timestamp = "2026-11-27T13:00:00Z".parse().unwrap();
        let a = Appointment {
            appointment_id: "apt-1".into(),
            thing: "car".into(),
            dealer: "d".into(),
            service: "oil change".into(),
            starts_at: at,
            status: AppointmentStatus::Held,
        };
        s.hold(&a).unwrap();
        let twin = Appointment {
            appointment_id: "apt-2".into(),
            thing: "other".into(),
            ..a.clone()
        };
        assert!(matches!(s.hold(&twin), Err(StoreError::Conflict(_))));
        assert!(matches!(s.confirm("apt-1", "other"), Err(StoreError::NotFound(_))));
        assert_eq!(s.confirm("apt-1", "car").unwrap().status, AppointmentStatus::Confirmed);
        assert_eq!(
            s.confirm("apt-1", "car").unwrap().status,
            AppointmentStatus::Confirmed,
            "idempotent"
        );
        assert_eq!(
            s.taken("d", at, at.checked_add(jiff::SignedDuration::from_hours(1)).unwrap())
                .unwrap(),
            vec![at]
        );
    }

    #[test]
    fn the_production_store_knows_no_recall_and_no_profile_until_fleet_ops_add_them() {
        let (_dir, s) = store();
        let count = |table: &str| -> i64 {
            s.conn()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((count("recalls"), count("profiles")), (0, 0), "nothing invented");
        assert!(ProfileStore::get(&s, "any-car").unwrap().is_none());
        let recall = Recall {
            campaign: "26V-001".into(),
            model: "Voyager".into(),
            years: (2024, 2025),
            summary: "s".into(),
            remedy: "r".into(),
        };
        s.put_recall(&recall).unwrap();
        s.put_recall(&Recall {
            summary: "corrected".into(),
            ..recall.clone()
        })
        .unwrap();
        let found = s.recalls("Voyager", 2025).unwrap();
        assert_eq!(found.len(), 1, "a campaign is replaced, not doubled");
        assert_eq!(found[0].summary, "corrected");
        assert!(s.recalls("Voyager", 2023).unwrap().is_empty());
        assert!(s.recalls("Other", 2025).unwrap().is_empty());
    }

    #[test]
    fn handoff_states_change_only_from_the_expected_state_and_the_outbox_is_leased() {
        let (_dir, s) = store();
        let now = jiff::Timestamp::now();
        let h = Handoff {
            handoff_id: "h1".into(),
            message_id: uuid::Uuid::now_v7().to_string(),
            thing: "car".into(),
            conversation_id: "c".into(),
            reason: "talk_to_agent".into(),
            urgent: false,
            state: HandoffState::Queued,
            agent: None,
            created_at: now,
            taken_at: None,
            closed_at: None,
            estimated_wait_seconds: 180,
            utterance: "a person please".into(),
        };
        s.open(&h).unwrap();
        let taken = s
            .transition("h1", HandoffState::Queued, HandoffState::Assigned, Some("sam"), now)
            .unwrap();
        assert_eq!(
            (taken.state, taken.agent.as_deref()),
            (HandoffState::Assigned, Some("sam"))
        );
        assert!(matches!(
            s.transition("h1", HandoffState::Queued, HandoffState::Assigned, Some("kim"), now),
            Err(StoreError::Conflict(_))
        ));
        // One status update per interval, whichever instance gets there first.
        assert!(s.touch_status("h1", None, now).unwrap());
        assert!(!s.touch_status("h1", None, now).unwrap());
        assert_eq!(s.last_status("h1").unwrap(), Some(now));
        let response = protocol::Response {
            in_reply_to: h.message_id.parse().unwrap(),
            text: "hi".into(),
            actions: vec![],
            handoff: None,
            more_to_come: true,
            answered_by: None,
        };
        let seq = s.enqueue("car", "c", &response).unwrap();
        let leased = s.lease_outbound("a", 60_000, 10).unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].response, response);
        assert!(s.lease_outbound("b", 60_000, 10).unwrap().is_empty(), "leased to a");
        s.delivered(seq).unwrap();
        assert!(s.lease_outbound("b", -1, 10).unwrap().is_empty());
    }

    #[test]
    fn the_report_sums_a_day_once_per_batch() {
        let (_dir, s) = store();
        let counters: BTreeMap<String, u64> = [
            ("handling.local".to_string(), 8),
            ("handling.escalated".to_string(), 2),
            ("intent.fuel_level".to_string(), 6),
            ("sentiment.negative".to_string(), 1),
            ("sentiment.neutral".to_string(), 9),
        ]
        .into();
        let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        let day = today.to_string();
        assert!(s.record_batch("b1", &day, &counters).unwrap());
        assert!(
            !s.record_batch("b1", &day, &counters).unwrap(),
            "a redelivered batch counts once"
        );
        for (i, (intent, score)) in [("book_service", -0.5), ("book_service", 0.5), ("traffic", 0.0)]
            .iter()
            .enumerate()
        {
            let id = format!("m{i}");
            s.claim(&id, "car", b"p", "a", 1000).unwrap();
            s.complete(&outcome(&id, intent, *score), &[]).unwrap();
        }
        let report = s.report(2, today).unwrap();
        assert_eq!(report.len(), 2);
        let d = &report[1];
        assert_eq!(d.day, day);
        assert_eq!((d.escalations, d.edge_local, d.edge_escalated), (3, 8, 2));
        // Top intents and the negative share come from the cars' counters, which
        // count escalated turns too (no double counting).
        assert_eq!(d.top_intents, vec![("fuel_level".to_string(), 6)]);
        assert_eq!(d.corrections, 3);
        assert!((d.cost_usd - 1.5).abs() < 1e-9);
        assert!((d.negative_share.unwrap() - 1.0 / 10.0).abs() < 1e-9);
        assert!(
            (d.mean_sentiment.unwrap() - 0.0).abs() < 1e-6,
            "from the escalations' scores"
        );
        assert_eq!(report[0].escalations, 0);
    }
}
