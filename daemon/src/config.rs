//! Layered configuration for the daemons: embedded TOML defaults, then a file,
//! then `{PREFIX}SECTION__KEY` environment variables, deserialised into the
//! daemon's own typed config. Each daemon owns its keys and validation; this
//! module owns only the layering, the system file's place under systemd, and the
//! error that names where a bad value came from.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// The file to layer: the one given, else `system` when it exists.
pub fn config_file(given: Option<&Path>, system: &str) -> Option<PathBuf> {
    // Under systemd, `ConfigurationDirectory=` names the folder (the first, when
    // several are given); its `config.toml` stands in for the system file.
    let system = match std::env::var_os("CONFIGURATION_DIRECTORY") {
        Some(dirs) => {
            let dirs = dirs.to_string_lossy().to_string();
            PathBuf::from(dirs.split(':').next().unwrap_or_default()).join("config.toml")
        }
        None => PathBuf::from(system),
    };
    given
        .map(Path::to_path_buf)
        .or_else(|| system.is_file().then_some(system))
}

/// Layers TOML settings: `defaults`, then `file`, then every `{prefix}SECTION__KEY`
/// variable of `env` (matched case-insensitively against the keys), and
/// deserialises the result. cloud-bridge's configuration is layered the same way.
pub fn layered<T: serde::de::DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
    prefix: &str,
) -> Result<T, ConfigError> {
    let mut merged = parse(defaults, "(embedded defaults)")?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        merge(&mut merged, parse(&text, &path.display().to_string())?);
    }
    for (key, value) in env {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        set_path(&mut merged, &rest.split("__").collect::<Vec<_>>(), parse_scalar(&value));
    }
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            origin: "(merged)".to_string(),
            message: e.message().to_string(),
        })
}

fn parse(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// Sets `path` (matched case-insensitively against existing keys, since
/// environment names are upper case but `markets.UK` is not) to `value`.
fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = table
        .keys()
        .find(|k| k.eq_ignore_ascii_case(first))
        .cloned()
        .unwrap_or_else(|| first.to_lowercase());
    if rest.is_empty() {
        // A key whose default is a string stays a string (`SOCKET_GROUP=1000`).
        let value = match (table.get(&key), value) {
            (Some(toml::Value::String(_)), value) if !value.is_str() => match value {
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    toml::Value::String(value.to_string())
                }
                other => other,
            },
            (_, value) => value,
        };
        table.insert(key, value);
        return;
    }
    let entry = table
        .entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(inner) = entry {
        set_path(inner, rest, value);
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// An environment value as TOML when it parses as a scalar (numbers, booleans),
/// else as a string.
fn parse_scalar(value: &str) -> toml::Value {
    format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Settings {
        site: Site,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Site {
        name: String,
        port: u16,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    }

    const DEFAULTS: &str = "[site]\nname = \"a\"\nport = 1\n[site.labels]\nUK = \"x\"\n";

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn defaults_then_the_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[site]\nname = \"from-file\"\nport = 2\n").unwrap();
        let settings: Settings = layered(
            DEFAULTS,
            Some(&file),
            env(&[
                ("APP__SITE__PORT", "3"),
                ("APP__SITE__LABELS__uk", "y"),
                ("OTHER__SITE__PORT", "9"),
            ]),
            "APP__",
        )
        .unwrap();
        assert_eq!(settings.site.name, "from-file");
        assert_eq!(settings.site.port, 3, "the environment wins over the file");
        assert_eq!(
            settings.site.labels.get("UK").map(String::as_str),
            Some("y"),
            "keys match case-insensitively"
        );
    }

    #[test]
    fn a_number_given_for_a_string_stays_a_string_and_errors_say_where() {
        let settings: Settings = layered(DEFAULTS, None, env(&[("APP__SITE__NAME", "1000")]), "APP__").unwrap();
        assert_eq!(settings.site.name, "1000");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[site\n").unwrap();
        let error = layered::<Settings>(DEFAULTS, Some(&file), env(&[]), "APP__").unwrap_err();
        assert!(error.to_string().contains("bad.toml"), "{error}");
        let missing = dir.path().join("missing.toml");
        let error = layered::<Settings>(DEFAULTS, Some(&missing), env(&[]), "APP__").unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    }
}
