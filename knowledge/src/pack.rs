//! Knowledge packs: the reviewable source format and its compiler.
//!
//! A pack is a folder: `pack.toml` (name, version, locale, and the applicability
//! every article inherits) and `articles/*.toml`, each a list of `[[article]]`
//! tables. [`compile`] checks every article (an error names its file and line),
//! then writes a fresh SQLite base beside the target and renames it into place, so a
//! reader never sees half a pack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::article::{Applicability, Article};
use crate::embed::Embedder;
use crate::error::{KnowledgeError, Result, SqliteContext};
use crate::schema;

/// Longest spoken summary, in characters: two sentences a driver can listen to.
pub const MAX_SUMMARY_CHARS: usize = 320;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackManifest {
    /// Machine name, e.g. `kestrel-voyager-2025`.
    pub name: String,
    /// What the pack is for, for people.
    pub title: String,
    pub version: u64,
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Applicability every article inherits unless it says otherwise.
    #[serde(default)]
    pub applies: ApplicabilitySource,
}

fn default_locale() -> String {
    "en".to_string()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicabilitySource {
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// `[from, to]`, inclusive.
    #[serde(default)]
    pub years: Option<[u16; 2]>,
    #[serde(default)]
    pub trims: Option<Vec<String>>,
    #[serde(default)]
    pub markets: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticleFile {
    #[serde(default)]
    article: Vec<ArticleSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticleSource {
    id: Spanned<String>,
    title: String,
    intents: Spanned<Vec<String>>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    keywords: Vec<String>,
    summary: Spanned<String>,
    body: Spanned<String>,
    #[serde(default)]
    applies: ApplicabilitySource,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    version: Option<u64>,
}

/// What a compiled base says about itself: its `pack` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackMeta {
    pub name: String,
    pub title: String,
    pub version: u64,
    pub locale: String,
}

impl From<&PackManifest> for PackMeta {
    fn from(m: &PackManifest) -> PackMeta {
        PackMeta {
            name: m.name.clone(),
            title: m.title.clone(),
            version: m.version,
            locale: m.locale.clone(),
        }
    }
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub name: String,
    pub version: u64,
    pub articles: usize,
    pub files: usize,
}

/// Reads a pack folder's `pack.toml` alone (cheap: no article is read).
pub fn read_manifest(dir: &Path) -> Result<PackManifest> {
    let manifest_path = dir.join("pack.toml");
    let text = read(&manifest_path)?;
    let manifest: PackManifest = toml::from_str(&text).map_err(|e| toml_error(&manifest_path, &text, &e))?;
    if manifest.name.trim().is_empty() {
        return Err(pack_error(&manifest_path, 1, "the pack needs a `name`"));
    }
    Ok(manifest)
}

/// Reads and checks a pack folder. `known_intents` are the contract's labels: an
/// article may only claim those.
pub fn load(dir: &Path, known_intents: &[&str]) -> Result<(PackManifest, Vec<Article>)> {
    let manifest = read_manifest(dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("articles"))
        .map_err(|source| KnowledgeError::Io {
            path: dir.join("articles"),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut articles = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for path in &files {
        let text = read(path)?;
        let file: ArticleFile = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
        for source in file.article {
            let line = line_of(&text, source.id.span().start);
            let article = check(source, &manifest, known_intents, path, &text)?;
            let here = format!("{}:{line}", path.display());
            if let Some(first) = seen.insert(article.id.clone(), here) {
                return Err(pack_error(
                    path,
                    line,
                    &format!("article id `{}` is already used at {first}", article.id),
                ));
            }
            articles.push(Article {
                source: format!("{}:{line}", file_name(path)),
                ..article
            });
        }
    }
    if articles.is_empty() {
        return Err(pack_error(&dir.join("articles"), 0, "the pack has no articles"));
    }
    Ok((manifest, articles))
}

/// An article names at least one intent, and only the contract's.
fn check_intents(source: &ArticleSource, known_intents: &[&str], path: &Path, line: usize, id: &str) -> Result<()> {
    if source.intents.get_ref().is_empty() {
        return Err(pack_error(path, line, &format!("article `{id}` lists no intents")));
    }
    for intent in source.intents.get_ref() {
        if !known_intents.contains(&intent.as_str()) {
            return Err(pack_error(
                path,
                line,
                &format!("article `{id}`: `{intent}` is not an intent of the contract"),
            ));
        }
    }
    Ok(())
}

/// The summary is spoken: one or two whole sentences, within the limit; and the
/// body is not empty.
fn check_summary(source: &ArticleSource, path: &Path, at: &impl Fn(usize) -> usize, id: &str) -> Result<String> {
    let summary = normalise_space(source.summary.get_ref());
    let summary_line = at(source.summary.span().start);
    let sentences = count_sentences(&summary);
    if !(1..=2).contains(&sentences) || !summary.ends_with(['.', '!', '?']) {
        return Err(pack_error(
            path,
            summary_line,
            &format!(
                "article `{id}`: the summary is spoken, so it must be one or two whole sentences (found {sentences})"
            ),
        ));
    }
    if summary.chars().count() > MAX_SUMMARY_CHARS {
        return Err(pack_error(
            path,
            summary_line,
            &format!("article `{id}`: the summary is longer than {MAX_SUMMARY_CHARS} characters"),
        ));
    }
    if source.body.get_ref().trim().is_empty() {
        return Err(pack_error(
            path,
            at(source.body.span().start),
            &format!("article `{id}` has an empty body"),
        ));
    }
    Ok(summary)
}

/// Where an article applies: its own `applies`, each field inherited from the
/// pack's when the article leaves it out.
fn applicability(own: &ApplicabilitySource, inherit: &ApplicabilitySource) -> Applicability {
    Applicability {
        models: own
            .models
            .clone()
            .or_else(|| inherit.models.clone())
            .unwrap_or_default(),
        years: own.years.or(inherit.years).map(|[a, b]| (a, b)),
        trims: own.trims.clone().or_else(|| inherit.trims.clone()).unwrap_or_default(),
        markets: own
            .markets
            .clone()
            .or_else(|| inherit.markets.clone())
            .unwrap_or_default(),
    }
}

fn check(
    source: ArticleSource,
    manifest: &PackManifest,
    known_intents: &[&str],
    path: &Path,
    text: &str,
) -> Result<Article> {
    let at = |offset: usize| line_of(text, offset);
    let id_line = at(source.id.span().start);
    let id = source.id.get_ref().trim().to_string();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(pack_error(
            path,
            id_line,
            &format!("article id `{id}` must be lowercase letters, digits and dashes"),
        ));
    }
    if source.title.trim().is_empty() {
        return Err(pack_error(path, id_line, &format!("article `{id}` has an empty title")));
    }
    check_intents(&source, known_intents, path, at(source.intents.span().start), &id)?;
    let summary = check_summary(&source, path, &at, &id)?;
    let applies = applicability(&source.applies, &manifest.applies);
    if let Some((from, to)) = applies.years {
        if from > to {
            return Err(pack_error(
                path,
                id_line,
                &format!("article `{id}`: years [{from}, {to}] run backwards"),
            ));
        }
    }
    Ok(Article {
        id,
        title: source.title.trim().to_string(),
        summary,
        body: source.body.get_ref().trim().to_string(),
        intents: source.intents.into_inner(),
        aliases: source.aliases,
        keywords: source.keywords,
        applies,
        locale: source.locale.unwrap_or_else(|| manifest.locale.clone()),
        version: source.version.unwrap_or(manifest.version),
        source: String::new(),
    })
}

/// Compiles the pack in `dir` into the SQLite base at `out`, atomically.
pub fn compile(dir: &Path, out: &Path, embedder: &dyn Embedder, known_intents: &[&str]) -> Result<BuildReport> {
    let (manifest, articles) = load(dir, known_intents)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| KnowledgeError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let staging = out.with_extension("sqlite.tmp");
    let _ = std::fs::remove_file(&staging);
    let location = staging.display().to_string();
    let mut conn = Connection::open(&staging).at(&location)?;
    write(&mut conn, &location, &(&manifest).into(), &articles, embedder, &[])?;
    conn.pragma_update(None, "journal_mode", "WAL").at(&location)?;
    conn.close().map_err(|(_, e)| e).at(&location)?;
    let report = BuildReport {
        name: manifest.name.clone(),
        version: manifest.version,
        articles: articles.len(),
        files: files_in(dir),
    };
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(PathBuf::from(format!("{}{suffix}", out.display())));
    }
    std::fs::rename(&staging, out).map_err(|source| KnowledgeError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(report)
}

/// Compiles the pack into an open (for example in-memory) connection.
pub fn compile_into(
    conn: &mut Connection,
    dir: &Path,
    embedder: &dyn Embedder,
    known_intents: &[&str],
) -> Result<BuildReport> {
    let (manifest, articles) = load(dir, known_intents)?;
    write(conn, ":memory:", &(&manifest).into(), &articles, embedder, &[])?;
    Ok(BuildReport {
        name: manifest.name.clone(),
        version: manifest.version,
        articles: articles.len(),
        files: files_in(dir),
    })
}

/// Writes a new base at `out` (which must not exist) from articles already
/// checked, with `extra` keys in its `pack` table. The caller owns where it goes
/// next: a fleet update writes a staging file and renames it into place.
pub fn write_base(
    out: &Path,
    meta: &PackMeta,
    articles: &[Article],
    embedder: &dyn Embedder,
    extra: &[(&str, String)],
) -> Result<()> {
    let location = out.display().to_string();
    let mut conn = Connection::open_with_flags(
        out,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE,
    )
    .at(&location)?;
    // One file, written once: no journal to leave behind.
    conn.pragma_update(None, "journal_mode", "OFF").at(&location)?;
    conn.pragma_update(None, "synchronous", "OFF").at(&location)?;
    write(&mut conn, &location, meta, articles, embedder, extra)?;
    conn.pragma_update(None, "journal_mode", "DELETE").at(&location)?;
    conn.close().map_err(|(_, e)| e).at(&location)?;
    // Durable before anyone renames it into place.
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|source| KnowledgeError::Io {
            path: out.to_path_buf(),
            source,
        })
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("articles")).map(|d| d.count()).unwrap_or(0)
}

fn write(
    conn: &mut Connection,
    location: &str,
    manifest: &PackMeta,
    articles: &[Article],
    embedder: &dyn Embedder,
    extra: &[(&str, String)],
) -> Result<()> {
    schema::migrate(conn, location)?;
    let tx = conn.transaction().at(location)?;
    tx.execute_batch("DELETE FROM articles; DELETE FROM article_intents; DELETE FROM articles_fts; DELETE FROM embeddings; DELETE FROM field_embeddings; DELETE FROM pack;")
        .at(location)?;
    for (key, value) in [
        ("name", manifest.name.clone()),
        ("title", manifest.title.clone()),
        ("version", manifest.version.to_string()),
        ("locale", manifest.locale.clone()),
        ("embedding_model", embedder.model_id()),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, v.clone())))
    {
        tx.execute("INSERT INTO pack (key, value) VALUES (?1, ?2)", params![key, value])
            .at(location)?;
    }
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO articles (id, title, summary, body, aliases, keywords, models, trims, markets,
                 year_from, year_to, locale, version, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .at(location)?;
        let mut intent = tx
            .prepare("INSERT INTO article_intents (intent, article_rowid) VALUES (?1, ?2)")
            .at(location)?;
        let mut fts = tx
            .prepare("INSERT INTO articles_fts (rowid, title, aliases, keywords, body) VALUES (?1, ?2, ?3, ?4, ?5)")
            .at(location)?;
        for a in articles {
            insert
                .execute(params![
                    a.id,
                    a.title,
                    a.summary,
                    a.body,
                    a.aliases.join("\n"),
                    a.keywords.join("\n"),
                    a.applies.models.join("\n"),
                    a.applies.trims.join("\n"),
                    a.applies.markets.join("\n"),
                    a.applies.years.map(|y| y.0),
                    a.applies.years.map(|y| y.1),
                    a.locale,
                    a.version as i64,
                    a.source,
                ])
                .at(location)?;
            let rowid = tx.last_insert_rowid();
            for i in &a.intents {
                intent.execute(params![i, rowid]).at(location)?;
            }
            fts.execute(params![
                rowid,
                a.title,
                a.aliases.join(" ; "),
                a.keywords.join(" ; "),
                format!("{} {}", a.summary, a.body)
            ])
            .at(location)?;
            crate::vectors::store_vectors(&tx, location, rowid, a, embedder)?;
        }
    }
    tx.commit().at(location)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| KnowledgeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn pack_error(path: &Path, line: usize, message: &str) -> KnowledgeError {
    KnowledgeError::Pack {
        path: path.to_path_buf(),
        line,
        message: message.to_string(),
    }
}

fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> KnowledgeError {
    let line = error.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    pack_error(path, line, error.message().trim())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn normalise_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sentences end at `.`, `!` or `?` followed by a space or the end (so "2.5 bar"
/// is one sentence).
pub fn count_sentences(text: &str) -> usize {
    let chars: Vec<char> = text.trim().chars().collect();
    let mut count = 0;
    for (i, c) in chars.iter().enumerate() {
        if matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace()) {
            count += 1;
        }
    }
    if count == 0 && !chars.is_empty() {
        1
    } else {
        count
    }
}
