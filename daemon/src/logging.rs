//! Where logs go: the journal (native fields, through tracing-journald) when the
//! process runs under systemd, else stderr, as text or as JSON lines. stdout is
//! never used: `classify` and `chat --json` own it.
//!
//! The format comes from `<prefix>_LOG_FORMAT` (`auto` by default, `journald`,
//! `json`, `text`); `auto` means the journal when systemd connected stderr to it
//! (`JOURNAL_STREAM` is set), text otherwise. The filter comes from
//! `<prefix>_LOG` (`tracing` directives).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Journald,
    Json,
    Text,
}

impl LogFormat {
    /// The format `value` names (`auto`, `journald`, `json`, `text`), given whether
    /// stderr goes to the journal.
    pub fn choose(value: Option<&str>, under_journal: bool) -> Result<LogFormat, String> {
        match value.unwrap_or("auto") {
            "auto" | "" if under_journal => Ok(LogFormat::Journald),
            "auto" | "" | "text" => Ok(LogFormat::Text),
            "journald" => Ok(LogFormat::Journald),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (auto, journald, json, text)")),
        }
    }
}

/// Sets up the global subscriber for a binary whose variables start with
/// `prefix` (`EDGE` or `CLOUD_BRIDGE`), with `default_filter` when none is set.
pub fn init(prefix: &str, default_filter: &str) {
    let filter = EnvFilter::try_from_env(format!("{prefix}_LOG")).unwrap_or_else(|_| default_filter.into());
    let requested = std::env::var(format!("{prefix}_LOG_FORMAT")).ok();
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let (format, problem) = match LogFormat::choose(requested.as_deref(), under_journal) {
        Ok(format) => (format, None),
        Err(problem) => (LogFormat::Text, Some(problem)),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let journal_error = match format {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(journal) => {
                registry.with(journal).init();
                None
            }
            Err(error) => Some(error),
        },
        LogFormat::Json => {
            registry
                .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
                .init();
            None
        }
        LogFormat::Text => {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
                )
                .init();
            None
        }
    };
    if let Some(error) = journal_error {
        // No journal socket: stderr, which systemd also collects.
        tracing_subscriber::registry()
            .with(EnvFilter::try_from_env(format!("{prefix}_LOG")).unwrap_or_else(|_| default_filter.into()))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            )
            .init();
        tracing::warn!(%error, "the journal is not reachable: logging to stderr");
    }
    if let Some(problem) = problem {
        tracing::warn!("{prefix}_LOG_FORMAT: {problem}; logging as text");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_journal_and_explicit_choices_win() {
        assert_eq!(LogFormat::choose(None, true), Ok(LogFormat::Journald));
        assert_eq!(LogFormat::choose(None, false), Ok(LogFormat::Text));
        assert_eq!(LogFormat::choose(Some("json"), true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::choose(Some("journald"), false), Ok(LogFormat::Journald));
        assert!(LogFormat::choose(Some("yaml"), false).is_err());
    }
}
