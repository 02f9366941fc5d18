//! The small trained heads that turn a sentence embedding into intent and sentiment
//! probabilities: one hidden ReLU layer each. They do no IO; the classifier loads
//! their tensors from `model.safetensors` / `heads.safetensors`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::labels::{Intent, Sentiment};

/// `logits = relu(x · w1ᵀ + b1) · w2ᵀ + b2`.
#[derive(Debug, Clone)]
pub struct MlpHead {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
}

impl MlpHead {
    /// `x` is `(n, dim)`; the result is `(n, classes)` logits.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let hidden = x.matmul(&self.w1.t()?)?.broadcast_add(&self.b1)?.relu()?;
        Ok(hidden.matmul(&self.w2.t()?)?.broadcast_add(&self.b2)?)
    }

    pub fn input_dim(&self) -> usize {
        self.w1.dims()[1]
    }

    pub fn classes(&self) -> usize {
        self.w2.dims()[0]
    }

    /// One head whose logits are the mean of `heads`' logits: their hidden layers
    /// side by side (`w1`, `b1` stacked) and their output layers scaled by `1/k`
    /// (`w2` side by side, `b2` averaged). An ensemble that loads, runs and is
    /// stored exactly like a single, wider head.
    pub fn average_logits(heads: &[MlpHead]) -> Result<MlpHead> {
        let k = heads.len();
        if k == 0 {
            return Err(ModelError::Input("an ensemble needs at least one head".into()));
        }
        let cat = |f: &dyn Fn(&MlpHead) -> &Tensor, dim: usize| -> Result<Tensor> {
            let parts: Vec<&Tensor> = heads.iter().map(f).collect();
            Ok(Tensor::cat(&parts, dim)?)
        };
        let b2 = Tensor::stack(&heads.iter().map(|h| &h.b2).collect::<Vec<_>>(), 0)?.mean(0)?;
        Ok(MlpHead {
            w1: cat(&|h| &h.w1, 0)?,
            b1: cat(&|h| &h.b1, 0)?,
            w2: (cat(&|h| &h.w2, 1)? / k as f64)?,
            b2,
        })
    }

    fn from_map(map: &HashMap<String, Tensor>, prefix: &str, dim: usize, classes: usize) -> Result<Self, String> {
        let get = |name: &str| -> Result<Tensor, String> {
            let key = format!("{prefix}.{name}");
            let t = map.get(&key).ok_or_else(|| format!("tensor {key} is missing"))?;
            t.to_dtype(DType::F32).map_err(|e| format!("tensor {key}: {e}"))
        };
        let head = MlpHead {
            w1: get("w1")?,
            b1: get("b1")?,
            w2: get("w2")?,
            b2: get("b2")?,
        };
        let hidden = head.w1.dims().first().copied().unwrap_or(0);
        let expect = [
            ("w1", head.w1.dims().to_vec(), vec![hidden, dim]),
            ("b1", head.b1.dims().to_vec(), vec![hidden]),
            ("w2", head.w2.dims().to_vec(), vec![classes, hidden]),
            ("b2", head.b2.dims().to_vec(), vec![classes]),
        ];
        for (name, got, want) in expect {
            if got != want {
                return Err(format!(
                    "tensor {prefix}.{name} has shape {got:?}, expected {want:?} \
                     (encoder width {dim}, {classes} classes): retrain the heads for this encoder and label set"
                ));
            }
        }
        Ok(head)
    }

    fn to_map(&self, prefix: &str, map: &mut HashMap<String, Tensor>) {
        for (name, t) in [("w1", &self.w1), ("b1", &self.b1), ("w2", &self.w2), ("b2", &self.b2)] {
            map.insert(format!("{prefix}.{name}"), t.clone());
        }
    }
}

/// Per-utterance (intent, sentiment) probability rows of a batch.
pub type BatchProbabilities = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// The intent head (30 outputs, in [`Intent::ALL`] order) and the sentiment head
/// (3 outputs, in [`Sentiment::ALL`] order).
#[derive(Debug, Clone)]
pub struct Heads {
    pub intent: MlpHead,
    pub sentiment: MlpHead,
}

impl Heads {
    /// Both heads of every member averaged in logit space ([`MlpHead::average_logits`]).
    pub fn ensemble(members: &[Heads]) -> Result<Heads> {
        let intent: Vec<MlpHead> = members.iter().map(|h| h.intent.clone()).collect();
        let sentiment: Vec<MlpHead> = members.iter().map(|h| h.sentiment.clone()).collect();
        Ok(Heads {
            intent: MlpHead::average_logits(&intent)?,
            sentiment: MlpHead::average_logits(&sentiment)?,
        })
    }

    /// Reads both heads from a tensor map, checking every shape against the encoder
    /// width and the contract's label counts.
    pub fn from_map(map: &HashMap<String, Tensor>, dim: usize, dir: &std::path::Path) -> Result<Self> {
        let intent = MlpHead::from_map(map, "intent", dim, Intent::COUNT).map_err(|r| ModelError::invalid(dir, r))?;
        let sentiment =
            MlpHead::from_map(map, "sentiment", dim, Sentiment::COUNT).map_err(|r| ModelError::invalid(dir, r))?;
        Ok(Heads { intent, sentiment })
    }

    pub fn to_map(&self) -> HashMap<String, Tensor> {
        let mut map = HashMap::new();
        self.intent.to_map("intent", &mut map);
        self.sentiment.to_map("sentiment", &mut map);
        map
    }

    /// Probabilities for one embedding `(dim,)`: (intent, sentiment).
    pub fn probabilities(&self, embedding: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
        let x = embedding.unsqueeze(0)?;
        let intent = candle_nn::ops::softmax_last_dim(&self.intent.logits(&x)?)?;
        let sentiment = candle_nn::ops::softmax_last_dim(&self.sentiment.logits(&x)?)?;
        Ok((intent.squeeze(0)?.to_vec1()?, sentiment.squeeze(0)?.to_vec1()?))
    }

    /// Probabilities for a batch `(n, dim)`: one row per utterance for each head.
    pub fn batch_probabilities(&self, x: &Tensor) -> Result<BatchProbabilities> {
        let intent = candle_nn::ops::softmax_last_dim(&self.intent.logits(x)?)?;
        let sentiment = candle_nn::ops::softmax_last_dim(&self.sentiment.logits(x)?)?;
        Ok((intent.to_vec2()?, sentiment.to_vec2()?))
    }
}

/// A zero head of the right shapes (for shape tests that need no weight files).
pub fn zero_heads(dim: usize, hidden: usize) -> Heads {
    let z = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).expect("zeros on cpu");
    let head = |classes: usize| MlpHead {
        w1: z(&[hidden, dim]),
        b1: z(&[hidden]),
        w2: z(&[classes, hidden]),
        b2: z(&[classes]),
    };
    Heads {
        intent: head(Intent::COUNT),
        sentiment: head(Sentiment::COUNT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_head(seed: u64, dim: usize, hidden: usize, classes: usize) -> MlpHead {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut t = |shape: &[usize]| {
            let n = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
        };
        MlpHead {
            w1: t(&[hidden, dim]),
            b1: t(&[hidden]),
            w2: t(&[classes, hidden]),
            b2: t(&[classes]),
        }
    }

    #[test]
    fn an_ensemble_head_gives_the_mean_of_its_members_logits() {
        let members: Vec<MlpHead> = (0..3).map(|s| random_head(s, 6, 4, 5)).collect();
        let merged = MlpHead::average_logits(&members).unwrap();
        assert_eq!(merged.w1.dims(), &[12, 6]);
        assert_eq!(merged.w2.dims(), &[5, 12]);
        let x = random_head(9, 6, 2, 1).w1; // two inputs of width 6
        let want: Vec<Vec<f32>> = {
            let sum = members
                .iter()
                .map(|h| h.logits(&x).unwrap())
                .reduce(|a, b| (a + b).unwrap())
                .unwrap();
            (sum / 3.0).unwrap().to_vec2().unwrap()
        };
        let got: Vec<Vec<f32>> = merged.logits(&x).unwrap().to_vec2().unwrap();
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-5, "{got:?} != {want:?}");
        }
        assert!(MlpHead::average_logits(&[]).is_err());
    }

    #[test]
    fn zero_heads_have_the_contract_shapes_and_give_uniform_probabilities() {
        let heads = zero_heads(240, 16);
        let (intent, sentiment) = heads
            .probabilities(&Tensor::ones(240, DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!((intent.len(), sentiment.len()), (Intent::COUNT, Sentiment::COUNT));
        assert!(intent.iter().all(|p| (p - 1.0 / Intent::COUNT as f32).abs() < 1e-6));
        let map = heads.to_map();
        let back = Heads::from_map(&map, 240, std::path::Path::new("mem")).unwrap();
        assert_eq!(back.intent.input_dim(), 240);
        assert_eq!(back.sentiment.classes(), Sentiment::COUNT);
        let err = Heads::from_map(&map, 256, std::path::Path::new("mem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("intent.w1") && err.contains("[16, 240]"), "{err}");
    }
}
