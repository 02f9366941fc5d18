//! The out-of-scope gate of the contract: from the heads' probabilities to the
//! reported intent, route and sentiment ([`Prediction`]).

use serde::{Deserialize, Serialize};

use crate::labels::{Intent, Route, Sentiment};

/// The out-of-scope gate of the contract.
///
/// The best in-scope label is reported as the intent only when its probability is
/// at least `threshold` and above that of the `out_of_scope` class; otherwise the
/// intent is `out_of_scope`. Emergencies come first: whenever `emergency` has at least
/// `emergency_threshold` (lower than `threshold`), the intent is `emergency`, even if
/// another label scored higher: a false alarm costs a question, a missed emergency
/// costs far more.
///
/// The gate also carries the sentiment head's prior correction, `sentiment_bias`
/// (log-odds added per class, in [`Sentiment::ALL`] order, tuned on the held-out
/// families like the threshold): the head learns the corpus's mix of feelings, and
/// the correction moves its boundaries to where the classes are best told apart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub threshold: f32,
    pub emergency_threshold: f32,
    #[serde(default)]
    pub sentiment_bias: [f32; 3],
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            threshold: 0.5,
            emergency_threshold: 0.25,
            sentiment_bias: [0.0; 3],
        }
    }
}

/// What the product learns about one utterance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// The reported label: the best in-scope label, or `out_of_scope` below the gate.
    pub intent: Intent,
    /// Confidence in `intent`. For `out_of_scope` it is the larger of the
    /// `out_of_scope` probability and `1 - top_confidence`.
    pub intent_confidence: f32,
    /// The best in-scope label, reported even when gated, so the dialogue can ask
    /// the driver to rephrase.
    pub top_intent: Intent,
    pub top_confidence: f32,
    pub sentiment: Sentiment,
    /// `p(positive) - p(negative)`, in [-1, 1], from the same corrected
    /// probabilities that pick `sentiment` (see [`Gate::sentiment_bias`]), so a
    /// negative label always comes with a score at or below zero and a positive
    /// label with one at or above zero.
    pub sentiment_score: f32,
    pub route: Route,
}

impl Gate {
    /// The sentiment head's probabilities with `sentiment_bias` added to their
    /// logarithms, renormalised.
    fn corrected_sentiment(&self, probs: &[f32]) -> Vec<f32> {
        if self.sentiment_bias == [0.0; 3] || probs.len() != 3 {
            return probs.to_vec();
        }
        let logits: Vec<f32> = probs
            .iter()
            .zip(self.sentiment_bias)
            .map(|(p, b)| p.max(1e-12).ln() + b)
            .collect();
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    }

    /// Applies the gate to the heads' probabilities (in label order).
    pub fn decide(&self, intent_probs: &[f32], sentiment_probs: &[f32]) -> Prediction {
        let oos = Intent::OutOfScope.index();
        let (top_index, top_confidence) = intent_probs
            .iter()
            .copied()
            .enumerate()
            .filter(|&(i, _)| i != oos)
            .fold((0, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best });
        let top_intent = Intent::from_index(top_index).expect("head output within the label set");
        let p_oos = intent_probs.get(oos).copied().unwrap_or(0.0);

        let p_emergency = intent_probs.get(Intent::Emergency.index()).copied().unwrap_or(0.0);
        let passes = top_confidence >= self.threshold && top_confidence > p_oos;
        let (intent, intent_confidence) = if p_emergency >= self.emergency_threshold {
            (Intent::Emergency, p_emergency)
        } else if passes {
            (top_intent, top_confidence)
        } else {
            (Intent::OutOfScope, p_oos.max(1.0 - top_confidence))
        };

        let sentiment_probs = self.corrected_sentiment(sentiment_probs);
        let (sentiment_index, _) = sentiment_probs
            .iter()
            .copied()
            .enumerate()
            .fold((1, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best });
        let p = |s: Sentiment| sentiment_probs.get(s.index()).copied().unwrap_or(0.0);
        Prediction {
            intent,
            intent_confidence,
            top_intent,
            top_confidence,
            sentiment: Sentiment::ALL[sentiment_index],
            sentiment_score: (p(Sentiment::Positive) - p(Sentiment::Negative)).clamp(-1.0, 1.0),
            route: intent.route(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs_with(pairs: &[(Intent, f32)]) -> Vec<f32> {
        let rest = 1.0 - pairs.iter().map(|p| p.1).sum::<f32>();
        let mut v = vec![rest / (Intent::COUNT - pairs.len()) as f32; Intent::COUNT];
        for &(i, p) in pairs {
            v[i.index()] = p;
        }
        v
    }

    const NEUTRAL: [f32; 3] = [0.1, 0.8, 0.1];

    #[test]
    fn the_sentiment_correction_moves_the_label_and_the_score_together() {
        let probs = probs_with(&[(Intent::FuelLevel, 0.9)]);
        let plain = Gate::default().decide(&probs, &[0.35, 0.6, 0.05]);
        assert_eq!(plain.sentiment, Sentiment::Neutral);
        let gate = Gate {
            sentiment_bias: [0.7, 0.0, 0.0],
            ..Default::default()
        };
        let corrected = gate.decide(&probs, &[0.35, 0.6, 0.05]);
        assert_eq!(corrected.sentiment, Sentiment::Negative);
        assert!(corrected.sentiment_score < plain.sentiment_score && corrected.sentiment_score < 0.0);
        // The intent side is untouched.
        assert_eq!(
            (corrected.intent, corrected.intent_confidence),
            (plain.intent, plain.intent_confidence)
        );
    }

    #[test]
    fn confident_in_scope_label_passes_the_gate() {
        let gate = Gate {
            threshold: 0.5,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(&probs_with(&[(Intent::FuelLevel, 0.9)]), &NEUTRAL);
        assert_eq!(
            (p.intent, p.top_intent, p.route),
            (Intent::FuelLevel, Intent::FuelLevel, Route::Local)
        );
        assert!((p.intent_confidence - 0.9).abs() < 1e-6);
    }

    #[test]
    fn below_the_gate_reports_out_of_scope_but_keeps_the_top_label() {
        let gate = Gate {
            threshold: 0.5,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(
            &probs_with(&[(Intent::Traffic, 0.4), (Intent::Directions, 0.3)]),
            &NEUTRAL,
        );
        assert_eq!(p.intent, Intent::OutOfScope);
        assert_eq!(p.top_intent, Intent::Traffic);
        assert!((p.top_confidence - 0.4).abs() < 1e-6);
        assert!((p.intent_confidence - 0.6).abs() < 1e-6);
        assert_eq!(p.route, Route::Cloud);
    }

    #[test]
    fn the_out_of_scope_class_wins_over_a_weaker_in_scope_label() {
        let gate = Gate {
            threshold: 0.3,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(
            &probs_with(&[(Intent::OutOfScope, 0.6), (Intent::Greeting, 0.35)]),
            &NEUTRAL,
        );
        assert_eq!(p.intent, Intent::OutOfScope);
        assert_eq!(p.top_intent, Intent::Greeting);
        assert!((p.intent_confidence - 0.65).abs() < 1e-6);
    }

    #[test]
    fn a_confident_emergency_is_never_gated() {
        let gate = Gate {
            threshold: 0.6,
            emergency_threshold: 0.25,
            ..Default::default()
        };
        let p = gate.decide(
            &probs_with(&[(Intent::Emergency, 0.3), (Intent::OutOfScope, 0.29)]),
            &NEUTRAL,
        );
        assert_eq!((p.intent, p.route), (Intent::Emergency, Route::Urgent));
        // Emergency outranks a more probable label once it reaches its floor.
        let p = gate.decide(
            &probs_with(&[(Intent::RoadsideAssistance, 0.6), (Intent::Emergency, 0.3)]),
            &NEUTRAL,
        );
        assert_eq!(
            (p.intent, p.top_intent),
            (Intent::Emergency, Intent::RoadsideAssistance)
        );
        assert!((p.intent_confidence - 0.3).abs() < 1e-6);
        // An emergency below its own floor is still gated like anything else.
        let p = gate.decide(
            &probs_with(&[(Intent::Emergency, 0.2), (Intent::OutOfScope, 0.5)]),
            &NEUTRAL,
        );
        assert_eq!(p.intent, Intent::OutOfScope);
        assert_eq!(p.top_intent, Intent::Emergency);
    }

    #[test]
    fn sentiment_label_is_the_argmax_and_score_is_pos_minus_neg() {
        let gate = Gate::default();
        let p = gate.decide(&probs_with(&[(Intent::Complaint, 0.9)]), &[0.7, 0.2, 0.1]);
        assert_eq!(p.sentiment, Sentiment::Negative);
        assert!((p.sentiment_score + 0.6).abs() < 1e-6);
        let p = gate.decide(&probs_with(&[(Intent::Goodbye, 0.9)]), &[0.05, 0.15, 0.8]);
        assert_eq!(p.sentiment, Sentiment::Positive);
        assert!(p.sentiment_score > 0.7);
    }
}
