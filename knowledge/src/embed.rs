//! The seam between the knowledge base and whatever turns text into vectors.
//!
//! The knowledge crate knows no model: edge-agent and cloud-bridge hand it their
//! sentence encoder through [`Embedder`]. Stored vectors are tagged with
//! [`Embedder::model_id`], so vectors of different models are never compared: a
//! model change re-embeds the articles.

/// Turns text into a fixed-width vector; cosine similarity compares them.
pub trait Embedder: Send + Sync {
    /// Names the model exactly (for example the sha256 of its weights).
    fn model_id(&self) -> String;
    fn embed(&self, text: &str) -> Result<Vec<f32>, String>;
}

/// Cosine similarity; 0 when either vector is zero or the widths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (na, nb) = (dot(a, a), dot(b, b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot(a, b) / (na.sqrt() * nb.sqrt())
    }
}

/// The dot product over the common width, in eight independent lanes so that
/// the compiler vectorises it (a single running sum cannot be reordered).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum::<f32>()
}

/// Scales `v` to unit length (a zero vector stays zero), so that the cosine of
/// two normalised vectors is their dot product.
pub fn normalise(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(any(test, feature = "test-util"))]
pub mod fake {
    //! A deterministic stand-in embedder for tests: hashed bag of lowercase words.

    use super::Embedder;

    #[derive(Debug, Clone)]
    pub struct HashingEmbedder {
        pub dim: usize,
        /// Lets a test pretend the model changed.
        pub id: String,
    }

    impl Default for HashingEmbedder {
        fn default() -> Self {
            HashingEmbedder {
                dim: 64,
                id: "hashing-64".to_string(),
            }
        }
    }

    impl Embedder for HashingEmbedder {
        fn model_id(&self) -> String {
            self.id.clone()
        }

        fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
            let mut v = vec![0.0; self.dim];
            for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                let h = word
                    .to_lowercase()
                    .bytes()
                    .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
                v[(h % self.dim as u64) as usize] += 1.0;
            }
            Ok(v)
        }
    }
}
