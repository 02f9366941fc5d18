use clap::Parser;
use cloud_bridge::cli::{AgentCommand, Cli, Command};
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
