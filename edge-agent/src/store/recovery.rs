//! Opening the state database safely: a quick integrity check at start; a
//! damaged file is moved aside (named with the time, a few kept, within a size
//! cap), a fresh one takes its place, and every row that can still be read is
//! carried over, even from a file whose header was overwritten.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

/// Damaged databases kept for diagnosis, at most, and their total size.
pub const KEPT_AT_MOST: usize = 3;
pub const KEPT_BYTES_AT_MOST: u64 = 64 * 1024 * 1024;
/// The tables carried over from a damaged database, in this order.
const CARRIED: &[&str] = &["escalations", "delivered", "responses_seen", "turns"];
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// A damaged database replaced at start, for the log and `/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovered {
    pub at: String,
    /// What was wrong.
    pub reason: String,
    /// Where the damaged file was kept (`None`: over the cap, deleted).
    pub kept_as: Option<String>,
    /// Rows read from it into the fresh database.
    pub rows_carried: usize,
}

/// What the integrity check found.
pub enum Checked {
    Sound(Connection),
    Damaged(String),
}

/// Opens `path` and runs `PRAGMA quick_check`. Damage (a bad header, a bad
/// page) is `Damaged`; any other failure (no permission, no space) is an error.
pub fn check(path: &Path) -> rusqlite::Result<Checked> {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(e) if is_damage(&e) => return Ok(Checked::Damaged(e.to_string())),
        Err(e) => return Err(e),
    };
    let verdict: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect());
    match verdict {
        Ok(lines) if lines == ["ok"] => Ok(Checked::Sound(conn)),
        Ok(lines) => Ok(Checked::Damaged(lines.join("; "))),
        Err(e) if is_damage(&e) => Ok(Checked::Damaged(e.to_string())),
        Err(e) => Err(e),
    }
}

fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Moves the damaged database at `path` aside (with its WAL), prunes older
/// copies to the caps, and returns where it went.
pub fn move_aside(path: &Path, now: jiff::Timestamp) -> std::io::Result<PathBuf> {
    let stamp = now.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
    let kept = with_suffix(path, &format!(".damaged-{stamp}"));
    std::fs::rename(path, &kept)?;
    let wal = with_suffix(path, "-wal");
    if wal.exists() {
        std::fs::rename(&wal, with_suffix(&kept, "-wal"))?;
    }
    let _ = std::fs::remove_file(with_suffix(path, "-shm"));
    Ok(kept)
}

/// Deletes the oldest kept copies beyond [`KEPT_AT_MOST`] or [`KEPT_BYTES_AT_MOST`];
/// returns whether `newest` itself is still kept.
pub fn prune_kept(path: &Path, newest: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return true;
    };
    let prefix = format!("{}.damaged-", name.to_string_lossy());
    let mut kept: Vec<(String, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = name.starts_with(&prefix) && !name.ends_with("-wal") && !name.ends_with("-shm");
            ours.then(|| (name, size_with_wal(&e.path())))
        })
        .collect();
    // Newest first (the names carry the time).
    kept.sort_by(|a, b| b.0.cmp(&a.0));
    let mut total = 0;
    for (i, (name, size)) in kept.iter().enumerate() {
        total += size;
        if i >= KEPT_AT_MOST || total > KEPT_BYTES_AT_MOST {
            let file = dir.join(name);
            let _ = std::fs::remove_file(&file);
            let _ = std::fs::remove_file(with_suffix(&file, "-wal"));
            let _ = std::fs::remove_file(with_suffix(&file, "-shm"));
        }
    }
    newest.exists()
}

fn size_with_wal(file: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    size(file) + size(&with_suffix(file, "-wal"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies every readable row of the damaged database `damaged` into `fresh`
/// (tables and columns both know); the number of rows. A file whose header was
/// overwritten is read through a copy with a rebuilt header.
pub fn carry_over(damaged: &Path, fresh: &Connection) -> usize {
    let patched = header_is_damaged(damaged)
        .then(|| with_rebuilt_header(damaged))
        .flatten();
    let source = patched.as_deref().unwrap_or(damaged);
    let carried = match Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(old) => CARRIED.iter().map(|table| carry_table(&old, fresh, table)).sum(),
        Err(error) => {
            tracing::warn!(%error, "nothing could be read from the damaged state database");
            0
        }
    };
    let _ = std::fs::remove_file(with_suffix(source, "-shm"));
    if let Some(copy) = patched {
        let _ = std::fs::remove_file(with_suffix(&copy, "-wal"));
        let _ = std::fs::remove_file(&copy);
    }
    carried
}

/// Rows of `table` read in rowid order, batch by batch. A batch that fails (a
/// damaged page) is stepped over by growing strides, so the rows beyond it are
/// still found through the table's interior pages.
fn carry_table(old: &Connection, fresh: &Connection, table: &str) -> usize {
    let Ok(columns) = common_columns(old, fresh, table) else {
        return 0;
    };
    if columns.is_empty() {
        return 0;
    }
    let list = columns.join(", ");
    let marks = vec!["?"; columns.len()].join(", ");
    let insert = format!("INSERT OR IGNORE INTO {table} ({list}) VALUES ({marks})");
    let select = format!("SELECT rowid, {list} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT 256");
    let (mut after, mut stride, mut carried) = (0i64, 1i64, 0usize);
    loop {
        let mut last = None;
        let batch = read_batch(old, &select, after, columns.len(), &mut |rowid, values| {
            last = Some(rowid);
            if fresh.execute(&insert, rusqlite::params_from_iter(values)).unwrap_or(0) == 1 {
                carried += 1;
            }
        });
        match (batch, last) {
            (Ok(0), _) => break,
            (Ok(_), Some(rowid)) => (after, stride) = (rowid, 1),
            (Err(_), found) => {
                after = found.unwrap_or(after).saturating_add(stride);
                stride = stride.saturating_mul(2);
                if stride > 1 << 40 {
                    break;
                }
            }
            (Ok(_), None) => break,
        }
    }
    carried
}

fn read_batch(
    old: &Connection,
    select: &str,
    after: i64,
    width: usize,
    each: &mut dyn FnMut(i64, Vec<rusqlite::types::Value>),
) -> rusqlite::Result<usize> {
    let mut stmt = old.prepare(select)?;
    let mut rows = stmt.query([after])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let values = (1..=width).map(|i| row.get(i)).collect::<rusqlite::Result<Vec<_>>>()?;
        each(rowid, values);
        n += 1;
    }
    Ok(n)
}

/// The columns `table` has in both databases (an older schema has fewer).
fn common_columns(old: &Connection, fresh: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let names = |conn: &Connection| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        let names = stmt.query_map([], |r| r.get(0))?.collect();
        names
    };
    let wanted = names(fresh)?;
    let present = names(old)?;
    Ok(wanted.into_iter().filter(|c| present.contains(c)).collect())
}

fn header_is_damaged(path: &Path) -> bool {
    let mut magic = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut magic, 0));
    read.is_ok() && &magic != SQLITE_MAGIC
}

/// A copy of `damaged` (beside it) whose first 100 bytes come from a fresh
/// database of the same page size; the schema and rows start after them.
fn with_rebuilt_header(damaged: &Path) -> Option<PathBuf> {
    let bytes = std::fs::read(damaged).ok()?;
    let page_size = [4096usize, 1024, 2048, 8192, 16384, 32768, 65536, 512]
        .into_iter()
        .find(|&size| bytes.len() % size == 0)?;
    let header = fresh_header(page_size)?;
    let mut patched = bytes;
    patched[..100].copy_from_slice(&header);
    let pages = (patched.len() / page_size) as u32;
    patched[28..32].copy_from_slice(&pages.to_be_bytes());
    let copy = with_suffix(damaged, ".salvage");
    std::fs::write(&copy, &patched).ok()?;
    let wal = with_suffix(damaged, "-wal");
    if wal.exists() {
        let _ = std::fs::copy(&wal, with_suffix(&copy, "-wal"));
    }
    Some(copy)
}

fn fresh_header(page_size: usize) -> Option<[u8; 100]> {
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("h.sqlite");
    let conn = Connection::open(&path).ok()?;
    conn.pragma_update(None, "page_size", page_size as i64).ok()?;
    conn.execute_batch("CREATE TABLE t (x); DROP TABLE t;").ok()?;
    drop(conn);
    let bytes = std::fs::read(&path).ok()?;
    bytes.get(..100)?.try_into().ok()
}
