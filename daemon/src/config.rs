//! Layered configuration for the daemons: embedded TOML defaults, then a file,
//! then `{PREFIX}SECTION__KEY` environment variables, deserialised into the
//! daemon's own typed config by figment, which keeps each value's provenance. Each
//! daemon owns its keys and validation; this module owns only the layering, the
//! system file's place under systemd, and the error that names the key and the
//! file or variable a bad value came from.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

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
/// deserialises the result; an error names the key and the layer it came from.
/// cloud-bridge's configuration is layered the same way.
pub fn layered<T: serde::de::DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
    prefix: &str,
) -> Result<T, ConfigError> {
    let mut merged = parse(defaults, "(embedded defaults)")?;
    let mut figment = Figment::new().merge(Layer::new("embedded defaults", None, &merged)?);
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let table = parse(&text, &path.display().to_string())?;
        figment = figment.merge(Layer::new(
            "config file",
            Some(Source::File(path.to_path_buf())),
            &table,
        )?);
        merge(&mut merged, table);
    }
    for (key, value) in env {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        // Each variable is a layer of its own: one key, named after the variable.
        let mut only = toml::Table::new();
        let path: Vec<&str> = rest.split("__").collect();
        set_path(&mut only, &merged, &path, parse_scalar(&value));
        figment = figment.merge(Layer::new(&format!("environment variable {key}"), None, &only)?);
        merge(&mut merged, only);
    }
    figment.extract().map_err(|e| bad_value(&e))
}

/// A value that does not fit its key: `key: what is wrong`, from the layer that
/// set it (the file by its path, a variable by its name).
fn bad_value(error: &figment::Error) -> ConfigError {
    let origin = match &error.metadata {
        Some(Metadata {
            source: Some(Source::File(path)),
            ..
        }) => path.display().to_string(),
        Some(metadata) => metadata.name.to_string(),
        None => "the merged settings".to_string(),
    };
    let key = error.path.join(".");
    // figment quotes a list of expected values twice (``a` or `b``).
    let what = error.kind.to_string().replace("``", "`");
    ConfigError::Parse {
        origin,
        message: if key.is_empty() { what } else { format!("{key}: {what}") },
    }
}

/// One layer of settings for figment, named for where it came from.
struct Layer {
    metadata: Metadata,
    data: Dict,
}

impl Layer {
    fn new(name: &str, source: Option<Source>, table: &toml::Table) -> Result<Layer, ConfigError> {
        let invalid = |message: String| ConfigError::Parse {
            origin: name.to_string(),
            message,
        };
        let data = Value::serialize(table)
            .map_err(|e| invalid(e.to_string()))?
            .into_dict()
            .ok_or_else(|| invalid("not a table".to_string()))?;
        let metadata = match source {
            Some(source) => Metadata::from(name.to_string(), source),
            None => Metadata::named(name.to_string()),
        };
        Ok(Layer { metadata, data })
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

fn parse(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// Sets `path` in `table` to `value`, spelling each key as `known` (the layers so
/// far) does, matched case-insensitively, since environment names are upper case
/// but `markets.UK` is not; a key whose known value is a string stays a string.
fn set_path(table: &mut toml::Table, known: &toml::Table, path: &[&str], value: toml::Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = known
        .keys()
        .find(|k| k.eq_ignore_ascii_case(first))
        .cloned()
        .unwrap_or_else(|| first.to_lowercase());
    if rest.is_empty() {
        // A key whose default is a string stays a string (`SOCKET_GROUP=1000`).
        let value = match (known.get(&key), value) {
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
    let empty = toml::Table::new();
    let known = match known.get(&key) {
        Some(toml::Value::Table(inner)) => inner,
        _ => &empty,
    };
    let mut inner = toml::Table::new();
    set_path(&mut inner, known, rest, value);
    table.insert(key, toml::Value::Table(inner));
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
        let error = layered::<Settings>(DEFAULTS, None, env(&[("APP__SITE__PORT", "lots")]), "APP__").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("APP__SITE__PORT") && message.contains("port"),
            "{message}"
        );
        std::fs::write(&file, "[site]\nport = \"high\"\n").unwrap();
        let error = layered::<Settings>(DEFAULTS, Some(&file), env(&[]), "APP__").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("bad.toml") && message.contains("port"), "{message}");
        let missing = dir.path().join("missing.toml");
        let error = layered::<Settings>(DEFAULTS, Some(&missing), env(&[]), "APP__").unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    }
}
