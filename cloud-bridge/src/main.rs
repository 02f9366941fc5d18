//! The `cloud-bridge` binary: parses the command line, sets up tracing and
//! signals, and hands each command to the library.

use clap::Parser;
use cloud_bridge::cli::{AgentCommand, Cli, Command, KnowledgeCommand};
use cloud_bridge::config::Config;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                edge_agent::signals::cancel_on_signals(shutdown.clone())?;
                cloud_bridge::run(config, shutdown).await
            })
        }
        Command::Agent { command } => {
            let stores = cloud_bridge::open_stores(&config)?;
            match command {
                AgentCommand::List { all } => {
                    cloud_bridge::agent::list(&stores, all, &mut std::io::stdout().lock())?;
                }
                AgentCommand::Take { handoff, agent } => {
                    let h = cloud_bridge::agent::take(&stores, &handoff, &agent)?;
                    println!("{} taken by {agent}: {:?}", h.handoff_id, h.utterance);
                }
                AgentCommand::Reply { handoff, text, agent } => {
                    cloud_bridge::agent::reply(&stores, &handoff, &agent, &text)?;
                    println!("reply queued for {handoff}");
                }
                AgentCommand::Close { handoff } => {
                    cloud_bridge::agent::close(&stores, &handoff)?;
                    println!("{handoff} closed");
                }
            }
            Ok(())
        }
        Command::Report { days, json } => {
            let stores = cloud_bridge::open_stores(&config)?;
            cloud_bridge::report::print(&stores, days, json, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Profiles { file } => {
            let stores = cloud_bridge::open_stores(&config)?;
            let text = std::fs::read_to_string(&file)?;
            let profiles: Vec<cloud_bridge::store::Profile> = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a JSON array of profiles: {e}", file.display()))?;
            for p in &profiles {
                stores.profiles.put(p)?;
            }
            println!("stored {} profiles", profiles.len());
            Ok(())
        }
        Command::Knowledge { command } => match command {
            KnowledgeCommand::Keygen { out } => {
                let (id, public) = cloud_bridge::fleet::keygen(&out)?;
                println!(
                    "key {id}: secret in {}, public in {}",
                    out.join(format!("{id}.key")).display(),
                    out.join(format!("{id}.pub")).display()
                );
                println!("cars trust it with, in their config:\n[fleet.keys.{id}]\npublic_key = \"{public}\"");
                Ok(())
            }
            KnowledgeCommand::Build { pack, out } => {
                let report = cloud_bridge::build_knowledge(&config, pack.as_deref(), &out)?;
                println!(
                    "built {} v{}: {} articles into {}",
                    report.name,
                    report.version,
                    report.articles,
                    out.display()
                );
                Ok(())
            }
            KnowledgeCommand::Sign {
                bundle,
                key,
                channel,
                version,
                url,
                valid_hours,
                models,
                markets,
                publisher,
                delta_base,
                out,
            } => {
                let key = cloud_bridge::fleet::read_key(&key)?;
                let release = cloud_bridge::fleet::Release {
                    channel,
                    version,
                    valid_for: jiff::SignedDuration::from_hours(valid_hours),
                    targets: knowledge::bundle::Targets { models, markets },
                    payload_url: url,
                    publisher,
                    delta_base,
                };
                let notice = cloud_bridge::fleet::sign(&bundle, &key, &release)?;
                std::fs::write(&out, serde_json::to_vec_pretty(&notice)?)?;
                println!(
                    "signed {} v{} with key {} into {}",
                    release.channel,
                    release.version,
                    notice.key_id,
                    out.display()
                );
                Ok(())
            }
        },
        Command::Validate => {
            cloud_bridge::service::mqtt_options(&config)?;
            cloud_bridge::open_stores(&config)?;
            let pack = edge_agent::locate::find_pack_dir(&config.knowledge.pack)?;
            eprintln!(
                "config ok (provider {:?}, delivery {:?}); store {}; pack {}",
                config.llm.provider,
                config.delivery.mode,
                config.store_path().display(),
                pack.display()
            );
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo => cloud_bridge::demo::run(),
    }
}
