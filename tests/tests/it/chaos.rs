//! The chaos harness: mosquitto from Debian (persistence on, then off), one
//! `cloud-bridge serve` and three `edge-agent serve` daemons, drivers asking
//! open-loop at 20 escalations a second per car, while the broker is restarted
//! (SIGTERM and kill -9) and every process is killed -9 at random moments, and
//! cloud-bridge dies once between its claim and its acknowledgement and once
//! between its acknowledgement and its answer (failpoints).
//!
//! Each fault lands with at least 10 escalations unacknowledged: before it,
//! cloud-bridge is paused (SIGSTOP) until the cars hold that many, so the fault
//! always hits messages on their way.
//!
//! Then it counts, per escalation a driver was told is queued: acknowledged by
//! the cloud (it left the car's outbox), answered on the car (one answer in its
//! conversation), and at the cloud exactly one outcome and one answer turn.
//! Nothing lost, nothing answered twice.
//!
//! CI runs the short mode (10 broker restarts and 5 kills of each process over
//! both passes). `CHAOS_SOAK=1` runs 100 broker restarts and 50 kills of each.
//! The seed is printed; `CHAOS_SEED=<n>` replays a run's schedule.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Bridge;
use e2e::{require_mosquitto, start_mosquitto_with, Mosquitto, Pki, Stop};
use testkit::{free_port, Daemon};

const CARS: usize = 3;
/// What every driver asks: a `cloud` intent the local provider answers at once.
const QUESTION: &str = "what's the traffic like on my route";

/// How much chaos: per pass (persistence on, then off).
#[derive(Debug, Clone, Copy)]
struct Budget {
    broker_restarts: usize,
    kills_each: usize,
    asks_per_second: u32,
}

impl Budget {
    fn for_this_run() -> Budget {
        if std::env::var("CHAOS_SOAK").is_ok_and(|v| v == "1") {
            Budget {
                broker_restarts: 50,
                kills_each: 25,
                asks_per_second: 20,
            }
        } else {
            Budget {
                broker_restarts: 5,
                kills_each: 3,
                asks_per_second: 20,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Broker(Stop),
    KillBridge,
    KillCar(usize),
    /// cloud-bridge dies after its claim, before its acknowledgement.
    DieAfterClaim,
    /// cloud-bridge dies after its acknowledgement, before its answer.
    DieAfterAck,
}

/// The schedule: every fault the budget asks for, in a seeded random order.
fn schedule(budget: Budget, rng: &mut Rng) -> Vec<Fault> {
    let mut faults = Vec::new();
    for i in 0..budget.broker_restarts {
        faults.push(Fault::Broker(if i % 2 == 0 { Stop::Term } else { Stop::Kill }));
    }
    for _ in 0..budget.kills_each {
        faults.push(Fault::KillBridge);
        faults.extend((0..CARS).map(Fault::KillCar));
    }
    faults.push(Fault::DieAfterClaim);
    faults.push(Fault::DieAfterAck);
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i as u64 + 1) as usize);
    }
    faults
}

/// SplitMix64: a schedule replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// One escalation a driver was told is queued.
#[derive(Debug, Clone)]
struct Asked {
    car: usize,
    conversation: String,
    during_faults: bool,
}

/// The processes of one pass.
struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    pki: Pki,
    broker: Mosquitto,
    bridge: Option<Bridge>,
    cars: Vec<Option<Daemon>>,
}

impl World {
    fn start(binary: &Path, persistence: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let persisted = dir.path().join("mosquitto-db");
        std::fs::create_dir_all(&persisted).unwrap();
        let broker = start_mosquitto_with(binary, &pki, free_port(), persistence.then_some(persisted.as_path()));
        let mut world = World {
            dir: dir.path().to_path_buf(),
            _dir: dir,
            pki,
            broker,
            bridge: None,
            cars: (0..CARS).map(|_| None).collect(),
        };
        world.bridge = Some(world.start_bridge(None));
        for car in 0..CARS {
            std::fs::create_dir_all(world.car_state(car)).unwrap();
            world.cars[car] = Some(world.start_car(car));
        }
        world
    }

    fn bridge_store(&self) -> PathBuf {
        self.dir.join("bridge.sqlite")
    }

    fn start_bridge(&self, failpoint: Option<&str>) -> Bridge {
        let mut env = vec![("CLOUD_BRIDGE__STORE__LEASE_MS", "3000")];
        let (pki, port, store) = (&self.pki, self.broker.port, self.bridge_store());
        match failpoint {
            Some(point) => {
                env.push(("CLOUD_BRIDGE_FAILPOINT", point));
                Bridge::spawn(pki, port, "cloud-bridge", "bridge-chaos", &store, &env)
            }
            None => Bridge::start_with(pki, port, "cloud-bridge", "bridge-chaos", &store, &env),
        }
    }

    fn car_state(&self, car: usize) -> PathBuf {
        self.dir.join(format!("car-{car}"))
    }

    fn start_car(&self, car: usize) -> Daemon {
        let thing = format!("chaos-car-{car}");
        let (cert, key) = self.pki.issue(&thing, &[]);
        let port = self.broker.port.to_string();
        let ca = self.pki.ca_file();
        Daemon::start_in(
            &self.car_state(car),
            &[
                ("EDGE_AGENT__UPLINK__HOST", "localhost"),
                ("EDGE_AGENT__UPLINK__PORT", &port),
                ("EDGE_AGENT__UPLINK__THING_NAME", &thing),
                ("EDGE_AGENT__UPLINK__CA_FILE", ca.to_str().unwrap()),
                ("EDGE_AGENT__UPLINK__CERT_FILE", cert.to_str().unwrap()),
                ("EDGE_AGENT__UPLINK__KEY_FILE", key.to_str().unwrap()),
                ("EDGE_AGENT__UPLINK__BACKOFF_INITIAL_MS", "50"),
                ("EDGE_AGENT__UPLINK__BACKOFF_MAX_MS", "400"),
                ("EDGE_AGENT__UPLINK__MIN_CONNECT_INTERVAL_MS", "100"),
                ("EDGE_AGENT__UPLINK__INFLIGHT", "10"),
                ("EDGE_AGENT__UPLINK__PUBLISH_PER_SECOND", "0"),
                ("EDGE_AGENT__UPLINK__ACK_TIMEOUT_MS", "1000"),
                ("EDGE_AGENT__UPLINK__ACK_TIMEOUT_MAX_MS", "4000"),
                ("EDGE_AGENT__UPLINK__ANSWER_TIMEOUT_MS", "3000"),
                ("EDGE_AGENT__API__RATE_PER_SECOND", "1000"),
                ("EDGE_AGENT__API__RATE_BURST", "1000"),
            ],
        )
    }

    fn socket(&self, car: usize) -> PathBuf {
        self.car_state(car).join("api.sock")
    }

    /// Escalations the cars hold that the cloud has not acknowledged.
    fn unacknowledged(&self) -> usize {
        (0..CARS).map(|car| outbox_len(&self.car_state(car))).sum()
    }

    fn signal_bridge(&self, signal: libc::c_int) {
        if let Some(bridge) = &self.bridge {
            support_signal(bridge.child.id(), signal);
        }
    }

    /// Pauses the cloud until the cars hold at least `at_least` unacknowledged
    /// escalations (or `within` runs out).
    fn build_backlog(&self, at_least: usize, within: Duration) -> usize {
        self.signal_bridge(libc::SIGSTOP);
        let started = Instant::now();
        loop {
            let n = self.unacknowledged();
            if n >= at_least || started.elapsed() > within {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn inflict(&mut self, fault: Fault) {
        match fault {
            Fault::Broker(how) => {
                self.broker.restart(how);
                self.signal_bridge(libc::SIGCONT);
            }
            Fault::KillBridge => {
                self.bridge.take().expect("bridge").kill_hard();
                self.bridge = Some(self.start_bridge(None));
            }
            Fault::KillCar(car) => {
                self.signal_bridge(libc::SIGCONT);
                self.cars[car].take().expect("car").kill_hard();
                self.cars[car] = Some(self.start_car(car));
            }
            Fault::DieAfterClaim | Fault::DieAfterAck => {
                let point = if fault == Fault::DieAfterClaim {
                    "escalation:claimed"
                } else {
                    "escalation:acknowledged"
                };
                self.bridge.take().expect("bridge").kill_hard();
                let mut dying = self.start_bridge(Some(point));
                let started = Instant::now();
                while dying.child.try_wait().unwrap().is_none() {
                    assert!(
                        started.elapsed() < Duration::from_secs(20),
                        "failpoint {point} never reached"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                let log = std::fs::read_to_string(&dying.log).unwrap_or_default();
                assert!(log.contains(&format!("failpoint {point} reached")), "{log}");
                drop(dying);
                self.bridge = Some(self.start_bridge(None));
            }
        }
    }
}

#[allow(unsafe_code)]
fn support_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Rows in a car's outbox, read beside the running daemon (WAL readers do not
/// block it). A database not created yet holds none.
fn outbox_len(state: &Path) -> usize {
    let path = state.join("edge-agent.sqlite");
    let Ok(conn) = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    conn.busy_timeout(Duration::from_secs(2)).unwrap();
    conn.query_row("SELECT count(*) FROM escalations WHERE status = 'pending'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as usize)
    .unwrap_or(0)
}

/// The drivers: one thread per car asking open-loop (on schedule, whatever the
/// previous ask is doing); each ask told "queued" is recorded.
struct Drivers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    faulting: Arc<std::sync::atomic::AtomicBool>,
    asked: Arc<Mutex<Vec<Asked>>>,
    refused: Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drivers {
    fn start(world: &World, per_second: u32, pass: &str) -> Drivers {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        let stop = Arc::new(AtomicBool::new(false));
        let faulting = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let threads = (0..CARS)
            .map(|car| {
                let (stop, faulting, asked, refused) = (stop.clone(), faulting.clone(), asked.clone(), refused.clone());
                let socket = world.socket(car);
                let pass = pass.to_string();
                std::thread::spawn(move || {
                    let runtime = testkit::threaded_runtime();
                    let every = Duration::from_secs(1) / per_second;
                    let mut next = Instant::now();
                    let mut n = 0usize;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let conversation = format!("{pass}-{car}-{n}");
                        n += 1;
                        let (socket, asked, refused) = (socket.clone(), asked.clone(), refused.clone());
                        let during_faults = faulting.load(std::sync::atomic::Ordering::Relaxed);
                        runtime.spawn(async move {
                            if queued(&socket, &conversation).await {
                                asked.lock().unwrap().push(Asked {
                                    car,
                                    conversation,
                                    during_faults,
                                });
                            } else {
                                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        });
                        next += every;
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    // Asks still on their way finish (or fail) within their timeout.
                    runtime.shutdown_timeout(Duration::from_secs(5));
                })
            })
            .collect();
        Drivers {
            stop,
            faulting,
            asked,
            refused,
            threads,
        }
    }

    fn stop(self) -> (Vec<Asked>, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let asked = self.asked.lock().unwrap().clone();
        (asked, self.refused.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Asks once; true when the car said the question is queued for the cloud. A
/// car that is down refuses (the driver would hear nothing, and knows it).
async fn queued(socket: &Path, conversation: &str) -> bool {
    let body = serde_json::json!({"text": QUESTION, "conversation_id": conversation});
    let asked = tokio::time::timeout(
        Duration::from_secs(3),
        edge_agent::client::request(socket, hyper::Method::POST, "/v1/ask", Some(body)),
    )
    .await;
    let Ok(Ok((200, bytes))) = asked else { return false };
    let turn: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(turn["route"], "cloud", "{turn}");
    !turn["escalation"].is_null()
}

/// What one car's database says of its conversations: (message id, acknowledged
/// after ms) per acknowledged conversation, and answers per conversation.
struct CarRecord {
    acknowledged: HashMap<String, (String, i64)>,
    answers: HashMap<String, usize>,
    still_queued: usize,
}

fn read_car(state: &Path) -> CarRecord {
    let conn = rusqlite::Connection::open(state.join("edge-agent.sqlite")).unwrap();
    let mut acknowledged = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT conversation_id, message_id, acknowledged_unix_ms - queued_unix_ms FROM delivered")
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })
        .unwrap()
    {
        let (conversation, message_id, ms) = row.unwrap();
        assert!(
            acknowledged.insert(conversation.clone(), (message_id, ms)).is_none(),
            "{conversation} was queued twice"
        );
    }
    let answers = counts(
        &conn,
        "SELECT conversation_id, count(*) FROM turns WHERE json_extract(record, '$.from_cloud') GROUP BY conversation_id",
    );
    let still_queued = conn
        .query_row("SELECT count(*) FROM escalations WHERE status = 'pending'", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as usize;
    CarRecord {
        acknowledged,
        answers,
        still_queued,
    }
}

/// The cloud's count per message id of handled outcomes, and per conversation
/// of answer turns.
fn read_cloud(store: &Path) -> (HashMap<String, bool>, HashMap<String, usize>) {
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut outcomes = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT message_id, handled_at IS NOT NULL AND outcome IS NOT NULL FROM escalations")
        .unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))
        .unwrap()
    {
        let (id, handled) = row.unwrap();
        outcomes.insert(id, handled);
    }
    let answers = counts(
        &conn,
        "SELECT conversation_id, count(*) FROM turns WHERE role = 'assistant' GROUP BY conversation_id",
    );
    (outcomes, answers)
}

/// A `SELECT key, count(*) ... GROUP BY key` as a map.
fn counts(conn: &rusqlite::Connection, sql: &str) -> HashMap<String, usize> {
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Waits until every escalation is acknowledged and answered, or 90 s.
fn wait_until_settled(world: &World, asked: &[Asked]) {
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(90) {
        let records: Vec<CarRecord> = (0..CARS).map(|car| read_car(&world.car_state(car))).collect();
        let unanswered = asked
            .iter()
            .filter(|a| !records[a.car].answers.contains_key(&a.conversation))
            .count();
        if world.unacknowledged() == 0 && unanswered == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What became of each escalation a driver was told is queued.
struct Tally {
    /// Never acknowledged, or never answered on the car, or with no outcome at the cloud.
    lost: Vec<String>,
    /// Answered more than once on the car or at the cloud.
    twice: Vec<String>,
    unacknowledged: usize,
    /// Ask-to-acknowledgement times, sorted, of asks outside and during the faults.
    calm_ms: Vec<i64>,
    faulty_ms: Vec<i64>,
}

fn tally(
    asked: &[Asked],
    records: &[CarRecord],
    outcomes: &HashMap<String, bool>,
    cloud_answers: &HashMap<String, usize>,
) -> Tally {
    let (mut lost, mut twice, mut unacknowledged) = (Vec::new(), Vec::new(), 0);
    let (mut calm_ms, mut faulty_ms) = (Vec::new(), Vec::new());
    for a in asked {
        let record = &records[a.car];
        let Some((message_id, ms)) = record.acknowledged.get(&a.conversation) else {
            unacknowledged += 1;
            lost.push(a.conversation.clone());
            continue;
        };
        if a.during_faults {
            faulty_ms.push(*ms);
        } else {
            calm_ms.push(*ms);
        }
        let car_answers = record.answers.get(&a.conversation).copied().unwrap_or(0);
        let cloud_answer_turns = cloud_answers.get(&a.conversation).copied().unwrap_or(0);
        if outcomes.get(message_id) != Some(&true) || car_answers == 0 {
            lost.push(a.conversation.clone());
        }
        if car_answers > 1 || cloud_answer_turns > 1 {
            twice.push(format!(
                "{} (car {car_answers}, cloud {cloud_answer_turns})",
                a.conversation
            ));
        }
    }
    calm_ms.sort_unstable();
    faulty_ms.sort_unstable();
    Tally {
        lost,
        twice,
        unacknowledged,
        calm_ms,
        faulty_ms,
    }
}

/// One pass: the world, warm traffic without faults, the faults, then the count.
fn pass(binary: &Path, persistence: bool, budget: Budget, rng: &mut Rng) {
    let name = if persistence { "persisted" } else { "volatile" };
    let started = Instant::now();
    let mut world = World::start(binary, persistence);
    let drivers = Drivers::start(&world, budget.asks_per_second, name);
    std::thread::sleep(Duration::from_secs(3));
    drivers.faulting.store(true, std::sync::atomic::Ordering::Relaxed);
    let faults = schedule(budget, rng);
    let mut backlogs = Vec::new();
    for fault in &faults {
        std::thread::sleep(rng.millis(200, 800));
        let backlog = world.build_backlog(10, Duration::from_secs(5));
        backlogs.push(backlog);
        world.inflict(*fault);
        world.signal_bridge(libc::SIGCONT);
    }
    let (asked, refused) = drivers.stop();
    let faults_took = started.elapsed();

    // Settle: every escalation acknowledged and answered, within a bound.
    let settle = Instant::now();
    wait_until_settled(&world, &asked);
    let records: Vec<CarRecord> = (0..CARS).map(|car| read_car(&world.car_state(car))).collect();
    let (outcomes, cloud_answers) = read_cloud(&world.bridge_store());

    let Tally {
        lost,
        twice,
        unacknowledged,
        calm_ms,
        faulty_ms,
    } = tally(&asked, &records, &outcomes, &cloud_answers);
    let still_queued: usize = records.iter().map(|r| r.still_queued).sum();
    say!(
        "chaos pass {name}: {} faults ({:?}) in {:.0} s, backlog at each fault min {} max {}; \
         asked {} (refused while a car was down: {refused}), acknowledged {}, answered {}, \
         lost {}, answered twice {}, still queued {still_queued}; \
         ask->ack ms p50/p99 without faults {}/{} ({} asks), with faults {}/{} ({} asks); settled in {:.1} s",
        faults.len(),
        count_faults(&faults),
        faults_took.as_secs_f64(),
        backlogs.iter().min().unwrap_or(&0),
        backlogs.iter().max().unwrap_or(&0),
        asked.len(),
        asked.len() - unacknowledged,
        asked.len() - lost.len(),
        lost.len(),
        twice.len(),
        percentile(&calm_ms, 0.5),
        percentile(&calm_ms, 0.99),
        calm_ms.len(),
        percentile(&faulty_ms, 0.5),
        percentile(&faulty_ms, 0.99),
        faulty_ms.len(),
        settle.elapsed().as_secs_f64(),
    );
    if !twice.is_empty() || !lost.is_empty() {
        say!("chaos: the run's folder is kept for diagnosis: {}", world.dir.display());
        std::mem::forget(world);
    }
    assert!(
        backlogs.iter().all(|&b| b >= 10),
        "a fault landed with fewer than 10 escalations unacknowledged: {backlogs:?}"
    );
    assert!(asked.len() >= 100, "too little traffic: {}", asked.len());
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "{} answered twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(still_queued, 0);
}

fn count_faults(faults: &[Fault]) -> String {
    let count = |f: &dyn Fn(&Fault) -> bool| faults.iter().filter(|x| f(x)).count();
    format!(
        "broker restarts {} (term {}, kill {}), cloud-bridge kills {} + 2 failpoints, car kills {}",
        count(&|f| matches!(f, Fault::Broker(_))),
        count(&|f| *f == Fault::Broker(Stop::Term)),
        count(&|f| *f == Fault::Broker(Stop::Kill)),
        count(&|f| *f == Fault::KillBridge),
        count(&|f| matches!(f, Fault::KillCar(_))),
    )
}

#[test]
fn under_broker_restarts_and_kills_nothing_is_lost_and_nothing_answered_twice() {
    let Some(binary) = require_mosquitto() else { return };
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64);
    let budget = Budget::for_this_run();
    say!("chaos: seed {seed} (replay with CHAOS_SEED={seed}), {budget:?} per pass");
    let mut rng = Rng(seed);
    pass(&binary, true, budget, &mut rng);
    pass(&binary, false, budget, &mut rng);
}
