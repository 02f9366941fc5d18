//! Fine-tuning the transformer encoder's top layers on labelled lines.
//!
//! candle-transformers' BERT normalises with a fused layer norm that has no
//! backward pass, so the top layers are re-implemented here ([`TopLayers`]) with
//! operations candle can differentiate; a test holds them equal to
//! candle-transformers' forward pass on the pretrained weights. The frozen lower
//! layers run once per line and their outputs stay in memory; the top layers and a
//! cosine classifier over the mean-pooled sentence vector then train on them
//! (class-balanced cross-entropy, AdamW, linear decay). The classifier is thrown
//! away: the product trains its heads afresh on the tuned encoder. The tuned layers
//! are written as an overlay of the pretrained weights ([`OVERLAY_FILE`], f16),
//! which [`TransformerEncoder::load_with_overlay`] applies, so a model folder ships
//! only what changed and the pretrained file stays hash-checked.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use candle_nn::{Linear, Module};
use sha2::{Digest, Sha256};

use crate::encoder::l2_normalise;
use crate::error::{ModelError, Result};
use crate::rng::SplitMix64;
use crate::transformer::{EncoderParts, TransformerEncoder};

/// The tuned layers of a fine-tuned encoder, in a transformer model folder.
pub const OVERLAY_FILE: &str = "encoder-top.safetensors";

#[derive(Debug, Clone)]
pub struct FineTune {
    /// How many of the encoder's last layers train; the rest stay frozen.
    pub tuned_layers: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// The layers' peak rate; it decays linearly to zero.
    pub learning_rate: f64,
    /// The classifier's rate.
    pub head_learning_rate: f64,
    /// The cosine classifier's logit scale.
    pub scale: f64,
    pub seed: u64,
}

impl Default for FineTune {
    fn default() -> Self {
        FineTune {
            tuned_layers: 2,
            epochs: 2,
            batch_size: 32,
            learning_rate: 1e-4,
            head_learning_rate: 5e-3,
            scale: 20.0,
            seed: 0xf17e,
        }
    }
}

/// The outcome of [`fine_tune`]: the tuned weights by their names in the
/// encoder, and the mean training loss before and after.
pub struct FineTuned {
    pub overlay: HashMap<String, Tensor>,
    pub loss_before: f32,
    pub loss_after: f32,
}

/// One BERT layer whose weights are [`Var`]s.
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: (Tensor, Tensor),
    intermediate: Linear,
    output: Linear,
    output_norm: (Tensor, Tensor),
}

/// The encoder's last layers, trainable, with the names of their weights.
pub struct TopLayers {
    layers: Vec<Layer>,
    vars: Vec<(String, Var)>,
    heads: usize,
    eps: f64,
}

impl TopLayers {
    /// The last `count` layers of the encoder in `parts`, as trainable copies.
    pub fn from_parts(parts: &EncoderParts, count: usize) -> Result<TopLayers> {
        let total = parts.config.num_hidden_layers;
        if count == 0 || count > total {
            return Err(ModelError::Training(format!(
                "cannot tune {count} layers of an encoder with {total}"
            )));
        }
        let mut vars = Vec::new();
        let mut var = |name: String| -> Result<Tensor> {
            let base = parts
                .tensors
                .get(&name)
                .ok_or_else(|| ModelError::Training(format!("the encoder has no {name}")))?;
            let v = Var::from_tensor(&base.to_dtype(DType::F32)?)?;
            let t = v.as_tensor().clone();
            vars.push((name, v));
            Ok(t)
        };
        let mut layers = Vec::new();
        for i in total - count..total {
            let p = format!("encoder.layer.{i}");
            let mut linear = |n: &str| -> Result<Linear> {
                Ok(Linear::new(
                    var(format!("{p}.{n}.weight"))?,
                    Some(var(format!("{p}.{n}.bias"))?),
                ))
            };
            let query = linear("attention.self.query")?;
            let key = linear("attention.self.key")?;
            let value = linear("attention.self.value")?;
            let attention_out = linear("attention.output.dense")?;
            let intermediate = linear("intermediate.dense")?;
            let output = linear("output.dense")?;
            let attention_norm = (
                var(format!("{p}.attention.output.LayerNorm.weight"))?,
                var(format!("{p}.attention.output.LayerNorm.bias"))?,
            );
            let output_norm = (
                var(format!("{p}.output.LayerNorm.weight"))?,
                var(format!("{p}.output.LayerNorm.bias"))?,
            );
            layers.push(Layer {
                query,
                key,
                value,
                attention_out,
                attention_norm,
                intermediate,
                output,
                output_norm,
            });
        }
        Ok(TopLayers {
            layers,
            vars,
            heads: parts.config.num_attention_heads,
            eps: parts.config.layer_norm_eps,
        })
    }

    /// Runs the layers over `hidden` `(n, len, dim)`, the lower layers' output,
    /// with `mask` `(n, len)` (1 for a token, 0 for padding).
    pub fn forward(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        // Padding gets a large negative score, as candle-transformers' BERT does.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        let mut x = hidden.clone();
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &bias)?;
        }
        Ok(x)
    }

    fn layer_forward(&self, layer: &Layer, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (n, len, dim) = x.dims3()?;
        let head_dim = dim / self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((n, len, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(layer.query.forward(x)?)?;
        let k = split(layer.key.forward(x)?)?;
        let v = split(layer.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?.broadcast_add(bias)?;
        let attention = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let context = attention
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((n, len, dim))?;
        let x = layer_norm(
            &(layer.attention_out.forward(&context)? + x)?,
            &layer.attention_norm,
            self.eps,
        )?;
        let inner = layer.intermediate.forward(&x)?.gelu_erf()?;
        layer_norm(&(layer.output.forward(&inner)? + &x)?, &layer.output_norm, self.eps)
    }

    /// The current weights by their names in the encoder.
    pub fn weights(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(name, v)| (name.clone(), v.as_tensor().detach()))
            .collect()
    }
}

/// Layer normalisation from differentiable operations.
fn layer_norm(x: &Tensor, (weight, bias): &(Tensor, Tensor), eps: f64) -> Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centred
        .broadcast_div(&(variance + eps)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)?)
}

/// The encoder in `parts` without its last `tuned` layers: what stays frozen.
pub fn lower_encoder(parts: &EncoderParts, tuned: usize, dir: &Path) -> Result<TransformerEncoder> {
    let mut lower = parts.clone();
    lower.config.num_hidden_layers = parts.config.num_hidden_layers.saturating_sub(tuned);
    TransformerEncoder::from_parts(lower, dir)
}

/// The lower layers' output for each text, `(tokens, dim)` each, unpadded.
/// Texts are batched by length so that little is padded, and the batches are
/// shared among the machine's cores (candle keeps to about one core on batches
/// this small).
pub fn lower_outputs(
    lower: &TransformerEncoder,
    texts: &[&str],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Tensor>> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let batches: Vec<&[usize]> = order.chunks(64).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(batches.len().max(1));
    let done = std::sync::atomic::AtomicUsize::new(0);
    let run = |worker: usize| -> Result<Vec<(usize, Tensor)>> {
        let mut out = Vec::new();
        for chunk in batches.iter().skip(worker).step_by(workers) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let (ids, mask, lengths) = lower.tokenize_padded(&batch)?;
            let hidden = lower.forward_raw(&ids, &mask)?;
            for (row, (&i, &n)) in chunk.iter().zip(&lengths).enumerate() {
                out.push((i, hidden.get(row)?.narrow(0, 0, n)?.contiguous()?));
            }
            done.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(out)
    };
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|w| scope.spawn(move || run(w))).collect();
        progress_until_joined(&handles, &done, texts.len(), progress);
        handles
            .into_iter()
            .map(|h| h.join().expect("a frozen-layer worker panicked"))
            .collect::<Vec<_>>()
    });
    let mut outputs: Vec<Option<Tensor>> = vec![None; texts.len()];
    for result in results {
        for (i, t) in result? {
            outputs[i] = Some(t);
        }
    }
    Ok(outputs
        .into_iter()
        .map(|o| o.expect("every text is in one batch"))
        .collect())
}

/// Reports `done` of `total` every few seconds until every worker has finished.
fn progress_until_joined<T>(
    handles: &[std::thread::ScopedJoinHandle<'_, T>],
    done: &std::sync::atomic::AtomicUsize,
    total: usize,
    progress: &mut dyn FnMut(&str),
) {
    let mut last = std::time::Instant::now();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if last.elapsed() >= std::time::Duration::from_secs(10) {
            last = std::time::Instant::now();
            let n = done.load(std::sync::atomic::Ordering::Relaxed);
            progress(&format!(
                "fine-tune: embedded {n} of {total} lines through the frozen layers"
            ));
        }
    }
}

/// [`lower_outputs`], read from `cache_dir/lower-<sha>.safetensors` when an
/// earlier run left them there (`key` names the encoder and its split).
pub fn cached_lower_outputs(
    lower: &TransformerEncoder,
    key: &str,
    texts: &[&str],
    cache_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Tensor>> {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    for t in texts {
        hasher.update((t.len() as u64).to_le_bytes());
        hasher.update(t.as_bytes());
    }
    let digest = crate::corpus::hex(&hasher.finalize());
    let path = cache_dir.join(format!("lower-{}.safetensors", &digest[..16]));
    if let Ok(cached) = candle_core::safetensors::load(&path, &Device::Cpu) {
        if let (Some(hidden), Some(lengths)) = (cached.get("hidden"), cached.get("lengths")) {
            let lengths = lengths.to_vec1::<u32>()?;
            if lengths.len() == texts.len() {
                progress(&format!("fine-tune: frozen layers' output from {}", path.display()));
                let mut start = 0;
                let mut outputs = Vec::with_capacity(lengths.len());
                for n in lengths {
                    outputs.push(hidden.narrow(0, start, n as usize)?);
                    start += n as usize;
                }
                return Ok(outputs);
            }
        }
    }
    let outputs = lower_outputs(lower, texts, progress)?;
    std::fs::create_dir_all(cache_dir).map_err(|e| ModelError::io(cache_dir, e))?;
    let lengths: Vec<u32> = outputs.iter().map(|o| o.dims()[0] as u32).collect();
    let tensors = HashMap::from([
        ("hidden".to_string(), Tensor::cat(&outputs, 0)?),
        ("lengths".to_string(), Tensor::new(lengths.as_slice(), &Device::Cpu)?),
    ]);
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, &path).map_err(|e| ModelError::io(&path, e))?;
    Ok(outputs)
}

/// Pads the cached outputs of `rows` into `(rows, longest, dim)` with its mask.
fn padded(outputs: &[Tensor], rows: &[usize]) -> Result<(Tensor, Tensor)> {
    let longest = rows
        .iter()
        .map(|&r| outputs[r].dim(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let len = longest.iter().copied().max().unwrap_or(0);
    let mut xs = Vec::with_capacity(rows.len());
    let mut mask = Vec::with_capacity(rows.len() * len);
    for (&r, &n) in rows.iter().zip(&longest) {
        let x = &outputs[r];
        xs.push(if n < len {
            Tensor::cat(&[x, &Tensor::zeros((len - n, x.dim(1)?), DType::F32, &Device::Cpu)?], 0)?
        } else {
            x.clone()
        });
        mask.extend(std::iter::repeat_n(1u32, n));
        mask.extend(std::iter::repeat_n(0u32, len - n));
    }
    Ok((
        Tensor::stack(&xs, 0)?,
        Tensor::from_vec(mask, (rows.len(), len), &Device::Cpu)?,
    ))
}

/// Batches of row indices of similar length, in a seeded order.
fn length_batches(outputs: &[Tensor], batch_size: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..outputs.len()).collect();
    rng.shuffle(&mut order);
    order.sort_by_key(|&i| outputs[i].dims()[0]);
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    rng.shuffle(&mut batches);
    batches
}

/// The sentence vectors (mean-pooled, L2-normalised, as the encoder embeds) of
/// the top layers' output over each of `outputs`, in order: `(outputs.len(), dim)`.
pub fn sentence_vectors(top: &TopLayers, outputs: &[Tensor], batch_size: usize) -> Result<Tensor> {
    let batches = length_batches(outputs, batch_size * 4, &mut SplitMix64::new(0));
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(batches.len().max(1));
    let run = |worker: usize| -> Result<Vec<(usize, Tensor)>> {
        let mut out = Vec::new();
        for batch in batches.iter().skip(worker).step_by(workers) {
            let (x, mask) = padded(outputs, batch)?;
            let pooled = TransformerEncoder::pool(&top.forward(&x, &mask)?, &mask)?.detach();
            for (row, &i) in batch.iter().enumerate() {
                out.push((i, pooled.get(row)?));
            }
        }
        Ok(out)
    };
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|w| scope.spawn(move || run(w))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a sentence-vector worker panicked"))
            .collect::<Vec<_>>()
    });
    let mut rows: Vec<Option<Tensor>> = vec![None; outputs.len()];
    for result in results {
        for (i, t) in result? {
            rows[i] = Some(t);
        }
    }
    let rows: Vec<Tensor> = rows
        .into_iter()
        .map(|r| r.expect("every row is in one batch"))
        .collect();
    Ok(Tensor::stack(&rows, 0)?)
}

/// Each class's mean sentence vector, normalised (zero for a class with no row).
fn centroids(pooled: &Tensor, labels: &[u32], classes: usize) -> Result<Tensor> {
    let mut one_hot = vec![0f32; classes * labels.len()];
    for (row, &label) in labels.iter().enumerate() {
        one_hot[label as usize * labels.len() + row] = 1.0;
    }
    let assign = Tensor::from_vec(one_hot, (classes, labels.len()), &Device::Cpu)?;
    l2_normalise(&assign.matmul(pooled)?)
}

/// The class-balanced cross-entropy of a cosine classifier over `pooled`.
fn loss(pooled: &Tensor, classifier: &Tensor, targets: &Tensor, scale: f64) -> Result<Tensor> {
    let logits = (pooled.matmul(&l2_normalise(classifier)?.t()?)? * scale)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    Ok((log_probs * targets)?.sum_all()?.neg()?)
}

/// Per-row targets: a one-hot row scaled by the row's class weight, the whole
/// batch summing to one.
fn weighted_targets(rows: &[usize], labels: &[u32], class_weights: &[f32], classes: usize) -> Result<Tensor> {
    let total: f32 = rows.iter().map(|&r| class_weights[labels[r] as usize]).sum();
    let mut t = vec![0f32; rows.len() * classes];
    for (i, &r) in rows.iter().enumerate() {
        t[i * classes + labels[r] as usize] = class_weights[labels[r] as usize] / total.max(f32::EPSILON);
    }
    Ok(Tensor::from_vec(t, (rows.len(), classes), &Device::Cpu)?)
}

/// What one training step reads.
struct Step<'a> {
    top: &'a TopLayers,
    classifier: &'a Var,
    outputs: &'a [Tensor],
    scale: f64,
}

impl Step<'_> {
    /// The loss of `batch` against `targets` (one row each) and its gradients for
    /// the layers and the classifier. The batch is split among the machine's
    /// cores and the parts' gradients summed: candle keeps to about one core on
    /// tensors this small.
    fn gradients(&self, batch: &[usize], targets: &Tensor) -> Result<(f32, candle_core::backprop::GradStore)> {
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(batch.len());
        let part = batch.len().div_ceil(workers.max(1));
        let run = |start: usize| -> Result<(f32, candle_core::backprop::GradStore)> {
            let rows = &batch[start..(start + part).min(batch.len())];
            let (x, mask) = padded(self.outputs, rows)?;
            let pooled = TransformerEncoder::pool(&self.top.forward(&x, &mask)?, &mask)?;
            let part_targets = targets.narrow(0, start, rows.len())?;
            let part_loss = loss(&pooled, self.classifier.as_tensor(), &part_targets, self.scale)?;
            Ok((part_loss.to_scalar::<f32>()?, part_loss.backward()?))
        };
        let parts = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..batch.len())
                .step_by(part)
                .map(|start| scope.spawn(move || run(start)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a fine-tuning worker panicked"))
                .collect::<Result<Vec<_>>>()
        })?;
        let total = parts.iter().map(|(part_loss, _)| part_loss).sum();
        let mut parts = parts.into_iter().map(|(_, grads)| grads);
        let mut sum = parts.next().expect("a batch has rows");
        let rest: Vec<_> = parts.collect();
        for var in self.top.vars.iter().map(|(_, v)| v).chain([self.classifier]) {
            let mut grad = sum.get(var.as_tensor()).cloned();
            for g in rest.iter().filter_map(|grads| grads.get(var.as_tensor())) {
                grad = Some(match grad {
                    None => g.clone(),
                    Some(acc) => (acc + g)?,
                });
            }
            if let Some(g) = grad {
                sum.insert(var.as_tensor(), g);
            }
        }
        Ok((total, sum))
    }
}

/// Fine-tunes the last layers of the encoder in `parts` to tell `labels`
/// (`classes` of them) apart over `outputs`, the frozen layers' output for each
/// line ([`lower_outputs`]).
pub fn fine_tune(
    parts: &EncoderParts,
    outputs: &[Tensor],
    labels: &[u32],
    classes: usize,
    config: &FineTune,
    progress: &mut dyn FnMut(&str),
) -> Result<FineTuned> {
    if outputs.len() != labels.len() || outputs.is_empty() {
        return Err(ModelError::Training(format!(
            "fine-tuning needs one label per line ({} lines, {} labels)",
            outputs.len(),
            labels.len()
        )));
    }
    let top = TopLayers::from_parts(parts, config.tuned_layers)?;
    let start = sentence_vectors(&top, outputs, config.batch_size)?;
    let classifier = Var::from_tensor(&centroids(&start, labels, classes)?)?;
    let class_weights = crate::train::balanced_weights(labels, classes);
    let mean_loss = |pooled: &Tensor| -> Result<f32> {
        let all: Vec<usize> = (0..labels.len()).collect();
        let targets = weighted_targets(&all, labels, &class_weights, classes)?;
        Ok(loss(pooled, classifier.as_tensor(), &targets, config.scale)?.to_scalar::<f32>()?)
    };
    let loss_before = mean_loss(&start)?;
    progress(&format!("fine-tune: loss {loss_before:.4} before"));

    let layer_vars: Vec<Var> = top.vars.iter().map(|(_, v)| v.clone()).collect();
    let params = |lr| ParamsAdamW {
        lr,
        weight_decay: 0.01,
        ..Default::default()
    };
    let mut layers_opt = AdamW::new(layer_vars, params(config.learning_rate))?;
    let mut head_opt = AdamW::new(vec![classifier.clone()], params(config.head_learning_rate))?;
    let mut rng = SplitMix64::new(config.seed);
    let steps_per_epoch = labels.len().div_ceil(config.batch_size);
    let total_steps = (steps_per_epoch * config.epochs).max(1);
    let mut step = 0;
    for epoch in 0..config.epochs {
        let mut running = 0.0;
        for (b, batch) in length_batches(outputs, config.batch_size, &mut rng)
            .into_iter()
            .enumerate()
        {
            let targets = weighted_targets(&batch, labels, &class_weights, classes)?;
            let step_input = Step {
                top: &top,
                classifier: &classifier,
                outputs,
                scale: config.scale,
            };
            let (batch_loss, grads) = step_input.gradients(&batch, &targets)?;
            let decay = 1.0 - step as f64 / total_steps as f64;
            layers_opt.set_learning_rate(config.learning_rate * decay);
            layers_opt.step(&grads)?;
            head_opt.step(&grads)?;
            running += batch_loss;
            step += 1;
            if b % 50 == 49 {
                progress(&format!(
                    "fine-tune: epoch {}/{}, batch {}/{steps_per_epoch}, loss {:.4}",
                    epoch + 1,
                    config.epochs,
                    b + 1,
                    running / (b + 1) as f32
                ));
            }
        }
    }
    let loss_after = mean_loss(&sentence_vectors(&top, outputs, config.batch_size)?)?;
    progress(&format!("fine-tune: loss {loss_after:.4} after"));
    Ok(FineTuned {
        overlay: top.weights(),
        loss_before,
        loss_after,
    })
}

/// Writes the overlay as f16 through a temporary name.
pub fn write_overlay(path: &Path, overlay: &HashMap<String, Tensor>) -> Result<()> {
    let half = overlay
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_dtype(DType::F16)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(&half, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::SentenceEncoder;
    use crate::transformer::default_encoder_dir;

    /// The pretrained encoder, or a SKIP line (a failure when externals are required).
    fn encoder_parts() -> Option<(EncoderParts, std::path::PathBuf)> {
        let dir = default_encoder_dir();
        match EncoderParts::load(&dir) {
            Ok(parts) => Some((parts, dir)),
            Err(e) => {
                assert!(
                    std::env::var_os("EDGE_REQUIRE_EXTERNALS").is_none(),
                    "the pretrained encoder is required: {e}"
                );
                // Past the harness's capture, so the skip always shows.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIP: no pretrained encoder ({e}); run models/fetch-encoder.sh"
                );
                None
            }
        }
    }

    const LINES: [&str; 4] = [
        "how much fuel is left",
        "the tyre pressure light came on this morning can i bring it in tomorrow",
        "hi",
        "what is two plus two",
    ];

    #[test]
    fn frozen_layers_then_top_layers_equal_the_whole_encoder() {
        let Some((parts, dir)) = encoder_parts() else { return };
        let whole = TransformerEncoder::from_parts(parts.clone(), &dir).unwrap();
        let lower = lower_encoder(&parts, 2, &dir).unwrap();
        let top = TopLayers::from_parts(&parts, 2).unwrap();
        let outputs = lower_outputs(&lower, &LINES, &mut |_| {}).unwrap();
        let rows: Vec<usize> = (0..LINES.len()).collect();
        let (x, mask) = padded(&outputs, &rows).unwrap();
        let ours = TransformerEncoder::pool(&top.forward(&x, &mask).unwrap(), &mask).unwrap();
        let theirs = whole.embed_batch(&LINES).unwrap();
        let gap = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(gap < 1e-4, "the re-implemented layers differ from candle's by {gap}");
    }

    #[test]
    fn fine_tuning_lowers_the_loss_and_the_overlay_loads_back() {
        let Some((parts, dir)) = encoder_parts() else { return };
        let lower = lower_encoder(&parts, 1, &dir).unwrap();
        // Two classes the pretrained encoder mixes up: two phrasings each.
        let lines = [
            "the car battery is flat",
            "my battery died overnight",
            "my phone battery is flat",
            "the phone battery died overnight",
        ];
        let labels = [0, 0, 1, 1];
        let outputs = lower_outputs(&lower, &lines, &mut |_| {}).unwrap();
        let config = FineTune {
            tuned_layers: 1,
            epochs: 15,
            batch_size: 4,
            learning_rate: 1e-3,
            ..Default::default()
        };
        let tuned = fine_tune(&parts, &outputs, &labels, 2, &config, &mut |_| {}).unwrap();
        assert!(
            tuned.loss_after < tuned.loss_before * 0.5,
            "loss {} -> {}",
            tuned.loss_before,
            tuned.loss_after
        );
        assert_eq!(tuned.overlay.len(), 16, "one layer's sixteen weights");

        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(OVERLAY_FILE);
        write_overlay(&path, &tuned.overlay).unwrap();
        let base = TransformerEncoder::load(&dir).unwrap();
        let tuned_encoder = TransformerEncoder::load_with_overlay(&dir, &path).unwrap();
        let before = base.embed("my phone battery is flat").unwrap();
        let after = tuned_encoder.embed("my phone battery is flat").unwrap();
        let moved = (before - after)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(moved > 1e-3, "the overlay changed nothing");
    }

    #[test]
    fn an_overlay_naming_an_unknown_weight_or_shape_is_refused() {
        let Some((parts, dir)) = encoder_parts() else { return };
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(OVERLAY_FILE);
        let cases = [
            ("encoder.layer.9.output.dense.bias", 384, "does not have"),
            ("encoder.layer.5.output.dense.bias", 383, "is [383]"),
        ];
        for (name, len, expected) in cases {
            let overlay = HashMap::from([(name.to_string(), Tensor::zeros(len, DType::F32, &Device::Cpu).unwrap())]);
            write_overlay(&path, &overlay).unwrap();
            let err = TransformerEncoder::load_with_overlay(&dir, &path)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
        drop(parts);
    }
}
