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
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
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
