//! The car's own state in SQLite: conversation history and the escalations waiting
//! for the uplink.
//!
//! Nothing a driver asks for is dropped: an escalation is written here (status
//! `pending`) before the driver is told it will be handled, and leaves this table
//! only when it has been delivered (the uplink's job) or withdrawn by the driver.
//! History is pruned by age and by count per conversation, on every write.

use std::path::Path;

use rusqlite::{params, Connection};
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
    #[error("cannot create the state folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Urgent,
    Normal,
}

impl Priority {
    fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
        }
    }
}

/// An escalation waiting for the uplink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEscalation {
    pub id: i64,
    pub conversation_id: String,
    pub created_at: String,
    pub priority: Priority,
    pub intent: String,
    pub payload: serde_json::Value,
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
    pub fn open(path: &Path, retention: Retention) -> Result<Store> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let location = path.display().to_string();
        let conn = Connection::open(path).at(&location)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).at(&location)?;
        conn.pragma_update(None, "journal_mode", "WAL").at(&location)?;
        // NORMAL in WAL mode: history commits are not fsynced one by one (a power
        // cut may lose the last turns of history, never corrupt the file). An
        // escalation is written with FULL (see `queue_escalation`).
        conn.pragma_update(None, "synchronous", "NORMAL").at(&location)?;
        Store::with_connection(conn, &location, retention)
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
        })
    }

    /// Appends a turn and applies the retention limits.
    pub fn record_turn(&self, conversation_id: &str, turn: &TurnRecord, now: jiff::Timestamp) -> Result<()> {
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
        self.conn
            .execute_batch("DELETE FROM turns; DELETE FROM escalations;")
            .at(&self.location)
    }

    /// Queues an escalation, synced to disk before it returns: the driver is told
    /// it is queued only after it would survive a power cut.
    pub fn queue_escalation(
        &self,
        conversation_id: &str,
        priority: Priority,
        intent: &str,
        payload: &serde_json::Value,
        now: jiff::Timestamp,
    ) -> Result<i64> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .at(&self.location)?;
        let inserted = self.conn.execute(
            "INSERT INTO escalations (conversation_id, created_at, priority, intent, status, payload)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
            params![
                conversation_id,
                now.to_string(),
                priority.as_str(),
                intent,
                payload.to_string()
            ],
        );
        let id = self.conn.last_insert_rowid();
        // Back to NORMAL for history, whether or not the insert worked.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .at(&self.location)?;
        inserted.at(&self.location)?;
        Ok(id)
    }

    /// Pending escalations, urgent first, then oldest first.
    pub fn pending_escalations(&self) -> Result<Vec<PendingEscalation>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, conversation_id, created_at, priority, intent, payload FROM escalations
                 WHERE status = 'pending' ORDER BY priority = 'urgent' DESC, id",
            )
            .at(&self.location)?;
        let rows = stmt
            .query_map([], |r| {
                let priority: String = r.get(3)?;
                let payload: String = r.get(5)?;
                Ok(PendingEscalation {
                    id: r.get(0)?,
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
            })
            .at(&self.location)?;
        rows.collect::<std::result::Result<_, _>>().at(&self.location)
    }

    /// Withdraws a pending, non-urgent escalation (the driver said cancel right
    /// after asking). Emergencies are never withdrawn. True when it was withdrawn.
    pub fn cancel_escalation(&self, id: i64) -> Result<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            store
                .queue_escalation("c", Priority::Normal, "book_service", &serde_json::json!({"a": 1}), now)
                .unwrap();
            store
                .queue_escalation("c", Priority::Urgent, "emergency", &serde_json::json!({}), now)
                .unwrap();
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
