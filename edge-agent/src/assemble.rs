//! Putting a car together from its config: the intent model, the knowledge base,
//! the state store and the vehicle's signal source, into the [`Engine`] that
//! `serve` and `chat` run (and that cloud-bridge's demo runs in-process).

use std::path::PathBuf;
use std::sync::Arc;

use daemon::locate::{self, LocateError};

use crate::cli::RuntimeArgs;
use crate::config::Config;
use crate::dialogue::Assistant;
use crate::engine::Engine;
use crate::knowledge_base::{self, KnowledgeBaseError};
use crate::store::{Retention, Store, StoreError};
use crate::vehicle::{self, FileFollower, Vehicle, VehicleState};

/// Why a car could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("cannot load the intent model")]
    Model(#[source] LocateError),
    #[error(transparent)]
    Knowledge(#[from] KnowledgeBaseError),
    #[error("cannot open the state database {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("chat reads turns on stdin, so its signals must come from a file")]
    SignalsOnStdin,
}

/// Where the vehicle's signals come from while the car runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Nothing else reads stdin: `--signals -` may follow it.
    Free,
    /// The driver's turns come on stdin (`chat`).
    TakenByTurns,
}

/// The engine `serve` runs, assembled from `config`.
pub fn open_engine(config: &Config, args: &RuntimeArgs) -> Result<Engine, AssembleError> {
    let (assistant, vehicle, store) = assemble(config, args, Stdin::Free)?;
    Ok(Engine::new(assistant, vehicle, store))
}

/// Loads the model and the knowledge base, opens the store, and sets up the
/// vehicle (the demo state, followed by the configured signal source).
pub fn assemble(
    config: &Config,
    args: &RuntimeArgs,
    stdin: Stdin,
) -> Result<(Assistant, Vehicle, Store), AssembleError> {
    let classifier = Arc::new(locate::load_classifier(&args.model).map_err(AssembleError::Model)?);
    let embedder = Arc::new(locate::ModelEmbedder::new(classifier.clone()));
    let kb = Arc::new(knowledge_base::open(config, embedder)?);
    let store = open_store(config)?;
    let mut vehicle = Vehicle::new(VehicleState::demo());
    let signals = args
        .signals
        .clone()
        .unwrap_or_else(|| PathBuf::from(&config.vehicle.signals));
    match (signals.to_str(), stdin) {
        (Some("demo"), _) => {}
        (Some("-"), Stdin::TakenByTurns) => return Err(AssembleError::SignalsOnStdin),
        (Some("-"), Stdin::Free) => vehicle.add_source(Box::new(vehicle::ChannelSource::from_reader(
            "stdin",
            std::io::BufReader::new(std::io::stdin()),
        ))),
        _ => vehicle.add_source(Box::new(FileFollower::new(&signals))),
    }
    Ok((Assistant::new(config.clone(), classifier, kb), vehicle, store))
}

fn open_store(config: &Config) -> Result<Store, AssembleError> {
    let path = config.state_dir().join("edge-agent.sqlite");
    let retention = Retention {
        days: config.history.retention_days,
        max_turns_per_conversation: config.history.max_turns_per_conversation,
    };
    Store::open(&path, retention).map_err(|source| AssembleError::Store { path, source })
}
