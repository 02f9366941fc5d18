//! Retrieval measured as the driver hears it: each question goes through the whole
//! dialogue in a fresh conversation (classifier, gate, live answers, exact names,
//! the calibrated score), and what counts is the article the answer rests on.
//!
//! Two question sets, written apart from the articles, both split in halves by a
//! hash of the question (never by file order): the **covered** pairs
//! (`eval/questions.tsv`, `article_id<TAB>question`), and the **uncovered**
//! questions (`eval/uncovered.txt`), car questions the pack has no answer for.
//! Fusion weights and the abstention score are fitted on the tuning halves only;
//! the held-out halves are only ever measured.

use std::path::Path;
use std::sync::Arc;

use knowledge::{KnowledgeBase, Query, SearchWeights, VehicleFilter};
use models::{Classifier, Intent};

use super::{Assistant, Handling, Session};
use crate::config::Config;
use crate::store::{Retention, Store};
use crate::vehicle::VehicleState;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: expected {expected}")]
    Format {
        path: String,
        line: usize,
        expected: &'static str,
    },
    #[error(transparent)]
    Dialogue(#[from] super::DialogueError),
    #[error(transparent)]
    Knowledge(#[from] knowledge::KnowledgeError),
    #[error(transparent)]
    Model(#[from] models::ModelError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What a wrong article costs in the calibration's merit, in right answers or
/// honest abstentions: a confident wrong answer misleads a driver who trusts it,
/// while "I don't have that, shall I ask?" only costs a moment.
const WRONG_COSTS: i64 = 2;

/// One question, and the article that answers it (`None`: the pack has none).
#[derive(Debug, Clone)]
pub struct Question {
    pub text: String,
    pub article: Option<String>,
    /// The tuning half; the other half is only ever measured.
    pub tuning: bool,
}

impl Question {
    fn new(text: &str, article: Option<&str>) -> Question {
        Question {
            text: text.to_string(),
            article: article.map(str::to_string),
            tuning: models::rng::stable_hash(text).is_multiple_of(2),
        }
    }
}

fn read(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Reads `article_id<TAB>question` lines (`#` comments).
pub fn load_pairs(path: &Path) -> Result<Vec<Question>, EvalError> {
    let text = read(path)?;
    content_lines(&text)
        .map(|(line, l)| match l.split_once('\t') {
            Some((article, question)) => Ok(Question::new(question.trim(), Some(article.trim()))),
            None => Err(EvalError::Format {
                path: path.display().to_string(),
                line,
                expected: "article_id<TAB>question",
            }),
        })
        .collect()
}

/// Reads one uncovered question per line (`#` comments).
pub fn load_uncovered(path: &Path) -> Result<Vec<Question>, EvalError> {
    Ok(content_lines(&read(path)?)
        .map(|(_, l)| Question::new(l, None))
        .collect())
}

/// Reads the utterances whose `suggested_intent` is one of `labels` from every
/// `*.jsonl` file in `dir` (one JSON object a line, with `text` and
/// `suggested_intent`), in file name order. A line that is not such an object
/// is an error.
pub fn load_public(dir: &Path, labels: &[&str]) -> Result<Vec<String>, EvalError> {
    #[derive(serde::Deserialize)]
    struct Row {
        text: String,
        suggested_intent: Option<String>,
    }
    let entries = std::fs::read_dir(dir).map_err(|source| EvalError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut texts = Vec::new();
    for path in files {
        for (line, l) in content_lines(&read(&path)?) {
            let row: Row = serde_json::from_str(l).map_err(|_| EvalError::Format {
                path: path.display().to_string(),
                line,
                expected: "a JSON object with `text` and `suggested_intent`",
            })?;
            if row
                .suggested_intent
                .as_deref()
                .is_some_and(|label| labels.contains(&label))
            {
                texts.push(row.text);
            }
        }
    }
    Ok(texts)
}

/// What the driver heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// An answer resting on this article (or live reading's source).
    Article(String),
    /// The honest "I can't answer that in the car", with the offer to ask the
    /// cloud (or, to an upset driver, a person).
    NotInManual,
    /// Sent on to the cloud, or anything else that names no article.
    Elsewhere,
}

/// Asks one question in a fresh conversation.
pub fn hear(assistant: &Assistant, store: &Store, state: &VehicleState, text: &str) -> Result<Heard, EvalError> {
    let mut session = Session::new("retrieval-eval");
    let turn = assistant.respond(&mut session, state, store, text)?;
    Ok(match turn.sources.first() {
        Some(id) => Heard::Article(id.clone()),
        // The offer may be of a person, to an upset driver.
        None if turn.handling != Handling::Escalated && turn.pending_question.is_some() => Heard::NotInManual,
        None => Heard::Elsewhere,
    })
}

/// Counts over one half of one set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub questions: usize,
    /// The right article (covered questions only).
    pub right: usize,
    /// An article, and not the right one (every article, for an uncovered question).
    pub wrong: usize,
    /// The honest "not in the manual".
    pub abstained: usize,
    /// Sent to the cloud or otherwise without an article.
    pub elsewhere: usize,
}

impl Tally {
    pub fn share(&self, count: usize) -> f64 {
        if self.questions == 0 {
            0.0
        } else {
            count as f64 / self.questions as f64
        }
    }

    fn add(&mut self, other: &Tally) {
        self.questions += other.questions;
        self.right += other.right;
        self.wrong += other.wrong;
        self.abstained += other.abstained;
        self.elsewhere += other.elsewhere;
    }
}

/// One question answered other than it should be.
#[derive(Debug, Clone)]
pub struct Miss {
    pub question: String,
    pub want: Option<String>,
    pub heard: Heard,
    pub tuning: bool,
}

/// Both sets, by half: index 0 is the tuning half, 1 the held-out half.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub covered: [Tally; 2],
    pub uncovered: [Tally; 2],
    pub misses: Vec<Miss>,
}

impl Report {
    pub fn covered_all(&self) -> Tally {
        let mut all = self.covered[0];
        all.add(&self.covered[1]);
        all
    }

    pub fn uncovered_all(&self) -> Tally {
        let mut all = self.uncovered[0];
        all.add(&self.uncovered[1]);
        all
    }

    /// The tuning halves' figure of merit: right answers and honest abstentions,
    /// with a wrong article costing [`WRONG_COSTS`] of them.
    fn tuning_merit(&self) -> i64 {
        let (c, u) = (self.covered[0], self.uncovered[0]);
        (c.right + u.abstained) as i64 - WRONG_COSTS * (c.wrong + u.wrong) as i64
    }
}

/// An in-memory store for the turns an evaluation asks.
pub fn scratch_store() -> Result<Store, EvalError> {
    Ok(Store::in_memory(Retention {
        days: 1,
        max_turns_per_conversation: 10,
    })?)
}

/// Asks every question and tallies what was heard.
pub fn measure(assistant: &Assistant, state: &VehicleState, questions: &[Question]) -> Result<Report, EvalError> {
    let store = scratch_store()?;
    let mut report = Report::default();
    for q in questions {
        let heard = hear(assistant, &store, state, &q.text)?;
        let half = usize::from(!q.tuning);
        let tally = match q.article {
            Some(_) => &mut report.covered[half],
            None => &mut report.uncovered[half],
        };
        tally.questions += 1;
        let right = match (&heard, &q.article) {
            (Heard::Article(got), Some(want)) if got == want => {
                tally.right += 1;
                true
            }
            (Heard::Article(_), _) => {
                tally.wrong += 1;
                false
            }
            (Heard::NotInManual, want) => {
                tally.abstained += 1;
                want.is_none()
            }
            (Heard::Elsewhere, _) => {
                tally.elsewhere += 1;
                false
            }
        };
        if !right {
            report.misses.push(Miss {
                question: q.text.clone(),
                want: q.article.clone(),
                heard,
                tuning: q.tuning,
            });
        }
    }
    Ok(report)
}

/// Asks every utterance, each in a fresh conversation: `wrong` counts those
/// answered from an article, `abstained` the honest "not in the car" with the
/// offer to ask the cloud, `elsewhere` those sent on.
pub fn measure_public(assistant: &Assistant, state: &VehicleState, texts: &[String]) -> Result<Tally, EvalError> {
    let store = scratch_store()?;
    let mut tally = Tally::default();
    for text in texts {
        tally.questions += 1;
        match hear(assistant, &store, state, text)? {
            Heard::Article(_) => tally.wrong += 1,
            Heard::NotInManual => tally.abstained += 1,
            Heard::Elsewhere => tally.elsewhere += 1,
        }
    }
    Ok(tally)
}

/// Fits `knowledge.min_score` and `knowledge.min_coverage` on the tuning halves:
/// the pair with the best merit (right answers and honest abstentions, a wrong
/// article costing [`WRONG_COSTS`]), the strictest on a tie. Returns the pair and the
/// report at it.
pub fn calibrate(
    config: &Config,
    classifier: Arc<Classifier>,
    kb: Arc<KnowledgeBase>,
    state: &VehicleState,
    questions: &[Question],
) -> Result<((f32, f32), Report), EvalError> {
    let mut best: Option<(i64, (f32, f32), Report)> = None;
    for score_step in 0..=8 {
        for coverage_step in 0..=6 {
            let min_score = 0.4 + score_step as f32 * 0.05;
            let min_coverage = 0.5 + coverage_step as f32 * 0.1 + if coverage_step == 6 { 0.01 } else { 0.0 };
            let mut config = config.clone();
            config.knowledge.min_score = min_score;
            config.knowledge.min_coverage = min_coverage;
            let assistant = Assistant::new(config, classifier.clone(), kb.clone());
            let report = measure(&assistant, state, questions)?;
            let merit = report.tuning_merit();
            if best.as_ref().is_none_or(|(m, _, _)| merit >= *m) {
                best = Some((merit, (min_score, min_coverage), report));
            }
        }
    }
    let (_, fitted, report) = best.expect("the sweep is not empty");
    Ok((fitted, report))
}

/// Grid search of the search's fusion weights on the tuning half of the covered
/// pairs, by the raw search's top-1 and MRR@5 (the question's intent, when in
/// scope, joins the query as the dialogue's does).
pub fn tune_weights(
    kb: &mut KnowledgeBase,
    classifier: &Classifier,
    questions: &[Question],
    vehicle: &VehicleFilter,
) -> Result<SearchWeights, EvalError> {
    let mut tuning = Vec::new();
    for q in questions.iter().filter(|q| q.tuning) {
        if let Some(article) = &q.article {
            let intent = classifier.classify(&q.text)?.intent;
            tuning.push((
                q.text.as_str(),
                article.as_str(),
                intent.is_in_scope().then_some(intent),
            ));
        }
    }
    let grid = (0..=12).flat_map(|step| {
        [0.0f32, 0.25, 0.5, 1.0].into_iter().flat_map(move |closeness| {
            [0.0f32, 0.05, 0.1, 0.2, 0.3]
                .into_iter()
                .map(move |intent| SearchWeights {
                    lexical: step as f32 * 0.125,
                    semantic: 1.0,
                    closeness,
                    intent,
                })
        })
    });
    let mut best: Option<((usize, f64), SearchWeights)> = None;
    for weights in grid {
        kb.set_weights(weights);
        let (mut hits, mut reciprocal) = (0, 0.0);
        for (text, article, intent) in &tuning {
            let top = kb.search(&Query {
                text,
                intent: intent.map(Intent::as_str),
                vehicle,
                limit: 5,
            })?;
            if let Some(rank) = top.iter().position(|h| h.article.id == *article) {
                reciprocal += 1.0 / (rank + 1) as f64;
                hits += usize::from(rank == 0);
            }
        }
        let key = (hits, reciprocal);
        if best.as_ref().is_none_or(|(b, _)| key > *b) {
            best = Some((key, weights));
        }
    }
    let (_, weights) = best.expect("the grid is not empty");
    kb.set_weights(weights);
    Ok(weights)
}
