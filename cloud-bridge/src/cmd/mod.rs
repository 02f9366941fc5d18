//! The binary's commands, one short function each, over the library's parts. This
//! is the only place errors become `anyhow`: the library's are typed.

#[cfg(feature = "demo")]
pub mod demo;
mod knowledge;
pub mod serve;

use cloud_bridge::assemble::open_stores;
use cloud_bridge::cli::{AgentCommand, Cli, Command};
use cloud_bridge::config::Config;
use cloud_bridge::store::{Profile, Recall};

/// Runs one command to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "cloud-bridge", &mut std::io::stdout().lock());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve::until_stopped(config),
        Command::Agent { command } => agent(&config, command),
        Command::Report { days, json } => {
            let stores = open_stores(&config)?;
            cloud_bridge::report::print(&stores, days, json, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Profiles { file } => import_profiles(&config, &file),
        Command::Recalls { file } => import_recalls(&config, &file),
        Command::Knowledge { command } => knowledge::run(&config, command),
        Command::Validate => validate(&config),
        Command::Completions { .. } => unreachable!("completions need no config and return before it is loaded"),
        #[cfg(feature = "demo")]
        Command::Demo => demo::run(),
    }
}

/// `agent`: the contact centre's desk from the shell.
fn agent(config: &Config, command: AgentCommand) -> anyhow::Result<()> {
    let stores = open_stores(config)?;
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

/// A JSON array of `T` from `file`, or an error that names the file.
fn read_records<T: serde::de::DeserializeOwned>(file: &std::path::Path, what: &str) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(file)?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not a JSON array of {what}: {e}", file.display()))
}

fn import_profiles(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let stores = open_stores(config)?;
    let profiles: Vec<Profile> = read_records(file, "profiles")?;
    for p in &profiles {
        stores.profiles.put(p)?;
    }
    println!("stored {} profiles", profiles.len());
    Ok(())
}

fn import_recalls(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let stores = open_stores(config)?;
    let recalls: Vec<Recall> = read_records(file, "recalls")?;
    for recall in &recalls {
        stores.appointments.put_recall(recall)?;
    }
    println!("stored {} recalls", recalls.len());
    Ok(())
}

fn validate(config: &Config) -> anyhow::Result<()> {
    cloud_bridge::broker::mqtt_options(config)?;
    open_stores(config)?;
    let pack = daemon::locate::find_pack_dir(&config.knowledge.pack)?;
    eprintln!(
        "config ok (provider {:?}, delivery {:?}); store {}; pack {}",
        config.llm.provider,
        config.delivery.mode,
        config.store_path().display(),
        pack.display()
    );
    Ok(())
}
