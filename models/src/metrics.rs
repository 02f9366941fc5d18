//! Scoring predictions against gold labels: the figures `eval` prints and the
//! manifest records, the gate tuning, and latency percentiles.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gate::{Gate, Prediction};
use crate::labels::{Intent, Route, Sentiment};

/// One scored utterance.
#[derive(Debug, Clone)]
pub struct Scored {
    pub gold_intent: Intent,
    /// `None`: no sentiment label (left out of the sentiment figures).
    pub gold_sentiment: Option<Sentiment>,
    pub prediction: Prediction,
    /// Wall time of the classification, in microseconds (0 when not measured).
    pub latency_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub examples: usize,
    /// Share of in-scope utterances given their exact label.
    pub in_scope_accuracy: f64,
    pub out_of_scope_recall: f64,
    pub out_of_scope_precision: f64,
    pub macro_f1: f64,
    pub per_intent_f1: BTreeMap<Intent, f64>,
    /// (gold, predicted, count), worst first.
    pub worst_confusions: Vec<(Intent, Intent, usize)>,
    pub emergency_recall: f64,
    /// Emergencies whose reported route was `local`: must be zero.
    pub emergencies_routed_local: usize,
    pub sentiment_accuracy: f64,
    pub sentiment_macro_f1: f64,
    pub negative_recall: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        f64::NAN
    } else {
        num as f64 / den as f64
    }
}

fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        f64::NAN
    } else {
        2.0 * tp as f64 / denom as f64
    }
}

/// The `q`-quantile (0..=1) of `values`, nearest-rank.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

impl Report {
    pub fn compute(scored: &[Scored]) -> Report {
        let mut confusion: BTreeMap<(Intent, Intent), usize> = BTreeMap::new();
        for s in scored {
            *confusion.entry((s.gold_intent, s.prediction.intent)).or_insert(0) += 1;
        }
        let count = |f: &dyn Fn(&Scored) -> bool| scored.iter().filter(|s| f(s)).count();
        let in_scope = count(&|s| s.gold_intent.is_in_scope());
        let in_scope_right = count(&|s| s.gold_intent.is_in_scope() && s.prediction.intent == s.gold_intent);
        let oos_gold = count(&|s| s.gold_intent == Intent::OutOfScope);
        let oos_pred = count(&|s| s.prediction.intent == Intent::OutOfScope);
        let oos_both = count(&|s| s.gold_intent == Intent::OutOfScope && s.prediction.intent == Intent::OutOfScope);
        let emergencies = count(&|s| s.gold_intent == Intent::Emergency);

        let mut per_intent_f1 = BTreeMap::new();
        for intent in Intent::ALL {
            let tp = confusion.get(&(intent, intent)).copied().unwrap_or(0);
            let gold = count(&|s| s.gold_intent == intent);
            let pred = count(&|s| s.prediction.intent == intent);
            if gold + pred > 0 {
                per_intent_f1.insert(intent, f1(tp, pred - tp, gold - tp));
            }
        }
        let macro_f1 = per_intent_f1.values().sum::<f64>() / per_intent_f1.len().max(1) as f64;
        let mut worst_confusions: Vec<(Intent, Intent, usize)> = confusion
            .iter()
            .filter(|((g, p), _)| g != p)
            .map(|(&(g, p), &n)| (g, p, n))
            .collect();
        worst_confusions.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        worst_confusions.truncate(10);

        let mut sentiment_f1 = Vec::new();
        for label in Sentiment::ALL {
            let tp = count(&|s| s.gold_sentiment == Some(label) && s.prediction.sentiment == label);
            let gold = count(&|s| s.gold_sentiment == Some(label));
            let pred = count(&|s| s.gold_sentiment.is_some() && s.prediction.sentiment == label);
            if gold + pred > 0 {
                sentiment_f1.push(f1(tp, pred - tp, gold - tp));
            }
        }
        let latencies: Vec<f64> = scored.iter().map(|s| s.latency_us).collect();
        Report {
            examples: scored.len(),
            in_scope_accuracy: ratio(in_scope_right, in_scope),
            out_of_scope_recall: ratio(oos_both, oos_gold),
            out_of_scope_precision: ratio(oos_both, oos_pred),
            macro_f1,
            per_intent_f1,
            worst_confusions,
            emergency_recall: ratio(
                count(&|s| s.gold_intent == Intent::Emergency && s.prediction.intent == Intent::Emergency),
                emergencies,
            ),
            emergencies_routed_local: count(&|s| {
                s.gold_intent == Intent::Emergency && s.prediction.route == Route::Local
            }),
            sentiment_accuracy: ratio(
                count(&|s| s.gold_sentiment == Some(s.prediction.sentiment)),
                count(&|s| s.gold_sentiment.is_some()),
            ),
            sentiment_macro_f1: sentiment_f1.iter().sum::<f64>() / sentiment_f1.len().max(1) as f64,
            negative_recall: ratio(
                count(&|s| {
                    s.gold_sentiment == Some(Sentiment::Negative) && s.prediction.sentiment == Sentiment::Negative
                }),
                count(&|s| s.gold_sentiment == Some(Sentiment::Negative)),
            ),
            latency_p50_us: percentile(&latencies, 0.50),
            latency_p99_us: percentile(&latencies, 0.99),
        }
    }

    /// The headline figures as (name, value) pairs, for tables and manifests.
    pub fn headline(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("in_scope_accuracy", self.in_scope_accuracy),
            ("out_of_scope_recall", self.out_of_scope_recall),
            ("out_of_scope_precision", self.out_of_scope_precision),
            ("macro_f1", self.macro_f1),
            ("emergency_recall", self.emergency_recall),
            ("emergencies_routed_local", self.emergencies_routed_local as f64),
            ("sentiment_accuracy", self.sentiment_accuracy),
            ("sentiment_macro_f1", self.sentiment_macro_f1),
            ("negative_recall", self.negative_recall),
            ("latency_p50_us", self.latency_p50_us),
            ("latency_p99_us", self.latency_p99_us),
        ]
    }
}

/// What matters on real requests: how often a row is answered on the car under a
/// wrong intent, and how often an out-of-scope one becomes an emergency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RealUse {
    pub rows: usize,
    pub in_scope_rows: usize,
    /// NaN without in-scope rows.
    pub in_scope_accuracy: f64,
    pub out_of_scope_recall: f64,
    /// Rows routed `local` under an intent that is not theirs, over all rows.
    pub wrong_local: f64,
    /// Out-of-scope rows read as `emergency`, over the out-of-scope rows.
    pub false_emergencies: f64,
}

impl RealUse {
    pub fn compute(scored: &[Scored]) -> RealUse {
        let count = |f: &dyn Fn(&Scored) -> bool| scored.iter().filter(|s| f(s)).count();
        let in_scope_rows = count(&|s| s.gold_intent.is_in_scope());
        let oos = count(&|s| s.gold_intent == Intent::OutOfScope);
        RealUse {
            rows: scored.len(),
            in_scope_rows,
            in_scope_accuracy: ratio(
                count(&|s| s.gold_intent.is_in_scope() && s.prediction.intent == s.gold_intent),
                in_scope_rows,
            ),
            out_of_scope_recall: ratio(
                count(&|s| s.gold_intent == Intent::OutOfScope && s.prediction.intent == Intent::OutOfScope),
                oos,
            ),
            wrong_local: ratio(
                count(&|s| s.prediction.route == Route::Local && s.prediction.intent != s.gold_intent),
                scored.len(),
            ),
            false_emergencies: ratio(
                count(&|s| s.gold_intent == Intent::OutOfScope && s.prediction.intent == Intent::Emergency),
                oos,
            ),
        }
    }
}

/// Prints reports side by side: headline figures, per-intent F1, worst confusions.
pub fn print_comparison(title: &str, reports: &[(&str, &Report)]) {
    println!(
        "== {title} ({} utterances)",
        reports.first().map_or(0, |r| r.1.examples)
    );
    print!("{:<28}", "metric");
    for (name, _) in reports {
        print!("{name:>14}");
    }
    println!();
    let rows = reports[0].1.headline();
    for (i, (metric, _)) in rows.iter().enumerate() {
        print!("{metric:<28}");
        for (_, report) in reports {
            let v = report.headline()[i].1;
            if metric.starts_with("latency") || metric.starts_with("emergencies") {
                print!("{v:>14.1}");
            } else {
                print!("{:>13.1}%", v * 100.0);
            }
        }
        println!();
    }
    println!("-- per-intent F1");
    for intent in Intent::ALL {
        print!("  {:<26}", intent.as_str());
        for (_, report) in reports {
            match report.per_intent_f1.get(&intent) {
                Some(v) => print!("{v:>14.3}"),
                None => print!("{:>14}", "-"),
            }
        }
        println!();
    }
    for (name, report) in reports {
        println!("-- worst confusions, {name} (gold -> predicted: count)");
        for (gold, pred, n) in report.worst_confusions.iter().take(8) {
            println!("  {gold} -> {pred}: {n}");
        }
    }
}

/// The out-of-scope recall the gate keeps on the tuning set while it maximises
/// in-scope accuracy: a little above the product's floor of 90%, as a margin for
/// utterances unlike the tuning set.
pub const GATE_OUT_OF_SCOPE_RECALL_FLOOR: f64 = 0.92;

/// Picks the gate threshold on `probabilities` (intent, sentiment) with gold intents
/// `gold`: the highest in-scope accuracy among the thresholds that keep
/// out-of-scope recall at [`GATE_OUT_OF_SCOPE_RECALL_FLOOR`] or more (ties go to the
/// better recall, then the lower threshold). When no threshold keeps the floor, the
/// one with the best in-scope accuracy plus out-of-scope recall.
pub fn tune_gate(probabilities: &[(Vec<f32>, Vec<f32>)], gold: &[Intent], emergency_threshold: f32) -> Gate {
    // (keeps the floor, objective, tie-break)
    let mut best = ((false, f64::MIN, f64::MIN), Gate::default());
    for step in 10..=90 {
        let gate = Gate {
            threshold: step as f32 / 100.0,
            emergency_threshold: emergency_threshold.min(step as f32 / 100.0),
            ..Default::default()
        };
        let scored: Vec<Scored> = probabilities
            .iter()
            .zip(gold)
            .map(|((i, s), &g)| Scored {
                gold_intent: g,
                gold_sentiment: None,
                prediction: gate.decide(i, s),
                latency_us: 0.0,
            })
            .collect();
        let r = Report::compute(&scored);
        let keeps_floor = r.out_of_scope_recall >= GATE_OUT_OF_SCOPE_RECALL_FLOOR - 1e-9;
        let key = if keeps_floor {
            (true, r.in_scope_accuracy, r.out_of_scope_recall)
        } else {
            (false, r.in_scope_accuracy + r.out_of_scope_recall, 0.0)
        };
        let better = match (key.0, best.0 .0) {
            (true, false) => true,
            (false, true) => false,
            _ => key.1 > best.0 .1 + 1e-9 || ((key.1 - best.0 .1).abs() <= 1e-9 && key.2 > best.0 .2 + 1e-9),
        };
        if better {
            best = (key, gate);
        }
    }
    best.1
}

/// The least negative recall the sentiment correction may leave on the held-out
/// families. Missing a driver's anger or fear costs more than calling a calm line
/// negative (the cloud then offers a human too early), so macro-F1 alone does not
/// pick the correction: left to itself it trades negative recall away. The
/// product's bar is 93% on the dev sets; the floor on the held-out families keeps
/// a margin over it (as the gate's 92% does over 90%), since a correction tuned to
/// just clear 93% there fell to 89% on dev once the table was fitted to a
/// fine-tuned teacher.
pub const SENTIMENT_NEGATIVE_RECALL_FLOOR: f64 = 0.95;

/// How far below the best sentiment macro-F1 a smaller correction may score and
/// still be kept (the one-standard-error rule: on the ~1,900 held-out lines, half a
/// point of macro-F1 is within the noise, and a smaller correction trusts the heads
/// more and the held-out families' label mix less).
pub const SENTIMENT_F1_TOLERANCE: f64 = 0.005;

/// The report of `gate` on `probabilities` against gold sentiments `gold` (only its
/// sentiment figures mean anything: every gold intent is taken as out of scope).
fn sentiment_report(probabilities: &[(Vec<f32>, Vec<f32>)], gold: &[Option<Sentiment>], gate: Gate) -> Report {
    let scored: Vec<Scored> = probabilities
        .iter()
        .zip(gold)
        .map(|((i, s), &g)| Scored {
            gold_intent: Intent::OutOfScope,
            gold_sentiment: g,
            prediction: gate.decide(i, s),
            latency_us: 0.0,
        })
        .collect();
    Report::compute(&scored)
}

/// The sentiment prior correction ([`Gate::sentiment_bias`]) for `probabilities`
/// with gold sentiments `gold`: log-odds for negative and positive (neutral stays at
/// 0) on a grid of 0.1 in [-2, 2]. Among the corrections that hold negative recall
/// at [`SENTIMENT_NEGATIVE_RECALL_FLOOR`] or more, it keeps the smallest one whose
/// sentiment macro-F1 is within [`SENTIMENT_F1_TOLERANCE`] of the best (ties to the
/// better F1). When none holds the floor, the one with the best negative recall.
/// Returns `gate` with it set.
pub fn tune_sentiment_bias(probabilities: &[(Vec<f32>, Vec<f32>)], gold: &[Option<Sentiment>], gate: Gate) -> Gate {
    struct Candidate {
        gate: Gate,
        size: i32,
        macro_f1: f64,
        negative_recall: f64,
    }
    let mut candidates = Vec::new();
    for neg in -20i32..=20 {
        for pos in -20i32..=20 {
            let candidate = Gate {
                sentiment_bias: [neg as f32 / 10.0, 0.0, pos as f32 / 10.0],
                ..gate
            };
            let report = sentiment_report(probabilities, gold, candidate);
            candidates.push(Candidate {
                gate: candidate,
                size: neg.abs() + pos.abs(),
                macro_f1: report.sentiment_macro_f1,
                negative_recall: report.negative_recall,
            });
        }
    }
    let keeping_floor: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.negative_recall >= SENTIMENT_NEGATIVE_RECALL_FLOOR - 1e-9)
        .collect();
    if keeping_floor.is_empty() {
        return candidates
            .iter()
            .max_by(|a, b| {
                a.negative_recall
                    .total_cmp(&b.negative_recall)
                    .then(a.macro_f1.total_cmp(&b.macro_f1))
                    .then(b.size.cmp(&a.size))
            })
            .map_or(gate, |c| c.gate);
    }
    let best_f1 = keeping_floor.iter().map(|c| c.macro_f1).fold(f64::MIN, f64::max);
    keeping_floor
        .into_iter()
        .filter(|c| c.macro_f1 >= best_f1 - SENTIMENT_F1_TOLERANCE - 1e-9)
        .min_by(|a, b| a.size.cmp(&b.size).then(b.macro_f1.total_cmp(&a.macro_f1)))
        .map_or(gate, |c| c.gate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(gold: Intent, pred: Intent, gs: Sentiment, ps: Sentiment) -> Scored {
        let gate = Gate::default();
        let mut probs = vec![0.0; Intent::COUNT];
        probs[pred.index()] = 1.0;
        let mut sp = vec![0.0; 3];
        sp[ps.index()] = 1.0;
        Scored {
            gold_intent: gold,
            gold_sentiment: Some(gs),
            prediction: gate.decide(&probs, &sp),
            latency_us: 10.0,
        }
    }

    #[test]
    fn report_counts_what_it_says() {
        use Intent::*;
        use Sentiment::*;
        let rows = vec![
            scored(FuelLevel, FuelLevel, Neutral, Neutral),
            scored(FuelLevel, OutOfScope, Neutral, Neutral),
            scored(OutOfScope, OutOfScope, Negative, Negative),
            scored(OutOfScope, Traffic, Negative, Neutral),
            scored(Emergency, Emergency, Negative, Negative),
        ];
        let r = Report::compute(&rows);
        assert!((r.in_scope_accuracy - 2.0 / 3.0).abs() < 1e-9);
        assert!((r.out_of_scope_recall - 0.5).abs() < 1e-9);
        assert!((r.out_of_scope_precision - 0.5).abs() < 1e-9);
        assert!((r.emergency_recall - 1.0).abs() < 1e-9);
        assert!((r.negative_recall - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.emergencies_routed_local, 0);
        assert_eq!(r.worst_confusions.len(), 2);
    }

    /// Intent probabilities with `p` on `label` and the rest spread evenly.
    fn probs(label: Intent, p: f32) -> (Vec<f32>, Vec<f32>) {
        let rest = (1.0 - p) / (Intent::COUNT - 1) as f32;
        let mut v = vec![rest; Intent::COUNT];
        v[label.index()] = p;
        (v, vec![0.0, 1.0, 0.0])
    }

    #[test]
    fn the_gate_keeps_in_scope_lines_while_out_of_scope_recall_holds_its_floor() {
        // Ten out-of-scope lines, all but one with a weak in-scope guess (0.3); one
        // in-scope line at 0.4 and nine confident ones. A threshold in (0.3, 0.4]
        // keeps every in-scope line and 90% out-of-scope recall: below the floor,
        // so the gate must rise above 0.4 and give that line up to reach 100%.
        let mut p = vec![probs(Intent::FuelLevel, 0.95); 9];
        let mut gold = vec![Intent::FuelLevel; 9];
        p.push(probs(Intent::FuelLevel, 0.4));
        gold.push(Intent::FuelLevel);
        for i in 0..10 {
            p.push(probs(Intent::Traffic, if i == 9 { 0.5 } else { 0.3 }));
            gold.push(Intent::OutOfScope);
        }
        let gate = tune_gate(&p, &gold, 0.25);
        assert!(gate.threshold > 0.5, "{gate:?}");
        // Without the 0.5 line, 0.31..=0.40 keeps all in-scope lines and all
        // out-of-scope ones: the lowest such threshold wins.
        p.truncate(19);
        gold.truncate(19);
        let gate = tune_gate(&p, &gold, 0.25);
        assert!((gate.threshold - 0.31).abs() < 1e-6, "{gate:?}");
    }

    /// Heads' outputs (intent, sentiment) per line, and the lines' gold sentiment.
    type Lines = (Vec<(Vec<f32>, Vec<f32>)>, Vec<Option<Sentiment>>);

    /// Sentiment-head outputs and gold labels: `count` lines of each group.
    fn sentiment_lines(groups: &[(usize, [f32; 3], Sentiment)]) -> Lines {
        groups
            .iter()
            .flat_map(|&(count, probs, gold)| {
                std::iter::repeat_n(((vec![0.0; Intent::COUNT], probs.to_vec()), Some(gold)), count)
            })
            .unzip()
    }

    #[test]
    fn the_sentiment_correction_is_tuned_towards_an_under_called_class() {
        // The head calls every line neutral, but the negative lines carry more
        // negative probability than the neutral ones: a correction that lifts
        // negative just enough separates them.
        let (p, gold) = sentiment_lines(&[
            (10, [0.4, 0.55, 0.05], Sentiment::Negative),
            (10, [0.1, 0.85, 0.05], Sentiment::Neutral),
        ]);
        let gate = tune_sentiment_bias(&p, &gold, Gate::default());
        let neg = gate.sentiment_bias[0];
        assert!(neg > 0.3 && neg <= 2.1, "{gate:?}");
        let predicted: Vec<_> = p.iter().map(|(i, s)| Some(gate.decide(i, s).sentiment)).collect();
        assert_eq!(predicted, gold);
        // Already separated: no correction.
        let (clean, gold) = sentiment_lines(&[
            (10, [0.8, 0.15, 0.05], Sentiment::Negative),
            (10, [0.1, 0.85, 0.05], Sentiment::Neutral),
        ]);
        assert_eq!(
            tune_sentiment_bias(&clean, &gold, Gate::default()).sentiment_bias,
            [0.0; 3]
        );
    }

    #[test]
    fn the_sentiment_correction_keeps_negative_recall_above_the_floor_at_a_cost_in_f1() {
        // Two negative lines look exactly like the ten neutral ones. Macro-F1 alone
        // would leave them neutral (recall 0.8); the floor makes the correction call
        // them negative, and the neutral lines that look like them with them.
        let (p, gold) = sentiment_lines(&[
            (8, [0.6, 0.35, 0.05], Sentiment::Negative),
            (2, [0.3, 0.65, 0.05], Sentiment::Negative),
            (10, [0.3, 0.65, 0.05], Sentiment::Neutral),
        ]);
        let report = |gate: Gate| sentiment_report(&p, &gold, gate);
        let tuned = tune_sentiment_bias(&p, &gold, Gate::default());
        let (tuned, untuned) = (report(tuned), report(Gate::default()));
        assert!(tuned.negative_recall >= SENTIMENT_NEGATIVE_RECALL_FLOOR, "{tuned:?}");
        assert!((untuned.negative_recall - 0.8).abs() < 1e-9);
        assert!(tuned.sentiment_macro_f1 < untuned.sentiment_macro_f1);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
    }
}
