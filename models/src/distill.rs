//! Distilling the compact encoder's static token embeddings from the pretrained
//! sentence encoder, following the Model2Vec recipe:
//!
//! 1. embed every vocabulary token alone with the transformer (`[CLS] t [SEP]`,
//!    mean-pooled);
//! 2. centre the table and reduce it with PCA to `pca_dim` components;
//! 3. weight each row by its token's estimated frequency (SIF: `a / (a + p(t))`, with
//!    `p(t)` from Zipf's law over the vocabulary rank), so frequent, empty tokens
//!    ("the", punctuation) weigh little in the mean;
//! 4. store as f16.

use candle_core::{DType, Tensor};
use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::Result;
use crate::manifest::Distillation;
use crate::transformer::{LoneTokenPooling, TransformerEncoder};

#[derive(Debug, Clone)]
pub struct DistillConfig {
    pub pca_dim: usize,
    pub sif_coefficient: f64,
    /// Tokens embedded per forward pass.
    pub batch: usize,
    pub pooling: LoneTokenPooling,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            pca_dim: 256,
            sif_coefficient: 1e-4,
            batch: 512,
            pooling: LoneTokenPooling::Mean,
        }
    }
}

/// Runs steps 1–4 and returns the f16 table `(vocab, pca_dim)` with its record.
pub fn distill(
    encoder: &TransformerEncoder,
    source: &str,
    source_sha256: &str,
    config: &DistillConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<(Tensor, Distillation)> {
    let vocab = encoder.vocab_size();
    let ids: Vec<u32> = (0..vocab as u32).collect();
    let mut chunks = Vec::new();
    for (i, chunk) in ids.chunks(config.batch).enumerate() {
        chunks.push(encoder.embed_lone_tokens(chunk, config.pooling)?);
        if i % 10 == 0 || (i + 1) * config.batch >= vocab {
            progress(&format!(
                "distill: embedded {}/{vocab} tokens",
                ((i + 1) * config.batch).min(vocab)
            ));
        }
    }
    let table = Tensor::cat(&chunks, 0)?;
    let (reduced, explained) = pca(&table, config.pca_dim)?;
    progress(&format!(
        "distill: PCA to {} dims keeps {:.1}% of the variance",
        config.pca_dim,
        explained * 100.0
    ));
    let weights = sif_weights(vocab, config.sif_coefficient);
    let weighted = reduced.broadcast_mul(&Tensor::from_vec(weights, (vocab, 1), reduced.device())?)?;
    let record = Distillation {
        source: source.to_string(),
        source_sha256: source_sha256.to_string(),
        steps: vec![
            format!("embed every vocabulary token alone as `[CLS] token [SEP]` with the source encoder, pooled: {:?}", config.pooling),
            "centre the table (subtract the mean row)".into(),
            format!("PCA to {} components (eigenvectors of the covariance, largest first)", config.pca_dim),
            format!(
                "SIF weighting: row r times a / (a + p(r)), a = {}, p(r) = (1/(r+2)) / sum, Zipf over the vocabulary rank",
                config.sif_coefficient
            ),
            "store as f16".into(),
        ],
        vocab_size: vocab,
        source_dim: table.dims()[1],
        pca_dim: config.pca_dim,
        explained_variance: explained,
        dtype: "f16".into(),
        sif_coefficient: config.sif_coefficient,
    };
    Ok((weighted.to_dtype(DType::F16)?, record))
}

/// Centres `table` `(n, d)` and projects it on its `k` principal components.
/// Returns the projection `(n, k)` and the share of variance kept.
pub fn pca(table: &Tensor, k: usize) -> Result<(Tensor, f64)> {
    let (n, d) = table.dims2()?;
    let centred = table.broadcast_sub(&table.mean_keepdim(0)?)?;
    let cov = (centred.t()?.matmul(&centred)? / (n as f64 - 1.0).max(1.0))?;
    let cov: Vec<f64> = cov.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let eigen = SymmetricEigen::new(DMatrix::from_row_slice(d, d, &cov));
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let total: f64 = eigen.eigenvalues.iter().map(|v| v.max(0.0)).sum();
    let kept: f64 = order[..k.min(d)].iter().map(|&i| eigen.eigenvalues[i].max(0.0)).sum();
    // Projection matrix (d, k), columns = eigenvectors, sign fixed so that each
    // column's largest entry is positive (eigenvectors are only defined up to sign).
    let mut proj = vec![0f32; d * k];
    for (col, &i) in order[..k.min(d)].iter().enumerate() {
        let v = eigen.eigenvectors.column(i);
        let sign = if v.iter().fold(0f64, |m, &x| if x.abs() > m.abs() { x } else { m }) < 0.0 {
            -1.0
        } else {
            1.0
        };
        for row in 0..d {
            proj[row * k + col] = (v[row] * sign) as f32;
        }
    }
    let proj = Tensor::from_vec(proj, (d, k), table.device())?;
    Ok((centred.matmul(&proj)?, if total > 0.0 { kept / total } else { 0.0 }))
}

/// SIF weights over a vocabulary assumed sorted by frequency (as BERT's WordPiece
/// vocabulary roughly is): `a / (a + p(r))` with Zipf `p(r) ∝ 1 / (r + 2)`.
pub fn sif_weights(vocab: usize, a: f64) -> Vec<f32> {
    let inv: Vec<f64> = (0..vocab).map(|r| 1.0 / (r as f64 + 2.0)).collect();
    let sum: f64 = inv.iter().sum();
    inv.iter().map(|p| (a / (a + p / sum)) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pca_keeps_the_dominant_direction() {
        // Points along (1, 1, 0) with a little noise on the third axis.
        let data: Vec<f32> = (0..50)
            .flat_map(|i| {
                let t = i as f32 - 25.0;
                [t, t, if i % 2 == 0 { 0.1 } else { -0.1 }]
            })
            .collect();
        let table = Tensor::from_vec(data, (50, 3), &Device::Cpu).unwrap();
        let (proj, explained) = pca(&table, 1).unwrap();
        assert_eq!(proj.dims(), &[50, 1]);
        assert!(explained > 0.99, "{explained}");
    }

    #[test]
    fn sif_weights_favour_rare_tokens() {
        let w = sif_weights(30_000, 1e-4);
        assert!(w[0] < w[1000] && w[1000] < w[29_999]);
        assert!(w.iter().all(|&x| x > 0.0 && x <= 1.0));
    }
}
