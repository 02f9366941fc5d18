//! An open knowledge base: lookups by id and intent, and the fused search.
//!
//! Search fuses two signals over the articles that apply to the vehicle: BM25 from
//! the FTS5 index (what the driver literally said) and cosine similarity of
//! sentence embeddings (what they meant), plus a bonus for articles tagged with the
//! utterance's intent. The driver's words are never passed to FTS5 as syntax: they
//! are cut into plain words and each is quoted (see [`fts_query`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::article::{Applicability, Article, VehicleFilter};
use crate::embed::Embedder;
use crate::error::{KnowledgeError, Result, SqliteContext};
use crate::schema;
use crate::vectors::{blob_to_vector, store_vectors, vector_to_blob};

/// How the search signals (BM25, the cosine with the whole article, the cosine
/// with its closest field) and the intent tag are weighed. The defaults were
/// tuned on the tuning half of the shipped pack's retrieval pairs
/// (`edge-agent kb eval --tune`): the intent bonus did not help there, because
/// the embedding already carries what the intent says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchWeights {
    pub lexical: f32,
    pub semantic: f32,
    /// The closest single field (title, alias or summary): [`Hit::closeness`].
    pub closeness: f32,
    pub intent: f32,
}

impl Default for SearchWeights {
    fn default() -> Self {
        SearchWeights {
            lexical: 0.625,
            semantic: 1.0,
            closeness: 1.0,
            intent: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub text: &'a str,
    /// The utterance's intent, when known: matching articles get a bonus.
    pub intent: Option<&'a str>,
    pub vehicle: &'a VehicleFilter,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub article: Article,
    pub score: f32,
    /// BM25, scaled so the best lexical hit is 1.
    pub lexical: f32,
    /// Cosine with the whole article (title, aliases and summary as one text).
    pub semantic: f32,
    /// The highest cosine with any one of the article's fields: an absolute
    /// measure of how close the question comes to something the article says,
    /// which the dialogue's "not in the manual" threshold is calibrated on.
    pub closeness: f32,
    /// The share of the question's content words the article's text has,
    /// weighted by how rare each word is in the pack (a word the pack never uses
    /// weighs most): an absolute measure of lexical support.
    pub coverage: f32,
}

/// What is in memory for every article: enough to filter and rank without SQLite.
struct Entry {
    rowid: i64,
    intents: Vec<String>,
    applies: Applicability,
    vector: Vec<f32>,
    /// Unit vectors of [`Article::field_texts`].
    fields: Vec<Vec<f32>>,
    /// The article's content words (all its text), as [`content_words`] gives them.
    words: HashSet<String>,
    /// Its title, then its aliases.
    names: Vec<String>,
}

impl Entry {
    /// Whether the article is tagged with `intent` (never, when there is none).
    fn tagged(&self, intent: Option<&str>) -> bool {
        intent.is_some_and(|i| self.intents.iter().any(|x| x == i))
    }
}

/// Facts about the compiled pack.
#[derive(Debug, Clone, PartialEq)]
pub struct PackInfo {
    pub name: String,
    pub title: String,
    pub version: u64,
    pub articles: usize,
    pub embedding_model: String,
    /// The fleet bundle it came from, when it came from one.
    pub bundle_version: Option<u64>,
    pub locale: String,
}

pub struct KnowledgeBase {
    /// A std mutex: it is only taken in blocking code (callers run the KB off the
    /// async workers) and held for one short query, never across an await.
    conn: Mutex<Connection>,
    location: String,
    entries: Vec<Entry>,
    /// In how many articles each content word occurs.
    document_frequency: HashMap<String, u32>,
    embedder: Arc<dyn Embedder>,
    info: PackInfo,
    weights: SearchWeights,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("location", &self.location)
            .field("info", &self.info)
            .finish()
    }
}

impl KnowledgeBase {
    /// Opens a compiled pack. Missing migrations are applied; if its vectors came
    /// from another model than `embedder`, the articles are re-embedded and stored.
    pub fn open(path: &Path, embedder: Arc<dyn Embedder>) -> Result<Self> {
        let location = path.display().to_string();
        if !path.is_file() {
            return Err(KnowledgeError::NotAPack {
                location,
                reason: "no such file: build it with `edge-agent kb build`".to_string(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .at(&location)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).at(&location)?;
        Self::from_connection(conn, &location, embedder)
    }

    pub fn from_connection(mut conn: Connection, location: &str, embedder: Arc<dyn Embedder>) -> Result<Self> {
        let has_pack: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'pack'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| KnowledgeError::NotAPack {
                location: location.to_string(),
                reason: e.to_string(),
            })?;
        if !has_pack {
            return Err(KnowledgeError::NotAPack {
                location: location.to_string(),
                reason: "it has no `pack` table".to_string(),
            });
        }
        schema::migrate(&mut conn, location)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;").at(location)?;
        let meta = |conn: &Connection, key: &str| -> Result<String> {
            conn.query_row("SELECT value FROM pack WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .at(location)?
                .ok_or_else(|| KnowledgeError::NotAPack {
                    location: location.to_string(),
                    reason: format!("the pack has no `{key}`"),
                })
        };
        let model = meta(&conn, "embedding_model")?;
        if model != embedder.model_id() {
            tracing::info!(location, old = %model, new = %embedder.model_id(), "model changed: re-embedding the articles");
            reembed(&mut conn, location, embedder.as_ref())?;
        } else if lacks_field_vectors(&conn, location)? {
            tracing::info!(location, "a base from before per-field vectors: embedding each field");
            reembed(&mut conn, location, embedder.as_ref())?;
        }
        let version = meta(&conn, "version")?;
        let mut info = PackInfo {
            name: meta(&conn, "name")?,
            title: meta(&conn, "title")?,
            version: version.parse().map_err(|_| KnowledgeError::NotAPack {
                location: location.to_string(),
                reason: format!("version `{version}` is not a number"),
            })?,
            articles: 0,
            embedding_model: embedder.model_id(),
            bundle_version: meta(&conn, "bundle_version").ok().and_then(|v| v.parse().ok()),
            locale: meta(&conn, "locale").unwrap_or_else(|_| "en".to_string()),
        };
        let entries = load_entries(&conn, location)?;
        // The vectors now live in `entries`; the pages they were read through
        // are not needed again, and a search reads a few article rows at most.
        conn.execute_batch("PRAGMA shrink_memory; PRAGMA cache_size = -512;")
            .at(location)?;
        info.articles = entries.len();
        let mut document_frequency: HashMap<String, u32> = HashMap::new();
        for word in entries.iter().flat_map(|e| e.words.iter()) {
            *document_frequency.entry(word.clone()).or_default() += 1;
        }
        Ok(KnowledgeBase {
            conn: Mutex::new(conn),
            location: location.to_string(),
            entries,
            document_frequency,
            embedder,
            info,
            weights: SearchWeights::default(),
        })
    }

    pub fn info(&self) -> &PackInfo {
        &self.info
    }

    /// The embedder its vectors came from (a rebuilt base uses the same).
    pub fn embedder(&self) -> Arc<dyn Embedder> {
        self.embedder.clone()
    }

    pub fn set_weights(&mut self, weights: SearchWeights) {
        self.weights = weights;
    }

    pub fn article(&self, id: &str) -> Result<Option<Article>> {
        let conn = self.conn.lock().expect("kb mutex");
        let rowid: Option<i64> = conn
            .query_row("SELECT rowid FROM articles WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .at(&self.location)?;
        match rowid {
            Some(rowid) => self.fetch(&conn, rowid).map(Some),
            None => Ok(None),
        }
    }

    /// Every article, in the order it was compiled.
    pub fn articles(&self) -> Result<Vec<Article>> {
        let conn = self.conn.lock().expect("kb mutex");
        self.entries.iter().map(|e| self.fetch(&conn, e.rowid)).collect()
    }

    /// The pack's metadata as a bundle carries it.
    pub fn meta(&self) -> crate::pack::PackMeta {
        crate::pack::PackMeta {
            name: self.info.name.clone(),
            title: self.info.title.clone(),
            version: self.info.version,
            locale: self.info.locale.clone(),
        }
    }

    /// A hash of what the base holds: the pack's metadata, then every article (by
    /// id) with its intents and its embedding. Two bases with equal hashes answer
    /// alike, however they were built (a full bundle, or a delta on an older one).
    pub fn content_hash(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let conn = self.conn.lock().expect("kb mutex");
        let mut rows: Vec<(Article, &Entry)> = self
            .entries
            .iter()
            .map(|e| Ok((self.fetch(&conn, e.rowid)?, e)))
            .collect::<Result<_>>()?;
        rows.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let mut hash = Sha256::new();
        hash.update(serde_json::to_vec(&self.meta()).expect("metadata serialises"));
        for (article, entry) in rows {
            hash.update(serde_json::to_vec(&article).expect("an article serialises"));
            hash.update(vector_to_blob(&entry.vector));
        }
        Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The articles tagged with `intent` that apply to the vehicle, in pack order.
    pub fn by_intent(&self, intent: &str, vehicle: &VehicleFilter) -> Result<Vec<Article>> {
        let conn = self.conn.lock().expect("kb mutex");
        self.entries
            .iter()
            .filter(|e| e.tagged(Some(intent)) && e.applies.matches(vehicle))
            .map(|e| self.fetch(&conn, e.rowid))
            .collect()
    }

    /// The article tagged with `intent` (any article: `None`) whose name (its
    /// title or an alias) scores highest by `score` (`None`: not a match),
    /// fetched alone; ties go to the first in pack order.
    pub fn best_named(
        &self,
        intent: Option<&str>,
        vehicle: &VehicleFilter,
        score: impl Fn(&str) -> Option<usize>,
    ) -> Result<Option<Article>> {
        let mut best: Option<(usize, i64)> = None;
        for e in self
            .entries
            .iter()
            .filter(|e| (intent.is_none() || e.tagged(intent)) && e.applies.matches(vehicle))
        {
            if let Some(s) = e.names.iter().filter_map(|n| score(n)).max() {
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, e.rowid));
                }
            }
        }
        let conn = self.conn.lock().expect("kb mutex");
        best.map(|(_, rowid)| self.fetch(&conn, rowid)).transpose()
    }

    /// The best articles for an utterance, best first.
    pub fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>> {
        self.rank(query, false)
    }

    /// The best articles tagged with the query's intent, best first: only the
    /// `limit` returned are read from SQLite.
    pub fn search_tagged(&self, query: &Query<'_>) -> Result<Vec<Hit>> {
        self.rank(query, true)
    }

    fn rank(&self, query: &Query<'_>, tagged_only: bool) -> Result<Vec<Hit>> {
        let mut query_vector = self.embedder.embed(query.text).map_err(KnowledgeError::Embedding)?;
        crate::embed::normalise(&mut query_vector);
        let conn = self.conn.lock().expect("kb mutex");
        let mut lexical: HashMap<i64, f32> = HashMap::new();
        if let Some(fts) = fts_query(query.text) {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT rowid, bm25(articles_fts, 6.0, 5.0, 3.0, 1.0) FROM articles_fts
                     WHERE articles_fts MATCH ?1 ORDER BY 2 LIMIT 200",
                )
                .at(&self.location)?;
            let rows = stmt
                .query_map([fts], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))
                .at(&self.location)?;
            for row in rows {
                let (rowid, bm25) = row.at(&self.location)?;
                lexical.insert(rowid, (-bm25) as f32);
            }
        }
        let best_lexical = lexical.values().copied().fold(0.0f32, f32::max);
        let asked = self.weighted_words(query.text);
        let w = self.weights;
        let mut scored: Vec<(f32, f32, f32, f32, i64, f32)> = self
            .entries
            .iter()
            .filter(|e| e.applies.matches(query.vehicle))
            .filter(|e| !tagged_only || e.tagged(query.intent))
            .map(|e| {
                let lex = match lexical.get(&e.rowid) {
                    Some(s) if best_lexical > 0.0 => s / best_lexical,
                    _ => 0.0,
                };
                // Both are unit length (or zero): the dot product is the cosine.
                let sem = if e.vector.len() == query_vector.len() {
                    crate::embed::dot(&query_vector, &e.vector).max(0.0)
                } else {
                    0.0
                };
                let close = e
                    .fields
                    .iter()
                    .filter(|f| f.len() == query_vector.len())
                    .map(|f| crate::embed::dot(&query_vector, f))
                    .fold(sem, f32::max);
                let tagged = e.tagged(query.intent);
                let score =
                    w.lexical * lex + w.semantic * sem + w.closeness * close + if tagged { w.intent } else { 0.0 };
                (score, lex, sem, close, e.rowid, coverage(&asked, &e.words))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.4.cmp(&b.4)));
        scored
            .into_iter()
            .take(query.limit)
            .map(|(score, lexical, semantic, closeness, rowid, coverage)| {
                Ok(Hit {
                    article: self.fetch(&conn, rowid)?,
                    score,
                    lexical,
                    semantic,
                    closeness,
                    coverage,
                })
            })
            .collect()
    }

    /// The question's content words, each weighted by its inverse document
    /// frequency in the pack.
    fn weighted_words(&self, text: &str) -> Vec<(String, f32)> {
        let articles = self.entries.len() as f32;
        content_words(text)
            .into_iter()
            .map(|word| {
                let df = self.document_frequency.get(&word).copied().unwrap_or(0) as f32;
                let idf = ((articles + 1.0) / (df + 0.5)).ln().max(0.0);
                (word, idf)
            })
            .collect()
    }

    fn fetch(&self, conn: &Connection, rowid: i64) -> Result<Article> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, title, summary, body, aliases, keywords, models, trims, markets,
                        year_from, year_to, locale, version, source
                 FROM articles WHERE rowid = ?1",
            )
            .at(&self.location)?;
        // Entries are loaded in rowid order.
        let intents = self
            .entries
            .binary_search_by_key(&rowid, |e| e.rowid)
            .map(|i| self.entries[i].intents.clone())
            .unwrap_or_default();
        stmt.query_row([rowid], |r| {
            let lines = |s: String| -> Vec<String> { s.lines().map(str::to_string).collect() };
            let (from, to): (Option<u16>, Option<u16>) = (r.get(9)?, r.get(10)?);
            Ok(Article {
                id: r.get(0)?,
                title: r.get(1)?,
                summary: r.get(2)?,
                body: r.get(3)?,
                intents,
                aliases: lines(r.get(4)?),
                keywords: lines(r.get(5)?),
                applies: Applicability {
                    models: lines(r.get(6)?),
                    trims: lines(r.get(7)?),
                    markets: lines(r.get(8)?),
                    years: from.zip(to),
                },
                locale: r.get(11)?,
                version: r.get::<_, i64>(12)? as u64,
                source: r.get(13)?,
            })
        })
        .at(&self.location)
    }
}

fn load_entries(conn: &Connection, location: &str) -> Result<Vec<Entry>> {
    let mut intents: HashMap<i64, Vec<String>> = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT article_rowid, intent FROM article_intents ORDER BY intent")
        .at(location)?;
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .at(location)?
    {
        let (rowid, intent) = row.at(location)?;
        intents.entry(rowid).or_default().push(intent);
    }
    let mut stmt = conn
        .prepare(
            "SELECT a.rowid, a.models, a.trims, a.markets, a.year_from, a.year_to, e.vector,
                    a.title || ' ' || a.aliases || ' ' || a.keywords || ' ' || a.summary || ' ' || a.body,
                    a.title, a.aliases
             FROM articles a LEFT JOIN embeddings e ON e.article_rowid = a.rowid ORDER BY a.rowid",
        )
        .at(location)?;
    let rows = stmt
        .query_map([], |r| {
            let lines = |s: String| -> Vec<String> { s.lines().map(str::to_string).collect() };
            let (from, to): (Option<u16>, Option<u16>) = (r.get(4)?, r.get(5)?);
            let blob: Option<Vec<u8>> = r.get(6)?;
            let rowid: i64 = r.get(0)?;
            Ok(Entry {
                rowid,
                intents: Vec::new(),
                applies: Applicability {
                    models: lines(r.get(1)?),
                    trims: lines(r.get(2)?),
                    markets: lines(r.get(3)?),
                    years: from.zip(to),
                },
                // Unit length once here, so that a search is one dot product per article.
                vector: blob
                    .map(|b| {
                        let mut v = blob_to_vector(&b);
                        crate::embed::normalise(&mut v);
                        v
                    })
                    .unwrap_or_default(),
                fields: Vec::new(),
                words: content_words(&r.get::<_, String>(7)?).into_iter().collect(),
                names: std::iter::once(r.get::<_, String>(8)?)
                    .chain(lines(r.get(9)?))
                    .collect(),
            })
        })
        .at(location)?;
    let mut fields = load_field_vectors(conn, location)?;
    let mut entries = Vec::new();
    for row in rows {
        let mut entry = row.at(location)?;
        entry.intents = intents.remove(&entry.rowid).unwrap_or_default();
        entry.fields = fields.remove(&entry.rowid).unwrap_or_default();
        entries.push(entry);
    }
    Ok(entries)
}

/// Every article's field vectors, unit length, by article.
fn load_field_vectors(conn: &Connection, location: &str) -> Result<HashMap<i64, Vec<Vec<f32>>>> {
    let mut stmt = conn
        .prepare("SELECT article_rowid, vector FROM field_embeddings ORDER BY article_rowid, field")
        .at(location)?;
    let mut fields: HashMap<i64, Vec<Vec<f32>>> = HashMap::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .at(location)?
    {
        let (rowid, blob) = row.at(location)?;
        let mut v = blob_to_vector(&blob);
        crate::embed::normalise(&mut v);
        fields.entry(rowid).or_default().push(v);
    }
    Ok(fields)
}

/// A base compiled before field vectors existed has articles but none of them.
fn lacks_field_vectors(conn: &Connection, location: &str) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM articles) AND NOT EXISTS (SELECT 1 FROM field_embeddings)",
        [],
        |r| r.get::<_, bool>(0),
    )
    .at(location)
}

fn reembed(conn: &mut Connection, location: &str, embedder: &dyn Embedder) -> Result<()> {
    let tx = conn.transaction().at(location)?;
    let articles: Vec<(i64, Article)> = {
        let mut stmt = tx
            .prepare("SELECT rowid, title, aliases, summary FROM articles ORDER BY rowid")
            .at(location)?;
        let rows = stmt
            .query_map([], |r| {
                let aliases: String = r.get(2)?;
                let article = Article {
                    title: r.get(1)?,
                    aliases: aliases.lines().map(str::to_string).collect(),
                    summary: r.get(3)?,
                    ..empty_article()
                };
                Ok((r.get::<_, i64>(0)?, article))
            })
            .at(location)?;
        rows.collect::<std::result::Result<_, _>>().at(location)?
    };
    tx.execute_batch("DELETE FROM embeddings; DELETE FROM field_embeddings;")
        .at(location)?;
    for (rowid, article) in &articles {
        store_vectors(&tx, location, *rowid, article, embedder)?;
    }
    tx.execute(
        "UPDATE pack SET value = ?1 WHERE key = 'embedding_model'",
        [embedder.model_id()],
    )
    .at(location)?;
    tx.commit().at(location)
}

fn empty_article() -> Article {
    Article {
        id: String::new(),
        title: String::new(),
        summary: String::new(),
        body: String::new(),
        intents: Vec::new(),
        aliases: Vec::new(),
        keywords: Vec::new(),
        applies: Applicability::default(),
        locale: String::new(),
        version: 0,
        source: String::new(),
    }
}

/// Words that carry no meaning for retrieval.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "am", "was", "be", "to", "of", "in", "on", "at", "for", "my", "me", "i", "it",
    "its", "this", "that", "do", "does", "did", "how", "what", "when", "where", "why", "which", "who", "can", "could",
    "should", "would", "will", "you", "your", "and", "or", "with", "there", "please", "hey", "um", "uh", "so", "just",
    "tell", "know", "car", "there's", "what's", "whats", "i'm", "im", "about", "up", "get", "have", "has", "any",
];

/// US and UK names for the same thing: a query word brings its twins.
const SYNONYMS: &[&[&str]] = &[
    &["tire", "tyre"],
    &["tires", "tyres"],
    &["gas", "petrol", "fuel"],
    &["trunk", "boot"],
    &["hood", "bonnet"],
    &["windshield", "windscreen"],
    &["wrench", "spanner"],
    &["odometer", "mileage"],
];

/// The words of a text that carry meaning, as compared for [`Hit::coverage`]:
/// lower case, stop words dropped, a US or UK twin as the first of its set, and
/// cut to five letters (so "rotated" and "rotation" meet).
pub fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| w.len() > 1 && !STOPWORDS.contains(&w.as_str()))
        .map(|w| {
            let canonical = SYNONYMS
                .iter()
                .find(|set| set.contains(&w.as_str()))
                .map_or(w.as_str(), |set| set[0]);
            canonical.chars().take(5).collect()
        })
        .collect()
}

/// The weighted share of `asked` that `words` holds (0 when nothing is asked).
fn coverage(asked: &[(String, f32)], words: &HashSet<String>) -> f32 {
    let total: f32 = asked.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return 0.0;
    }
    asked
        .iter()
        .filter(|(a, _)| words.contains(a))
        .map(|(_, w)| w)
        .sum::<f32>()
        / total
}

/// Turns driver text into a safe FTS5 query: plain words, each quoted, joined by
/// OR. Quotes, operators (AND, NEAR, `*`, `^`), parentheses and column filters in
/// the text become ordinary words or vanish. `None` when no word is left.
pub fn fts_query(text: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(&w.as_str()))
    {
        let twins = SYNONYMS
            .iter()
            .find(|set| set.contains(&word.as_str()))
            .map(|set| set.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| vec![word]);
        for w in twins {
            if !words.contains(&w) && words.len() < 32 {
                words.push(w);
            }
        }
    }
    if words.is_empty() {
        return None;
    }
    Some(
        words
            .iter()
            .map(|w| format!("\"{}\"", w.replace('\'', " ")))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}
