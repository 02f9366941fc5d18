//! The binary's commands, one short function each, over the library's parts. This
//! is the only place errors become `anyhow`: the library's are typed.

mod kb;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use daemon::{locate, signals};
use edge_agent::assemble::{self, Stdin};
use edge_agent::cli::{AskArgs, ChatArgs, ClassifyArgs, Cli, Command, KbCommand, ServeArgs, ValidateArgs};
use edge_agent::config::Config;
use edge_agent::engine::Engine;
use edge_agent::{chat, classify, client, fleet, serve, uplink};
use tokio_util::sync::CancellationToken;

/// Runs one command to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // What the car keeps (history, the outbox, the compiled pack) is its
    // owner's alone, with or without systemd's UMask=: files 0600, folders 0700.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    match cli.command {
        Command::Classify(args) => classify_lines(&args),
        Command::Chat(args) => chat_on_terminal(&args),
        Command::Serve(args) => serve_until_stopped(&args),
        Command::Ask(args) => ask_once(&args),
        Command::Kb { command } => match command {
            KbCommand::Build(args) => kb::build(&args),
            KbCommand::Eval(args) => kb::eval(&args),
            KbCommand::Apply(args) => kb::apply(&args),
            KbCommand::Status(args) => kb::status(&args),
            KbCommand::Rollback(args) => kb::rollback(&args),
        },
        Command::Validate(args) => validate(&args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "edge-agent", &mut std::io::stdout().lock());
            Ok(())
        }
    }
}

fn classify_lines(args: &ClassifyArgs) -> anyhow::Result<()> {
    let classifier = locate::load_classifier(&args.model).context("cannot load the intent model")?;
    let summary = classify::run(&classifier, std::io::stdin().lock(), std::io::stdout().lock())?;
    tracing::info!(lines = summary.lines, errors = summary.errors, "classify finished");
    Ok(())
}

fn chat_on_terminal(args: &ChatArgs) -> anyhow::Result<()> {
    let config = Config::load(args.runtime.config.config.as_deref())?;
    let (assistant, vehicle, store) = assemble::assemble(&config, &args.runtime, Stdin::TakenByTurns)?;
    let engine = Arc::new(Engine::new(assistant, vehicle, store));
    let id = args
        .conversation
        .clone()
        .unwrap_or_else(|| format!("chat-{}", jiff::Timestamp::now().as_millisecond()));
    let shutdown = CancellationToken::new();
    let uplink = start_uplink_beside_chat(&config, &engine, &shutdown)?;
    let options = chat::ChatOptions::for_terminal(args.json);
    let input = chat::Input::new(std::io::stdin().lock(), options.prompt);
    let summary = chat::run(&engine, &id, &options, input, std::io::stdout().lock())?;
    shutdown.cancel();
    if let Some(runtime) = uplink {
        runtime.shutdown_timeout(Duration::from_millis(500));
    }
    tracing::info!(turns = summary.turns, errors = summary.errors, "chat finished");
    Ok(())
}

/// With an uplink configured, it runs beside the chat on a small runtime.
fn start_uplink_beside_chat(
    config: &Config,
    engine: &Arc<Engine>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<tokio::runtime::Runtime>> {
    if config.uplink.host.is_empty() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let connector = uplink::RumqttcConnector::new(&config.uplink)?;
    runtime.spawn(uplink::run(
        connector,
        engine.clone(),
        config.uplink.clone(),
        None,
        shutdown.clone(),
    ));
    Ok(Some(runtime))
}

fn serve_until_stopped(args: &ServeArgs) -> anyhow::Result<()> {
    serve::return_freed_memory_promptly();
    let config = Config::load(args.runtime.config.config.as_deref())?;
    let engine = Arc::new(assemble::open_engine(&config, &args.runtime)?);
    // Turns run on the blocking pool under one mutex; 64 threads is far more
    // than they can use, and stays inside the unit's TasksMax.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        signals::cancel_on_signals(shutdown.clone())?;
        anyhow::Ok(serve::run(engine, &config, shutdown).await?)
    })?;
    // Dropping the runtime waits for blocking tasks; the store closes after.
    drop(runtime);
    tracing::info!("stopped");
    Ok(())
}

fn ask_once(args: &AskArgs) -> anyhow::Result<()> {
    let socket = match &args.socket {
        Some(s) => s.clone(),
        None => Config::load(args.config.config.as_deref())?.socket_path(),
    };
    let mut body = serde_json::json!({ "text": args.text });
    if let Some(id) = &args.conversation {
        body["conversation_id"] = serde_json::Value::String(id.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, bytes) = runtime.block_on(client::request(&socket, hyper::Method::POST, "/v1/ask", Some(body)))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("the daemon answered {status} with non-JSON"))?;
    anyhow::ensure!(
        (200..300).contains(&status),
        "the daemon answered {status}: {}",
        value["error"].as_str().unwrap_or("no message")
    );
    if args.json {
        println!("{value}");
        return Ok(());
    }
    let field = |name: &str| value[name].as_str().unwrap_or("?").to_string();
    println!(
        "{}",
        value["answer"].as_str().unwrap_or("(answer pending; see /v1/events)")
    );
    println!(
        "     intent {} · sentiment {} · route {} · conversation {}",
        field("intent"),
        field("sentiment"),
        field("route"),
        field("conversation_id")
    );
    Ok(())
}

fn validate(args: &ValidateArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.config.as_deref())?;
    let classifier = locate::load_classifier(&args.model).context("cannot load the intent model")?;
    let pack = locate::find_pack_dir(&config.knowledge.pack)?;
    let (manifest, articles) = knowledge::pack::load(&pack, &locate::intent_labels())?;
    validate_what_serve_needs(&config)?;
    eprintln!(
        "config ok (market {}); model ok ({}; cpu {}); pack ok ({} v{}, {} articles); state in {}",
        config.vehicle.market,
        classifier.dir().display(),
        models::cpu_features(),
        manifest.name,
        manifest.version,
        articles.len(),
        config.state_dir().display()
    );
    Ok(())
}

/// What `serve` would refuse, found before it starts (systemd's ExecStartPre):
/// the uplink's CA, certificate and key, the socket's group, the fleet's keys
/// and its download CA.
fn validate_what_serve_needs(config: &Config) -> anyhow::Result<()> {
    if !config.uplink.host.is_empty() {
        uplink::RumqttcConnector::new(&config.uplink)?;
    }
    serve::check_socket_group(&config.api.socket_group)?;
    config.fleet.keys.check().map_err(anyhow::Error::msg)?;
    if !config.fleet.channel.is_empty() {
        anyhow::ensure!(
            !config.fleet.keys.0.is_empty(),
            "fleet.channel is `{}` but fleet.keys is empty: every bundle would be refused",
            config.fleet.channel
        );
        fleet::Downloader::new(&config.fleet.ca_file, Duration::from_secs(1)).context("fleet.ca_file")?;
    }
    Ok(())
}
