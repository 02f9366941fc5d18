//! The car's state on a disk that lets it down, through the real binary: a
//! state database with real overwritten bytes (inside a page, then in its
//! header) is moved aside at start, its readable rows carried into a fresh one,
//! and every emergency is still answered with the market's number. The state
//! folder is private (0700, files 0600) without systemd. The full disk is in
//! the end-to-end crate (`tests/tests/it/disk.rs`): it needs a real small file system.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use edge_agent::client::request;
use hyper::Method;
use serde_json::Value;
use testkit::{ask, Daemon};

/// Room for the test's burst of asks.
const ENV: &[(&str, &str)] = &[
    ("EDGE_AGENT__API__RATE_PER_SECOND", "1000"),
    ("EDGE_AGENT__API__RATE_BURST", "1000"),
];
const PAGE: u64 = 4096;

async fn health(daemon: &Daemon) -> Value {
    let (_, body) = request(&daemon.socket, Method::GET, "/v1/health", None).await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn history(daemon: &Daemon, conversation: &str) -> usize {
    let (_, body) = request(
        &daemon.socket,
        Method::GET,
        &format!("/v1/conversations/{conversation}"),
        None,
    )
    .await
    .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["turns"].as_array().map_or(0, Vec::len)
}

/// Stops the daemon cleanly (its WAL checkpointed into the file) and returns
/// the database's path.
fn stop(mut daemon: Daemon) -> std::path::PathBuf {
    daemon.terminate();
    assert!(daemon.child.wait().unwrap().success());
    let db = daemon.state.join("edge-agent.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    db
}

/// Pages that are the root of a table or index (and page 1): damaging one of
/// them loses its whole tree; any other page is a leaf or inner page.
fn root_pages(db: &Path) -> Vec<u64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT rootpage FROM sqlite_schema WHERE rootpage > 0")
        .unwrap();
    let mut roots: Vec<u64> = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|p| p.unwrap() as u64)
        .collect();
    roots.push(1);
    roots
}

fn overwrite(db: &Path, at: u64, len: usize) {
    let file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.write_all_at(&vec![0x5a; len], at).unwrap();
    file.sync_all().unwrap();
}

fn damaged_copies(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("edge-agent.sqlite.damaged-") && !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    names.sort();
    names
}

/// Ten conversations of twelve turns and three queued escalations (no uplink).
async fn fill(daemon: &Daemon) {
    for c in 0..10 {
        for _ in 0..12 {
            let (status, _) = ask(&daemon.socket, "what does the red oil can light mean", &format!("c{c}")).await;
            assert_eq!(status, 200);
        }
    }
    for c in 0..3 {
        let (status, _) = ask(
            &daemon.socket,
            "there has been a crash and my passenger is hurt",
            &format!("e{c}"),
        )
        .await;
        assert_eq!(status, 200);
    }
}

async fn assert_emergency_answered(daemon: &Daemon) {
    let (status, body) = ask(&daemon.socket, "call an ambulance, someone is injured", "after").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["intent"], "emergency", "{body}");
    // The demo vehicle is in the US market.
    assert!(
        body["answer"].as_str().unwrap().contains("Call 911"),
        "the market's number: {body}"
    );
}

#[test]
fn a_database_damaged_inside_a_page_then_in_its_header_is_replaced_with_its_readable_rows() {
    let rt = testkit::runtime();
    let root = tempfile::tempdir().unwrap();
    let state = root.path();
    let daemon = Daemon::start_in(state, ENV);
    rt.block_on(fill(&daemon));
    let db = stop(daemon);

    // 1. A page that is no tree's root, overwritten in full.
    let pages = std::fs::metadata(&db).unwrap().len() / PAGE;
    let roots = root_pages(&db);
    let victim = (2..=pages).rev().find(|p| !roots.contains(p)).expect("a non-root page");
    let original = std::fs::read(&db).unwrap();
    overwrite(&db, (victim - 1) * PAGE, PAGE as usize);

    let daemon = Daemon::start_in(state, ENV);
    let h = rt.block_on(health(&daemon));
    let recovered = &h["state"]["recovered"];
    assert!(recovered.is_object(), "the replacement is reported: {h}");
    assert_eq!(h["status"], "ok", "a fresh database is writable: {h}");
    let kept = recovered["kept_as"].as_str().expect("kept for diagnosis");
    let kept_bytes = std::fs::read(kept).unwrap();
    assert_eq!(kept_bytes.len(), original.len(), "kept as it was");
    assert_ne!(kept_bytes, original, "with its damage");
    assert_eq!(h["pending_escalations"], 3, "the queued emergencies came across: {h}");
    let conversations: Vec<String> = (0..10)
        .map(|c| format!("c{c}"))
        .chain((0..3).map(|c| format!("e{c}")))
        .collect();
    let turns: usize = conversations.iter().map(|c| rt.block_on(history(&daemon, c))).sum();
    assert!(turns >= 90, "the history on sound pages came across ({turns} of 123)");
    assert_eq!(
        recovered["rows_carried"].as_u64().unwrap() as usize,
        turns + 3,
        "every row counted is there (the turns and the three queued rows)"
    );
    rt.block_on(assert_emergency_answered(&daemon));
    let db = stop(daemon);

    // 2. The header overwritten: SQLite no longer knows the file.
    overwrite(&db, 0, 100);
    let daemon = Daemon::start_in(state, ENV);
    let h = rt.block_on(health(&daemon));
    assert!(h["state"]["recovered"].is_object(), "{h}");
    assert_eq!(h["pending_escalations"], 4, "every escalation came across: {h}");
    let after: usize = conversations.iter().map(|c| rt.block_on(history(&daemon, c))).sum();
    assert_eq!(after, turns, "every turn came across");
    rt.block_on(assert_emergency_answered(&daemon));
    stop(daemon);

    // 3. Copies are capped: damaged twice more, three are kept.
    for _ in 0..2 {
        overwrite(&db, 0, 100);
        stop(Daemon::start_in(state, ENV));
    }
    assert_eq!(
        damaged_copies(state).len(),
        edge_agent::store::KEPT_AT_MOST,
        "{:?}",
        damaged_copies(state)
    );
}

#[test]
fn the_state_folder_is_private_and_so_is_every_file_in_it() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    // An existing folder a careless install left open, with a database in it.
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = state.join("edge-agent.sqlite");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 0")
        .unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let notes = state.join("notes.txt");
    std::fs::write(&notes, "left by an older install").unwrap();
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o644)).unwrap();
    let rt = testkit::runtime();
    let daemon = Daemon::start_in(&state, ENV);
    rt.block_on(fill(&daemon));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "the state folder");
    let mut files = 0;
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "api.sock" || name == "serve.log" {
            continue; // the socket's mode is the API's (its group); the log is this test's
        }
        assert_eq!(mode(&path), 0o600, "{name}");
        files += 1;
    }
    assert!(
        files >= 4,
        "the databases, their WAL and the spool were checked ({files})"
    );
}
