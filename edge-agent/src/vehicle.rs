//! Live vehicle context: the signal snapshot answers are built from, the sources
//! that update it, and the units of the car's market.
//!
//! Sources are pulled, not pushed: before each answer the assistant calls
//! [`Vehicle::refresh`], which drains every source of what arrived since the last
//! call, so a change in the signals shows in the very next answer. A source that
//! streams (a COVESA VSS subscription to a KUKSA databroker, stdin) runs its own
//! reader and hands updates over a channel ([`ChannelSource`]); a file is followed
//! by offset ([`FileFollower`]).
//!
//! All values are kept in SI-like units (km, kPa, L/100 km) and converted only when
//! spoken, in the units of the market ([`Units`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The demo vehicle that makes live answers work out of the box.
pub const DEMO_VEHICLE: &str = include_str!("../config/demo-vehicle.json");

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("signal update from {source_name} is not valid: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("cannot read signals from {}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// A snapshot of the signals the assistant answers from. Every signal is optional:
/// a missing one is said to be unavailable, never guessed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VehicleState {
    pub vin: Option<String>,
    pub model: Option<String>,
    pub year: Option<u16>,
    pub trim: Option<String>,
    /// Market code (`US`, `UK`, `DE`, ...): picks units and the emergency number.
    pub market: Option<String>,
    pub fuel_percent: Option<f64>,
    pub fuel_range_km: Option<f64>,
    pub battery_percent: Option<f64>,
    pub electric_range_km: Option<f64>,
    pub charging: Option<ChargingState>,
    pub tire_pressure_kpa: Option<TirePressures>,
    /// Active dashboard warnings, by name (`check_engine`, `oil_pressure`, ...).
    #[serde(default)]
    pub warning_lights: Vec<String>,
    /// Stored diagnostic trouble codes (`P0420`).
    #[serde(default)]
    pub dtcs: Vec<String>,
    pub odometer_km: Option<f64>,
    pub last_service: Option<ServiceRecord>,
    pub location: Option<Location>,
    pub speed_kph: Option<f64>,
    /// Trip averages from the trip computer.
    pub trip_fuel_l_per_100km: Option<f64>,
    pub trip_kwh_per_100km: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargingState {
    NotConnected,
    Connected,
    Charging,
    Complete,
    Fault,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TirePressures {
    pub front_left: f64,
    pub front_right: f64,
    pub rear_left: f64,
    pub rear_right: f64,
}

impl TirePressures {
    pub fn each(&self) -> [(&'static str, f64); 4] {
        [
            ("front left", self.front_left),
            ("front right", self.front_right),
            ("rear left", self.rear_left),
            ("rear right", self.rear_right),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub date: jiff::civil::Date,
    pub odometer_km: f64,
    #[serde(default)]
    pub work: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// A place name a person understands (street and town).
    pub name: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
}

impl VehicleState {
    /// The embedded demo vehicle. Its last service is moved to 150 days before
    /// today, so the demo's service answers stay plausible whenever it runs.
    pub fn demo() -> VehicleState {
        let mut state: VehicleState = serde_json::from_str(DEMO_VEHICLE).expect("the embedded demo vehicle parses");
        if let Some(service) = &mut state.last_service {
            let today = jiff::Timestamp::now()
                .to_zoned_datetime(jiff::tz::TimeZone::system())
                .date();
            service.date = today.checked_sub(jiff::Span::new().days(150)).unwrap_or(service.date);
        }
        state
    }

    /// Merges a partial update (any subset of the fields) into the state. An
    /// invalid update leaves the state as it was.
    pub fn apply(&mut self, update: &Value, source_name: &str) -> Result<(), SignalError> {
        let invalid = |reason: String| SignalError::Invalid {
            source_name: source_name.to_string(),
            reason,
        };
        let Value::Object(fields) = update else {
            return Err(invalid("an update must be a JSON object".to_string()));
        };
        let mut merged = serde_json::to_value(&*self).map_err(|e| invalid(e.to_string()))?;
        let Value::Object(target) = &mut merged else {
            unreachable!("a struct serialises to an object")
        };
        for (key, value) in fields {
            target.insert(key.clone(), value.clone());
        }
        *self = serde_json::from_value(merged).map_err(|e| invalid(e.to_string()))?;
        Ok(())
    }

    pub fn filter(&self) -> knowledge::VehicleFilter {
        knowledge::VehicleFilter {
            model: self.model.clone(),
            year: self.year,
            trim: self.trim.clone(),
            market: self.market.clone(),
        }
    }
}

/// Where signal updates come from. Implementations must not block in `poll`.
pub trait SignalSource: Send {
    /// For logs and errors.
    fn name(&self) -> String;
    /// The updates that arrived since the last call (partial JSON objects, oldest
    /// first), and any line that could not be read.
    fn poll(&mut self) -> (Vec<Value>, Vec<SignalError>);
}

/// Follows a JSON-lines file as it grows (a simulated vehicle, or a log replay).
/// A truncated or replaced file is read again from the start.
pub struct FileFollower {
    path: PathBuf,
    offset: u64,
    /// The tail of the file after its last newline: a line still being written.
    partial: Vec<u8>,
}

impl FileFollower {
    pub fn new(path: &Path) -> FileFollower {
        FileFollower {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }
}

impl SignalSource for FileFollower {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn poll(&mut self) -> (Vec<Value>, Vec<SignalError>) {
        let io = |error| SignalError::Io {
            path: self.path.clone(),
            error,
        };
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
            Err(e) => return (Vec::new(), vec![io(e)]),
        };
        let len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return (Vec::new(), vec![io(e)]),
        };
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        let mut fresh = Vec::new();
        if let Err(e) = file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| file.take(len - self.offset).read_to_end(&mut fresh))
        {
            return (Vec::new(), vec![io(e)]);
        }
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return (Vec::new(), Vec::new());
        };
        let complete: Vec<u8> = self.partial.drain(..=last_newline).collect();
        parse_lines(&complete, &self.name())
    }
}

/// Updates handed over by a reader that runs on its own (stdin, a VSS
/// subscription): `poll` drains the channel.
pub struct ChannelSource {
    name: String,
    updates: mpsc::Receiver<Result<Value, SignalError>>,
}

impl ChannelSource {
    pub fn new(name: &str) -> (mpsc::Sender<Result<Value, SignalError>>, ChannelSource) {
        let (tx, rx) = mpsc::channel();
        (
            tx,
            ChannelSource {
                name: name.to_string(),
                updates: rx,
            },
        )
    }

    /// Reads JSON lines from `reader` on a thread of its own until it ends.
    pub fn from_reader<R: std::io::BufRead + Send + 'static>(name: &str, reader: R) -> ChannelSource {
        let (tx, source) = ChannelSource::new(name);
        let name = name.to_string();
        std::thread::spawn(move || {
            for line in reader.split(b'\n') {
                let Ok(line) = line else { break };
                let (values, errors) = parse_lines(&line, &name);
                for item in values.into_iter().map(Ok).chain(errors.into_iter().map(Err)) {
                    if tx.send(item).is_err() {
                        return;
                    }
                }
            }
        });
        source
    }
}

impl SignalSource for ChannelSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn poll(&mut self) -> (Vec<Value>, Vec<SignalError>) {
        let (mut values, mut errors) = (Vec::new(), Vec::new());
        while let Ok(item) = self.updates.try_recv() {
            match item {
                Ok(v) => values.push(v),
                Err(e) => errors.push(e),
            }
        }
        (values, errors)
    }
}

fn parse_lines(bytes: &[u8], name: &str) -> (Vec<Value>, Vec<SignalError>) {
    let (mut values, mut errors) = (Vec::new(), Vec::new());
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => values.push(v),
            Err(e) => errors.push(SignalError::Invalid {
                source_name: name.to_string(),
                reason: format!("not JSON: {e}"),
            }),
        }
    }
    (values, errors)
}

/// The vehicle as the assistant sees it: the latest snapshot and its sources.
pub struct Vehicle {
    state: VehicleState,
    sources: Vec<Box<dyn SignalSource>>,
}

impl std::fmt::Debug for Vehicle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vehicle")
            .field("state", &self.state)
            .field("sources", &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl Vehicle {
    pub fn new(state: VehicleState) -> Vehicle {
        Vehicle {
            state,
            sources: Vec::new(),
        }
    }

    pub fn add_source(&mut self, source: Box<dyn SignalSource>) {
        self.sources.push(source);
    }

    /// Applies everything the sources have received; bad updates are logged and
    /// skipped, and the rest still apply.
    pub fn refresh(&mut self) -> usize {
        let mut applied = 0;
        for source in &mut self.sources {
            let name = source.name();
            let (updates, errors) = source.poll();
            for error in errors {
                tracing::warn!(source = %name, %error, "skipped a signal update");
            }
            for update in updates {
                match self.state.apply(&update, &name) {
                    Ok(()) => applied += 1,
                    Err(error) => tracing::warn!(source = %name, %error, "skipped a signal update"),
                }
            }
        }
        applied
    }

    pub fn state(&self) -> &VehicleState {
        &self.state
    }
}

/// How a market speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Units {
    pub pressure: PressureUnit,
    pub distance: DistanceUnit,
    pub economy: EconomyUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PressureUnit {
    Psi,
    Bar,
    Kpa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistanceUnit {
    Mi,
    Km,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EconomyUnit {
    MpgUs,
    MpgUk,
    #[serde(rename = "l_per_100km")]
    LPer100km,
}

impl Units {
    /// A pressure in kPa, as spoken: "26 psi", "1.8 bar", "179 kPa".
    pub fn pressure(&self, kpa: f64) -> String {
        format!("{} {}", self.pressure_number(kpa), self.pressure_name())
    }

    pub fn pressure_number(&self, kpa: f64) -> String {
        match self.pressure {
            PressureUnit::Psi => format!("{:.0}", kpa / 6.894_757),
            PressureUnit::Bar => format!("{:.1}", kpa / 100.0),
            PressureUnit::Kpa => format!("{:.0}", kpa),
        }
    }

    pub fn pressure_name(&self) -> &'static str {
        match self.pressure {
            PressureUnit::Psi => "psi",
            PressureUnit::Bar => "bar",
            PressureUnit::Kpa => "kPa",
        }
    }

    pub fn distance(&self, km: f64) -> String {
        match self.distance {
            DistanceUnit::Mi => format!("{} miles", group(km / 1.609_344)),
            DistanceUnit::Km => format!("{} km", group(km)),
        }
    }

    pub fn economy(&self, l_per_100km: f64) -> String {
        match self.economy {
            EconomyUnit::MpgUs => format!("{:.0} mpg", 235.214_583 / l_per_100km),
            EconomyUnit::MpgUk => format!("{:.0} mpg", 282.480_936 / l_per_100km),
            EconomyUnit::LPer100km => format!("{l_per_100km:.1} litres per 100 km"),
        }
    }

    pub fn electricity(&self, kwh_per_100km: f64) -> String {
        match self.distance {
            DistanceUnit::Mi => format!("{:.0} kWh per 100 miles", kwh_per_100km * 1.609_344),
            DistanceUnit::Km => format!("{kwh_per_100km:.0} kWh per 100 km"),
        }
    }
}

/// A whole number with thousands separators: 12,345.
fn group(value: f64) -> String {
    let n = value.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_update_changes_only_its_fields_and_a_bad_one_changes_nothing() {
        let mut state = VehicleState::demo();
        let before = state.clone();
        state.apply(&serde_json::json!({"fuel_percent": 12.5}), "test").unwrap();
        assert_eq!(state.fuel_percent, Some(12.5));
        assert_eq!(state.odometer_km, before.odometer_km);
        let snapshot = state.clone();
        assert!(state
            .apply(&serde_json::json!({"fuel_percent": "lots"}), "test")
            .is_err());
        assert!(state.apply(&serde_json::json!({"warp_drive": true}), "test").is_err());
        assert!(state.apply(&serde_json::json!([1, 2]), "test").is_err());
        assert_eq!(state, snapshot);
    }

    #[test]
    fn a_followed_file_yields_complete_lines_only_and_survives_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signals.jsonl");
        let mut follower = FileFollower::new(&path);
        assert!(follower.poll().0.is_empty(), "a missing file is not an error");
        std::fs::write(&path, "{\"speed_kph\": 50}\n{\"fuel_perc").unwrap();
        let (values, errors) = follower.poll();
        assert_eq!(values, vec![serde_json::json!({"speed_kph": 50})]);
        assert!(errors.is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"ent\": 40}\nnot json\n").unwrap();
        let (values, errors) = follower.poll();
        assert_eq!(values, vec![serde_json::json!({"fuel_percent": 40})]);
        assert_eq!(errors.len(), 1);
        std::fs::write(&path, "{\"speed_kph\": 1}\n").unwrap();
        assert_eq!(follower.poll().0, vec![serde_json::json!({"speed_kph": 1})]);
    }

    #[test]
    fn units_speak_the_market() {
        let us = Units {
            pressure: PressureUnit::Psi,
            distance: DistanceUnit::Mi,
            economy: EconomyUnit::MpgUs,
        };
        let de = Units {
            pressure: PressureUnit::Bar,
            distance: DistanceUnit::Km,
            economy: EconomyUnit::LPer100km,
        };
        assert_eq!(us.pressure(179.0), "26 psi");
        assert_eq!(de.pressure(179.0), "1.8 bar");
        assert_eq!(us.distance(16093.44), "10,000 miles");
        assert_eq!(de.distance(402.0), "402 km");
        assert_eq!(us.economy(5.9), "40 mpg");
        assert_eq!(de.economy(5.9), "5.9 litres per 100 km");
    }
}
