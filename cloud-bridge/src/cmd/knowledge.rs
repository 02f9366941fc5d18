//! `cloud-bridge knowledge`: fleet ops' signed knowledge updates: keys, bundles,
//! signing, the staged rollout (publish, pause, rollback) and the fleet's status.

use cloud_bridge::cli::{ActorArgs, BuildArgs, FleetStatusArgs, KnowledgeCommand, PublishArgs, RollbackArgs, SignArgs};
use cloud_bridge::config::Config;
use cloud_bridge::delivery::Delivery;
use cloud_bridge::fleet::{self, FleetOps};
use cloud_bridge::store::Stores;

/// Runs one `knowledge` subcommand.
pub fn run(config: &Config, command: KnowledgeCommand) -> anyhow::Result<()> {
    match command {
        KnowledgeCommand::Keygen { out } => keygen(&out),
        KnowledgeCommand::Build(args) => build(config, args),
        KnowledgeCommand::Sign(args) => sign(args),
        KnowledgeCommand::Status(args) => status(config, &args),
        KnowledgeCommand::Publish(args) => rollout(config, Step::Publish(args)),
        KnowledgeCommand::Pause { channel, actor } => rollout(config, Step::Pause { channel, actor }),
        KnowledgeCommand::Rollback(args) => rollout(config, Step::Rollback(args)),
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    let (id, public) = fleet::keygen(out)?;
    println!(
        "key {id}: secret in {}, public in {}",
        out.join(format!("{id}.key")).display(),
        out.join(format!("{id}.pub")).display()
    );
    println!("cars trust it with, in their config:\n[fleet.keys.{id}]\npublic_key = \"{public}\"");
    Ok(())
}

fn build(config: &Config, args: BuildArgs) -> anyhow::Result<()> {
    let pack = match args.pack {
        Some(p) => p,
        None => daemon::locate::find_pack_dir(&config.knowledge.pack)?,
    };
    let delta = args.delta_from.as_deref().zip(args.base_version);
    let payload = fleet::build(&pack, &daemon::locate::intent_labels(), &args.out, delta)?;
    println!(
        "built {} v{} ({:?}, {} articles once applied) into {}",
        payload.pack.name,
        payload.pack.version,
        payload.kind(),
        payload.article_count,
        args.out.display()
    );
    Ok(())
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    let key = fleet::read_key(&args.key)?;
    let release = fleet::Release {
        channel: args.channel,
        version: args.version,
        valid_for: jiff::SignedDuration::from_hours(args.valid_hours),
        targets: knowledge::bundle::Targets {
            models: args.models,
            markets: args.markets,
        },
        payload_url: args.url,
        publisher: args.publisher,
    };
    let notice = fleet::sign(&args.bundle, &key, &release)?;
    std::fs::write(&args.out, serde_json::to_vec_pretty(&notice)?)?;
    println!(
        "signed {} v{} with key {} into {}",
        release.channel,
        release.version,
        notice.key_id,
        args.out.display()
    );
    Ok(())
}

fn status(config: &Config, args: &FleetStatusArgs) -> anyhow::Result<()> {
    let stores = cloud_bridge::assemble::open_stores(config)?;
    if !args.shadows.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(record_shadows(config, &stores, &args.shadows))?;
    }
    let status = fleet::status(&stores, &args.channel)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{status}");
    }
    Ok(())
}

/// Reads the cars' `knowledge` named shadows (GetThingShadow) into the store.
async fn record_shadows(config: &Config, stores: &Stores, things: &[String]) -> anyhow::Result<()> {
    let transport = fleet::transport(config).await?;
    let Some(iot) = transport.iot_data_client() else {
        anyhow::bail!("--shadows needs delivery.mode = \"iot_data\"");
    };
    for thing in things {
        if let Some(car) = fleet::car_from_shadow(&iot, thing).await? {
            stores.fleet.record_car(&car)?;
        }
    }
    Ok(())
}

/// A step of a staged rollout.
enum Step {
    Publish(PublishArgs),
    Pause { channel: String, actor: ActorArgs },
    Rollback(RollbackArgs),
}

impl Step {
    fn actor(&self) -> &str {
        match self {
            Step::Publish(args) => &args.actor.actor,
            Step::Pause { actor, .. } => &actor.actor,
            Step::Rollback(args) => &args.actor.actor,
        }
    }
}

/// Runs one rollout step with the configured transport, then prints the
/// channel's status.
fn rollout(config: &Config, step: Step) -> anyhow::Result<()> {
    let stores = cloud_bridge::assemble::open_stores(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let transport: Box<dyn Delivery> = fleet::transport(config).await?;
        let ops = FleetOps {
            stores: &stores,
            topics: protocol::Topics::new(&config.mqtt.topic_prefix)?,
            transport: transport.as_ref(),
            actor: step.actor().to_string(),
        };
        let manifest = match step {
            Step::Publish(args) => publish(&ops, args).await?,
            Step::Pause { channel, .. } => ops.pause(&channel).await?,
            Step::Rollback(args) => rollback(&ops, args).await?,
        };
        print!("{}", fleet::status(&stores, &manifest.channel)?);
        Ok(())
    })
}

async fn publish(ops: &FleetOps<'_>, args: PublishArgs) -> anyhow::Result<knowledge::bundle::Manifest> {
    let rollout = protocol::Rollout {
        percent: args.stage.percent,
        cars: args.stage.cars,
        paused: false,
    };
    Ok(match (args.notice, args.channel) {
        (Some(path), _) => {
            let notice: protocol::KnowledgeManifestNotice = serde_json::from_slice(&std::fs::read(&path)?)?;
            ops.publish(notice, rollout, "publish").await?
        }
        (None, Some(channel)) => ops.restage(&channel, rollout, "restage").await?,
        (None, None) => anyhow::bail!("give --notice or --channel"),
    })
}

async fn rollback(ops: &FleetOps<'_>, args: RollbackArgs) -> anyhow::Result<knowledge::bundle::Manifest> {
    let key = fleet::read_key(&args.key)?;
    let valid_for = jiff::SignedDuration::from_hours(args.valid_hours);
    Ok(ops.rollback(&args.channel, args.to, &key, valid_for, args.url).await?)
}
