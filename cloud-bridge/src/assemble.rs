//! Putting the supervisor's parts together from its config: the stores, the
//! cloud knowledge base (compiled with the shipped model's embeddings, as cars
//! embed) and the LLM provider.

use std::path::PathBuf;
use std::sync::Arc;

use daemon::locate::{self, LocateError, ModelEmbedder};

use crate::config::{Config, ProviderKind};
use crate::llm::bedrock::{BedrockProvider, BedrockSettings};
use crate::llm::local::LocalProvider;
use crate::llm::LlmProvider;
use crate::metrics::Metrics;
use crate::store::{SqliteStore, StoreError, Stores};

/// Why a part could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("cannot open the store {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot load the model the knowledge base embeds with")]
    Model(#[source] LocateError),
    #[error(transparent)]
    NoPack(LocateError),
    #[error("cannot compile or open the cloud knowledge base")]
    Knowledge(#[source] Box<knowledge::KnowledgeError>),
}

/// Opens every store on the configured SQLite file.
pub fn open_stores(config: &Config) -> Result<Stores, AssembleError> {
    let path = config.store_path();
    let store = SqliteStore::open(&path).map_err(|source| AssembleError::Store { path, source })?;
    Ok(Stores::sqlite(Arc::new(store)))
}

/// The cloud knowledge base: the configured pack (the shipped one by default),
/// compiled beside the store with the shipped model's embeddings.
pub fn open_knowledge(config: &Config) -> Result<knowledge::KnowledgeBase, AssembleError> {
    let db = config.store_path().with_file_name("cloud-knowledge.sqlite");
    // One model load for both the compile and the searches.
    let classifier = locate::load_classifier(&locate::ModelArgs::default()).map_err(AssembleError::Model)?;
    let embedder = Arc::new(ModelEmbedder::new(Arc::new(classifier)));
    let pack = locate::find_pack_dir(&config.knowledge.pack).map_err(AssembleError::NoPack)?;
    let knowledge = |e| AssembleError::Knowledge(Box::new(e));
    knowledge::compile(&pack, &db, embedder.as_ref(), &locate::intent_labels()).map_err(knowledge)?;
    knowledge::KnowledgeBase::open(&db, embedder).map_err(knowledge)
}

/// The configured provider.
pub async fn provider(config: &Config, metrics: Metrics) -> Arc<dyn LlmProvider> {
    match config.llm.provider {
        ProviderKind::Local => Arc::new(LocalProvider),
        ProviderKind::Bedrock => {
            let l = &config.llm;
            let settings = BedrockSettings {
                model_id: l.model_id.clone(),
                max_tokens: l.max_tokens,
                temperature: l.temperature,
                guardrail: (!l.guardrail_id.is_empty()).then(|| (l.guardrail_id.clone(), l.guardrail_version.clone())),
                deadline: std::time::Duration::from_millis(l.deadline_ms),
                retry_initial: std::time::Duration::from_millis(l.retry_initial_ms),
                retry_max: std::time::Duration::from_millis(l.retry_max_ms),
                max_tool_rounds: l.max_tool_rounds,
            };
            let nonempty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
            Arc::new(
                BedrockProvider::from_environment(settings, nonempty(&l.region), nonempty(&l.endpoint_url), metrics)
                    .await,
            )
        }
    }
}
