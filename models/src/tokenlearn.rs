//! Fitting the compact table to the sentence encoder's sentence vectors: the
//! tokenlearn step of Model2Vec. The distilled table ([`crate::distill`]) knows each
//! token alone; here it learns how tokens combine in real sentences. Over a large
//! text set (the corpus's training lines and every public row training may see,
//! labels unused), the mean of a sentence's rows, through a linear map to the
//! encoder's width, is pulled towards the encoder's own vector for that sentence
//! (cosine loss). The map is fitted first by least squares on the distilled table,
//! so the first steps do not scramble it, and thrown away at the end: the table
//! keeps its width and the product its lookup-and-average.
//!
//! The encoder's vectors cost a forward pass per sentence (minutes for the public
//! sets on two cores), so [`teacher_vectors`] caches them by a hash of the encoder
//! and the texts.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use nalgebra::DMatrix;
use sha2::{Digest, Sha256};

use crate::encoder::{l2_normalise, SentenceEncoder};
use crate::error::{ModelError, Result};
use crate::rng::SplitMix64;
use crate::train::{averaging_matrix, SparseAdamTable};

#[derive(Debug, Clone)]
pub struct SentenceFit {
    pub epochs: usize,
    pub batch_size: usize,
    /// The table's rate (lazy Adam); the map's is ten times it.
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for SentenceFit {
    fn default() -> Self {
        SentenceFit {
            epochs: 3,
            batch_size: 256,
            learning_rate: 5e-4,
            seed: 0x70c3,
        }
    }
}

/// The encoder's vectors for `texts` `(n, encoder dim)`, read from
/// `cache_dir/teacher-<sha>.safetensors` when an earlier run left them there.
pub fn teacher_vectors(
    encoder: &dyn SentenceEncoder,
    encoder_sha256: &str,
    texts: &[&str],
    cache_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Tensor> {
    let mut hasher = Sha256::new();
    hasher.update(encoder_sha256.as_bytes());
    for t in texts {
        hasher.update((t.len() as u64).to_le_bytes());
        hasher.update(t.as_bytes());
    }
    let key = crate::corpus::hex(&hasher.finalize());
    let path = cache_dir.join(format!("teacher-{}.safetensors", &key[..16]));
    if let Ok(mut cached) = candle_core::safetensors::load(&path, &Device::Cpu) {
        if let Some(vectors) = cached.remove("vectors") {
            if vectors.dims().first() == Some(&texts.len()) {
                progress(&format!(
                    "tokenlearn: {} sentence vectors from {}",
                    texts.len(),
                    path.display()
                ));
                return Ok(vectors);
            }
        }
    }
    progress(&format!(
        "tokenlearn: embedding {} sentences with the encoder",
        texts.len()
    ));
    let vectors = crate::recipe::embed_all(encoder, texts, progress)?;
    std::fs::create_dir_all(cache_dir).map_err(|e| ModelError::io(cache_dir, e))?;
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("vectors".to_string(), vectors.clone())]),
        &tmp,
    )?;
    std::fs::rename(&tmp, &path).map_err(|e| ModelError::io(&path, e))?;
    Ok(vectors)
}

/// The table after fitting its sentence means to `targets` (one row per entry of
/// `token_ids`, L2-normalised). Returns the table as f32.
pub fn fit_table_to_sentences(
    table: &Tensor,
    token_ids: &[Vec<u32>],
    targets: &Tensor,
    config: &SentenceFit,
    progress: &mut dyn FnMut(&str),
) -> Result<Tensor> {
    let keep: Vec<u32> = (0..token_ids.len() as u32)
        .filter(|&i| !token_ids[i as usize].is_empty())
        .collect();
    let mut rows = SparseAdamTable::new(table, config.learning_rate)?;
    let map = Var::from_tensor(&least_squares_map(&rows, token_ids, &keep, targets)?)?;
    let mut optimizer = AdamW::new(
        vec![map.clone()],
        ParamsAdamW {
            lr: config.learning_rate * 10.0,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = SplitMix64::new(config.seed);
    let mut order = keep;
    for epoch in 1..=config.epochs {
        rng.shuffle(&mut order);
        let (mut total, mut batches) = (0.0f32, 0usize);
        for chunk in order.chunks(config.batch_size) {
            let (flat, average) = averaging_matrix(chunk.iter().map(|&i| token_ids[i as usize].as_slice()))?;
            let batch_rows = Var::from_tensor(&rows.rows(&flat)?)?;
            let pooled = l2_normalise(&average.matmul(&batch_rows)?)?;
            let predicted = l2_normalise(&pooled.matmul(map.as_tensor())?)?;
            let target = targets.index_select(&Tensor::new(chunk, &Device::Cpu)?, 0)?;
            let loss = (1.0 - predicted.mul(&target)?.sum(D::Minus1)?.mean_all()?)?;
            let grads = loss.backward()?;
            optimizer.step(&grads)?;
            if let Some(g) = grads.get(batch_rows.as_tensor()) {
                rows.step(&flat, &g.to_vec2::<f32>()?);
            }
            total += loss.to_scalar::<f32>()?;
            batches += 1;
        }
        progress(&format!(
            "tokenlearn: epoch {epoch}/{} cosine loss {:.4}",
            config.epochs,
            total / batches.max(1) as f32
        ));
    }
    rows.into_tensor()
}

/// The linear map from pooled table rows to `targets` that least squares gives
/// (ridge 1e-3), so training starts from the best map for the distilled table.
fn least_squares_map(rows: &SparseAdamTable, token_ids: &[Vec<u32>], keep: &[u32], targets: &Tensor) -> Result<Tensor> {
    let mut pooled = Vec::new();
    // Dense averaging matrices are (lines, tokens): small chunks keep them small.
    for chunk in keep.chunks(512) {
        let (flat, average) = averaging_matrix(chunk.iter().map(|&i| token_ids[i as usize].as_slice()))?;
        pooled.push(l2_normalise(&average.matmul(&rows.rows(&flat)?)?)?);
    }
    let x = Tensor::cat(&pooled, 0)?;
    let y = targets.index_select(&Tensor::new(keep, &Device::Cpu)?, 0)?;
    let (dim, out) = (x.dims2()?.1, y.dims2()?.1);
    let xtx = x.t()?.matmul(&x)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let xty = x.t()?.matmul(&y)?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let a = DMatrix::from_fn(dim, dim, |i, j| xtx[i][j] + if i == j { 1e-3 } else { 0.0 });
    let b = DMatrix::from_fn(dim, out, |i, j| xty[i][j]);
    let w = a
        .cholesky()
        .ok_or_else(|| ModelError::Input("tokenlearn: the pooled rows are degenerate".into()))?
        .solve(&b);
    let data: Vec<f32> = (0..dim)
        .flat_map(|i| (0..out).map(move |j| (i, j)))
        .map(|(i, j)| w[(i, j)] as f32)
        .collect();
    Ok(Tensor::from_vec(data, (dim, out), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sentences whose target is one fixed direction per "topic" token: after the
    /// fit, the pooled means line up with their targets far better than before.
    #[test]
    fn fitting_moves_sentence_means_towards_their_targets() {
        let mut rng = SplitMix64::new(7);
        let (vocab, dim, out) = (40usize, 8usize, 6usize);
        let table: Vec<f32> = (0..vocab * dim).map(|_| rng.next_f32() - 0.5).collect();
        let table = Tensor::from_vec(table, (vocab, dim), &Device::Cpu).unwrap();
        let directions: Vec<f32> = (0..4 * out).map(|_| rng.next_f32() - 0.5).collect();
        let directions = l2_normalise(&Tensor::from_vec(directions, (4, out), &Device::Cpu).unwrap()).unwrap();
        let mut token_ids = Vec::new();
        let mut topics = Vec::new();
        for n in 0..400u32 {
            let topic = n % 4;
            token_ids.push(vec![topic, 4 + rng.below(36) as u32, 4 + rng.below(36) as u32]);
            topics.push(topic);
        }
        let targets = directions
            .index_select(&Tensor::new(topics.as_slice(), &Device::Cpu).unwrap(), 0)
            .unwrap();
        let fit = |t: &Tensor, epochs| {
            let config = SentenceFit {
                epochs,
                batch_size: 32,
                learning_rate: 1e-2,
                seed: 1,
            };
            let fitted = fit_table_to_sentences(t, &token_ids, &targets, &config, &mut |_| {}).unwrap();
            let rows = SparseAdamTable::new(&fitted, 0.0).unwrap();
            let keep: Vec<u32> = (0..400).collect();
            let map = least_squares_map(&rows, &token_ids, &keep, &targets).unwrap();
            let (flat, average) = averaging_matrix(token_ids.iter().map(|v| v.as_slice())).unwrap();
            let pooled = l2_normalise(&average.matmul(&rows.rows(&flat).unwrap()).unwrap()).unwrap();
            let predicted = l2_normalise(&pooled.matmul(&map).unwrap()).unwrap();
            predicted
                .mul(&targets)
                .unwrap()
                .sum(1)
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let before = fit(&table, 0);
        let after = fit(&table, 30);
        assert!(after > before + 0.1, "mean cosine {before:.3} before, {after:.3} after");
        assert!(after > 0.9, "mean cosine after fitting {after:.3}");
    }
}
