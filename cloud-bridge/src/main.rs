//! The `cloud-bridge` binary: parses the command line, sets up tracing and
//! signals, and hands each command to the library.

use clap::Parser;
use cloud_bridge::cli::{AgentCommand, Cli, Command, KnowledgeCommand};
use cloud_bridge::config::Config;

fn fleet_ops<'a>(
    config: &Config,
    stores: &'a cloud_bridge::store::Stores,
    transport: &'a dyn cloud_bridge::delivery::Delivery,
    actor: &str,
) -> anyhow::Result<cloud_bridge::fleet::FleetOps<'a>> {
    Ok(cloud_bridge::fleet::FleetOps {
        stores,
        topics: protocol::Topics::new(&config.mqtt.topic_prefix)?,
        transport,
        actor: actor.to_string(),
    })
}

/// A failure is printed as its chain of causes, one line, never a backtrace.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    daemon::logging::init("CLOUD_BRIDGE", "info");
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cloud-bridge: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "cloud-bridge", &mut std::io::stdout().lock());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                daemon::signals::cancel_on_signals(shutdown.clone())?;
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
        Command::Recalls { file } => {
            let stores = cloud_bridge::open_stores(&config)?;
            let text = std::fs::read_to_string(&file)?;
            let recalls: Vec<cloud_bridge::store::Recall> = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a JSON array of recalls: {e}", file.display()))?;
            for recall in &recalls {
                stores.appointments.put_recall(recall)?;
            }
            println!("stored {} recalls", recalls.len());
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
            KnowledgeCommand::Build {
                pack,
                out,
                delta_from,
                base_version,
            } => {
                let pack = match pack {
                    Some(p) => p,
                    None => daemon::locate::find_pack_dir(&config.knowledge.pack)?,
                };
                let delta = delta_from.as_deref().zip(base_version);
                let payload = cloud_bridge::fleet::build(&pack, &daemon::locate::intent_labels(), &out, delta)?;
                println!(
                    "built {} v{} ({:?}, {} articles once applied) into {}",
                    payload.pack.name,
                    payload.pack.version,
                    payload.kind(),
                    payload.article_count,
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
            KnowledgeCommand::Status { channel, shadows, json } => {
                let stores = cloud_bridge::open_stores(&config)?;
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                if !shadows.is_empty() {
                    let transport = runtime.block_on(cloud_bridge::fleet::transport(&config))?;
                    let Some(iot) = transport.iot_data_client() else {
                        anyhow::bail!("--shadows needs delivery.mode = \"iot_data\"");
                    };
                    for thing in &shadows {
                        if let Some(car) = runtime.block_on(cloud_bridge::fleet::car_from_shadow(&iot, thing))? {
                            stores.fleet.record_car(&car)?;
                        }
                    }
                }
                let status = cloud_bridge::fleet::status(&stores, &channel)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    print!("{status}");
                }
                Ok(())
            }
            command => {
                let stores = cloud_bridge::open_stores(&config)?;
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    let transport = cloud_bridge::fleet::transport(&config).await?;
                    let manifest = match command {
                        KnowledgeCommand::Publish {
                            notice,
                            channel,
                            stage,
                            actor,
                        } => {
                            let ops = fleet_ops(&config, &stores, transport.as_ref(), &actor.actor)?;
                            let rollout = protocol::Rollout {
                                percent: stage.percent,
                                cars: stage.cars,
                                paused: false,
                            };
                            match (notice, channel) {
                                (Some(path), _) => {
                                    let notice: protocol::KnowledgeManifestNotice =
                                        serde_json::from_slice(&std::fs::read(&path)?)?;
                                    ops.publish(notice, rollout, "publish").await?
                                }
                                (None, Some(channel)) => ops.restage(&channel, rollout, "restage").await?,
                                (None, None) => anyhow::bail!("give --notice or --channel"),
                            }
                        }
                        KnowledgeCommand::Pause { channel, actor } => {
                            fleet_ops(&config, &stores, transport.as_ref(), &actor.actor)?
                                .pause(&channel)
                                .await?
                        }
                        KnowledgeCommand::Rollback {
                            channel,
                            to,
                            key,
                            valid_hours,
                            url,
                            actor,
                        } => {
                            let key = cloud_bridge::fleet::read_key(&key)?;
                            fleet_ops(&config, &stores, transport.as_ref(), &actor.actor)?
                                .rollback(&channel, to, &key, jiff::SignedDuration::from_hours(valid_hours), url)
                                .await?
                        }
                        _ => unreachable!("handled above"),
                    };
                    print!("{}", cloud_bridge::fleet::status(&stores, &manifest.channel)?);
                    Ok(())
                })
            }
        },
        Command::Completions { .. } => unreachable!("completions need no config and return before it is loaded"),
        Command::Validate => {
            cloud_bridge::broker::mqtt_options(&config)?;
            cloud_bridge::open_stores(&config)?;
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
        #[cfg(feature = "demo")]
        Command::Demo => cloud_bridge::demo::run(),
    }
}
