//! The escalation spool: a small file of fixed slots, allocated (written out in
//! full, never sparse) when the daemon starts, so an escalation can be kept
//! when the state database cannot take it (a full disk, a read-only or damaged
//! file). Overwriting bytes the file already owns needs no free block, so a
//! full file system still takes it, and it survives a restart.
//!
//! Each slot holds one escalation: a 12-byte header (magic, length, CRC-32 of
//! the body) and the JSON of a [`SpooledEscalation`]. A slot is written with one
//! positioned write and synced; an emptied slot has its magic zeroed. A torn or
//! damaged slot fails its CRC and is read as empty (logged).
//!
//! Spooled rows take part in the outbox under ids of their own ([`is_spool_id`]),
//! below any row id of the database and the uplink's tags.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DropReason, Dropped, PendingEscalation, Priority};

/// Slots in the spool and the bytes of each: 256 KiB on disk.
pub const SLOTS: usize = 16;
pub const SLOT_BYTES: usize = 16 * 1024;
const HEADER: usize = 12;
const MAGIC: u32 = 0x4553_5031; // "ESP1"
/// Spool slot `n` is outbox id `SPOOL_ID_BASE - n`.
const SPOOL_ID_BASE: i64 = -1_000_000;

/// The outbox id of spool slot `slot`.
fn id_of(slot: usize) -> i64 {
    SPOOL_ID_BASE - slot as i64
}

/// Whether an outbox id names a spool slot (and which).
pub fn is_spool_id(id: i64) -> Option<usize> {
    let slot = SPOOL_ID_BASE.checked_sub(id)?;
    usize::try_from(slot).ok().filter(|&s| s < SLOTS)
}

/// One escalation as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpooledEscalation {
    pub message_id: uuid::Uuid,
    pub conversation_id: String,
    pub created_at: String,
    pub priority: Priority,
    pub intent: String,
    pub payload: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool has no free slot ({SLOTS} escalations wait in it)")]
    Full,
    #[error("the escalation does not fit a spool slot ({0} bytes, even without its history)")]
    TooLarge(usize),
    #[error("spool {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The spool: its file (when it could be allocated) and what its slots hold.
#[derive(Debug)]
pub struct Spool {
    file: Option<File>,
    path: String,
    slots: Vec<Option<SpooledEscalation>>,
}

impl Spool {
    /// Opens the spool at `path`, allocating it in full when it is missing or
    /// short. Without a file (none could be made) it still holds escalations in
    /// memory, and says so.
    pub fn open(path: &Path) -> Spool {
        let shown = path.display().to_string();
        match open_allocated(path) {
            Ok(file) => {
                let slots = (0..SLOTS).map(|slot| read_slot(&file, slot, &shown)).collect();
                Spool {
                    file: Some(file),
                    path: shown,
                    slots,
                }
            }
            Err(error) => {
                tracing::error!(path = %shown, %error, "no spool file: escalations the database cannot take are kept in memory only");
                Spool::in_memory()
            }
        }
    }

    /// A spool without a file (tests, and the fallback above).
    pub fn in_memory() -> Spool {
        Spool {
            file: None,
            path: ":memory:".into(),
            slots: vec![None; SLOTS],
        }
    }

    /// Whether what it holds survives a restart.
    pub fn is_durable(&self) -> bool {
        self.file.is_some()
    }

    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps an escalation; its outbox id, and the normal one it evicted to make
    /// room for an emergency.
    pub fn put(&mut self, mut entry: SpooledEscalation) -> Result<(i64, Option<Dropped>), SpoolError> {
        let mut body = serde_json::to_vec(&entry).expect("an escalation serialises");
        if body.len() > SLOT_BYTES - HEADER {
            // History is the part worth least when space is this short.
            entry.payload["recent_turns"] = serde_json::json!([]);
            body = serde_json::to_vec(&entry).expect("an escalation serialises");
            if body.len() > SLOT_BYTES - HEADER {
                return Err(SpoolError::TooLarge(body.len()));
            }
        }
        let (slot, evicted) = self.free_slot(entry.priority)?;
        self.write_slot(slot, &body)?;
        self.slots[slot] = Some(entry);
        Ok((id_of(slot), evicted))
    }

    /// A free slot; for an emergency, the oldest normal one when none is free.
    fn free_slot(&self, priority: Priority) -> Result<(usize, Option<Dropped>), SpoolError> {
        if let Some(free) = self.slots.iter().position(Option::is_none) {
            return Ok((free, None));
        }
        if priority == Priority::Normal {
            return Err(SpoolError::Full);
        }
        let (slot, oldest) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| (slot, e)))
            .filter(|(_, e)| e.priority == Priority::Normal)
            .min_by_key(|(_, e)| e.message_id)
            .ok_or(SpoolError::Full)?;
        let dropped = Dropped {
            id: id_of(slot),
            conversation_id: oldest.conversation_id.clone(),
            intent: oldest.intent.clone(),
            reason: DropReason::Evicted,
        };
        Ok((slot, Some(dropped)))
    }

    /// What the spool holds, as outbox rows (urgent first, then oldest).
    pub fn pending(&self) -> Vec<PendingEscalation> {
        let mut rows: Vec<PendingEscalation> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| as_pending(slot, e)))
            .collect();
        rows.sort_by_key(|r| (r.priority != Priority::Urgent, r.message_id));
        rows
    }

    pub fn get(&self, slot: usize) -> Option<&SpooledEscalation> {
        self.slots.get(slot)?.as_ref()
    }

    /// Empties the slot holding `message_id` (the cloud acknowledged it); its id.
    pub fn remove_message(&mut self, message_id: &uuid::Uuid) -> Result<Option<(i64, SpooledEscalation)>, SpoolError> {
        let Some(slot) = self
            .slots
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| &e.message_id == message_id))
        else {
            return Ok(None);
        };
        Ok(self.remove(slot)?.map(|e| (id_of(slot), e)))
    }

    /// Empties a slot.
    pub fn remove(&mut self, slot: usize) -> Result<Option<SpooledEscalation>, SpoolError> {
        if self.slots.get(slot).is_none_or(Option::is_none) {
            return Ok(None);
        }
        self.write_slot(slot, &[])?;
        Ok(self.slots[slot].take())
    }

    /// Writes a slot's header and body (an empty body empties it) and syncs.
    fn write_slot(&self, slot: usize, body: &[u8]) -> Result<(), SpoolError> {
        let Some(file) = &self.file else { return Ok(()) };
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        let magic = if body.is_empty() { 0 } else { MAGIC };
        bytes.extend_from_slice(&magic.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        bytes.extend_from_slice(body);
        let io = |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        };
        file.write_all_at(&bytes, (slot * SLOT_BYTES) as u64).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

fn as_pending(slot: usize, e: &SpooledEscalation) -> PendingEscalation {
    PendingEscalation {
        id: id_of(slot),
        message_id: Some(e.message_id),
        conversation_id: e.conversation_id.clone(),
        created_at: e.created_at.clone(),
        priority: e.priority,
        intent: e.intent.clone(),
        payload: e.payload.clone(),
    }
}

/// The spool file, its full length written out with zeros when it was short.
fn open_allocated(path: &Path) -> std::io::Result<File> {
    let file = crate::store::private_file(path)?;
    let want = (SLOTS * SLOT_BYTES) as u64;
    let have = file.metadata()?.len();
    if have < want {
        // Real zeros, not set_len: a sparse file would need blocks at write time.
        let zeros = vec![0u8; (want - have) as usize];
        file.write_all_at(&zeros, have)?;
        file.sync_all()?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    Ok(file)
}

fn read_slot(file: &File, slot: usize, path: &str) -> Option<SpooledEscalation> {
    let mut bytes = vec![0u8; SLOT_BYTES];
    file.read_exact_at(&mut bytes, (slot * SLOT_BYTES) as u64).ok()?;
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
    if word(0) != MAGIC {
        return None;
    }
    let len = word(4) as usize;
    let body = bytes.get(HEADER..HEADER + len);
    let entry = body
        .filter(|body| crc32fast::hash(body) == word(8))
        .and_then(|body| serde_json::from_slice(body).ok());
    if entry.is_none() {
        tracing::error!(path, slot, "a damaged spool slot was skipped");
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(priority: Priority, n: u128) -> SpooledEscalation {
        SpooledEscalation {
            message_id: uuid::Uuid::from_u128(n),
            conversation_id: format!("c{n}"),
            created_at: "2026-12-04T10:00:00Z".into(),
            priority,
            intent: if priority == Priority::Urgent {
                "emergency"
            } else {
                "complaint"
            }
            .into(),
            payload: serde_json::json!({"utterance": "x", "recent_turns": [{"text": "y".repeat(100)}]}),
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_a_damaged_slot_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.spool");
        let mut spool = Spool::open(&path);
        assert!(spool.is_durable());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (SLOTS * SLOT_BYTES) as u64);
        let (first, _) = spool.put(entry(Priority::Normal, 1)).unwrap();
        let (second, _) = spool.put(entry(Priority::Urgent, 2)).unwrap();
        assert_ne!(first, second);
        drop(spool);

        let mut spool = Spool::open(&path);
        let pending = spool.pending();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].intent, "emergency", "urgent first");
        assert_eq!(is_spool_id(pending[0].id), Some(1));
        // One byte of the emergency's body overwritten: its slot fails its CRC.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"#", (SLOT_BYTES + HEADER + 5) as u64).unwrap();
        drop(file);
        spool.remove_message(&uuid::Uuid::from_u128(1)).unwrap().unwrap();
        let reopened = Spool::open(&path);
        assert!(reopened.is_empty(), "{:?}", reopened.pending());
    }

    #[test]
    fn a_full_spool_takes_an_emergency_in_place_of_the_oldest_normal_and_refuses_the_rest() {
        let mut spool = Spool::in_memory();
        for n in 0..SLOTS as u128 {
            spool.put(entry(Priority::Normal, 10 + n)).unwrap();
        }
        assert!(matches!(spool.put(entry(Priority::Normal, 99)), Err(SpoolError::Full)));
        let (id, evicted) = spool.put(entry(Priority::Urgent, 100)).unwrap();
        let evicted = evicted.expect("one normal made room");
        assert_eq!(evicted.conversation_id, "c10", "the oldest");
        assert_eq!(evicted.id, id, "its slot");
        assert_eq!(spool.pending()[0].intent, "emergency");
    }

    #[test]
    fn an_oversize_entry_loses_its_history_first_and_ids_stay_out_of_the_databases_range() {
        let mut spool = Spool::in_memory();
        let mut big = entry(Priority::Urgent, 1);
        big.payload["recent_turns"] = serde_json::json!([{"text": "z".repeat(SLOT_BYTES)}]);
        let (id, _) = spool.put(big).unwrap();
        let slot = is_spool_id(id).unwrap();
        assert_eq!(spool.get(slot).unwrap().payload["recent_turns"], serde_json::json!([]));
        let mut huge = entry(Priority::Urgent, 2);
        huge.payload["utterance"] = serde_json::json!("u".repeat(SLOT_BYTES));
        assert!(matches!(spool.put(huge), Err(SpoolError::TooLarge(_))));
        assert_eq!(is_spool_id(1), None);
        assert_eq!(is_spool_id(-3), None);
        assert_eq!(is_spool_id(SPOOL_ID_BASE - SLOTS as i64), None);
    }
}
