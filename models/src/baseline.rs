//! The yardstick: a TF-IDF (word unigrams and bigrams) plus multinomial logistic
//! regression classifier, trained on the same split as the heads, so that "ahead of
//! the baseline" is a measured claim. It is never shipped.

use std::collections::HashMap;

use crate::corpus::{normalise, Example};
use crate::labels::{Intent, Sentiment};
use crate::rng::SplitMix64;

/// A sparse TF-IDF vectoriser fitted on a training set.
#[derive(Debug, Clone)]
pub struct Tfidf {
    vocab: HashMap<String, usize>,
    idf: Vec<f32>,
}

impl Tfidf {
    fn terms(text: &str) -> Vec<String> {
        let words: Vec<String> = normalise(text).split(' ').map(str::to_string).collect();
        let mut terms = words.clone();
        terms.extend(words.windows(2).map(|w| format!("{} {}", w[0], w[1])));
        terms
    }

    pub fn fit(texts: &[&str]) -> Tfidf {
        let mut df: HashMap<String, usize> = HashMap::new();
        for text in texts {
            let mut terms = Self::terms(text);
            terms.sort();
            terms.dedup();
            for t in terms {
                *df.entry(t).or_insert(0) += 1;
            }
        }
        let mut names: Vec<(String, usize)> = df.into_iter().collect();
        names.sort();
        let n = texts.len() as f32;
        let idf = names
            .iter()
            .map(|(_, d)| ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0)
            .collect();
        let vocab = names.into_iter().enumerate().map(|(i, (t, _))| (t, i)).collect();
        Tfidf { vocab, idf }
    }

    /// L2-normalised sublinear TF-IDF features; unknown terms are dropped.
    pub fn transform(&self, text: &str) -> Vec<(usize, f32)> {
        let mut counts: HashMap<usize, f32> = HashMap::new();
        for t in Self::terms(text) {
            if let Some(&i) = self.vocab.get(&t) {
                *counts.entry(i).or_insert(0.0) += 1.0;
            }
        }
        let mut features: Vec<(usize, f32)> = counts
            .into_iter()
            .map(|(i, c)| (i, (1.0 + c.ln()) * self.idf[i]))
            .collect();
        features.sort_by_key(|f| f.0);
        let norm = features.iter().map(|f| f.1 * f.1).sum::<f32>().sqrt().max(1e-12);
        features.iter_mut().for_each(|f| f.1 /= norm);
        features
    }

    pub fn len(&self) -> usize {
        self.idf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idf.is_empty()
    }
}

/// Multinomial logistic regression over sparse features, trained by SGD.
#[derive(Debug, Clone)]
pub struct LogisticRegression {
    classes: usize,
    features: usize,
    /// Row-major `(classes, features)`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl LogisticRegression {
    pub fn train(x: &[Vec<(usize, f32)>], y: &[usize], classes: usize, features: usize, seed: u64) -> Self {
        let mut model = LogisticRegression {
            classes,
            features,
            weights: vec![0.0; classes * features],
            bias: vec![0.0; classes],
        };
        let mut rng = SplitMix64::new(seed);
        let mut order: Vec<usize> = (0..x.len()).collect();
        let (epochs, l2) = (25, 1e-5f32);
        for epoch in 0..epochs {
            let lr = 0.5 / (1.0 + epoch as f32 * 0.2);
            rng.shuffle(&mut order);
            for &i in &order {
                let probs = model.probabilities(&x[i]);
                for (c, p) in probs.iter().enumerate() {
                    let grad = p - if c == y[i] { 1.0 } else { 0.0 };
                    model.bias[c] -= lr * grad;
                    let row = &mut model.weights[c * features..(c + 1) * features];
                    for &(j, v) in &x[i] {
                        row[j] -= lr * (grad * v + l2 * row[j]);
                    }
                }
            }
        }
        model
    }

    pub fn probabilities(&self, x: &[(usize, f32)]) -> Vec<f32> {
        let mut logits: Vec<f32> = (0..self.classes)
            .map(|c| {
                let row = &self.weights[c * self.features..(c + 1) * self.features];
                self.bias[c] + x.iter().map(|&(j, v)| row[j] * v).sum::<f32>()
            })
            .collect();
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let mut sum = 0.0;
        for l in &mut logits {
            *l = (*l - max).exp();
            sum += *l;
        }
        logits.iter_mut().for_each(|l| *l /= sum);
        logits
    }
}

/// The baseline's two classifiers.
#[derive(Debug, Clone)]
pub struct Baseline {
    tfidf: Tfidf,
    intent: LogisticRegression,
    sentiment: LogisticRegression,
}

impl Baseline {
    pub fn train(examples: &[Example], seed: u64) -> Baseline {
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let tfidf = Tfidf::fit(&texts);
        let x: Vec<_> = texts.iter().map(|t| tfidf.transform(t)).collect();
        let intents: Vec<usize> = examples.iter().map(|e| e.intent.index()).collect();
        // The sentiment model learns from the lines that have a sentiment label.
        let (sentiment_x, sentiments): (Vec<_>, Vec<usize>) = x
            .iter()
            .zip(examples)
            .filter_map(|(x, e)| Some((x.clone(), e.sentiment?.index())))
            .unzip();
        Baseline {
            intent: LogisticRegression::train(&x, &intents, Intent::COUNT, tfidf.len(), seed),
            sentiment: LogisticRegression::train(&sentiment_x, &sentiments, Sentiment::COUNT, tfidf.len(), seed ^ 1),
            tfidf,
        }
    }

    /// (intent, sentiment) probabilities, in label order.
    pub fn probabilities(&self, text: &str) -> (Vec<f32>, Vec<f32>) {
        let x = self.tfidf.transform(text);
        (self.intent.probabilities(&x), self.sentiment.probabilities(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_learns_a_separable_toy_set() {
        let mk = |t: &str, i: Intent| Example {
            text: t.into(),
            intent: i,
            sentiment: Some(Sentiment::Neutral),
            family: t.into(),
        };
        let train = vec![
            mk("how much gas is left", Intent::FuelLevel),
            mk("fuel level please", Intent::FuelLevel),
            mk("navigate to the airport", Intent::Directions),
            mk("take me to the airport", Intent::Directions),
        ];
        let baseline = Baseline::train(&train, 7);
        let (p, _) = baseline.probabilities("how much gas");
        assert!(p[Intent::FuelLevel.index()] > p[Intent::Directions.index()]);
        let (p, _) = baseline.probabilities("take me to the station");
        assert!(p[Intent::Directions.index()] > p[Intent::FuelLevel.index()]);
    }
}
