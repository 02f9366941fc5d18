//! Speed and memory of local understanding, for each encoder: model load time,
//! per-utterance latency (intent + sentiment, one utterance at a time, whole, on one
//! thread) and the peak RSS of `edge-agent classify` over the dev set.
//!
//! cargo bench -p edge-agent --bench classify
//!
//! The transformer rows need models/fetch-encoder.sh; without it they are skipped.

#![allow(unsafe_code)] // wait4(2) for the child's peak RSS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use models::metrics::percentile;
use models::{Classifier, EncoderKind};

const ROUNDS: usize = 5;

fn main() {
    // One idle core: candle's matmuls read this on every call.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let dev = models::corpus::load_jsonl(&root.join("eval/dev.jsonl")).expect("dev set");
    let texts: Vec<&str> = dev.iter().map(|e| e.text.as_str()).collect();
    let encoder_dir = root.join("encoder/all-MiniLM-L6-v2");

    let has_encoder = encoder_dir.join("model.safetensors").is_file();
    // Peak RSS first, while this process is still small: Linux carries the parent's
    // high-water mark across fork/exec into the child's ru_maxrss.
    let kinds: Vec<EncoderKind> = [EncoderKind::Compact, EncoderKind::Transformer]
        .into_iter()
        .filter(|k| *k == EncoderKind::Compact || has_encoder)
        .collect();
    let rss: Vec<i64> = kinds.iter().map(|&k| peak_rss_of_classify(k, &texts)).collect();

    println!(
        "{} utterances x {ROUNDS} rounds, single thread, unbatched, no truncation",
        texts.len()
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "encoder", "load ms", "p50 ms", "p99 ms", "mean ms", "classify RSS"
    );
    if !has_encoder {
        println!("{:<12} skipped: run models/fetch-encoder.sh", "transformer");
    }
    for (kind, rss) in kinds.into_iter().zip(rss) {
        let load = || match kind {
            EncoderKind::Compact => Classifier::load_compact(&root.join("compact")).unwrap(),
            EncoderKind::Transformer => Classifier::load_transformer(&root.join("transformer"), &encoder_dir).unwrap(),
        };
        let mut load_ms = Vec::new();
        let mut classifier = None;
        for _ in 0..3 {
            let started = Instant::now();
            classifier = Some(load());
            load_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let classifier = classifier.unwrap();
        for t in texts.iter().take(50) {
            classifier.classify(t).unwrap();
        }
        let mut latencies = Vec::with_capacity(texts.len() * ROUNDS);
        for _ in 0..ROUNDS {
            for t in &texts {
                let started = Instant::now();
                std::hint::black_box(classifier.classify(t).unwrap());
                latencies.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        println!(
            "{:<12} {:>10.1} {:>10.3} {:>10.3} {:>12.3} {:>11.1} MB",
            kind.to_string(),
            percentile(&load_ms, 0.5),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            mean,
            rss as f64 / 1024.0
        );
        if kind == EncoderKind::Transformer {
            profile_transformer(&encoder_dir, &texts);
        }
    }
}

/// Runs `edge-agent classify` over the utterances and returns its peak RSS in KiB.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives the rusage
fn peak_rss_of_classify(kind: EncoderKind, texts: &[&str]) -> i64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["classify", "--encoder", &kind.to_string()])
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("edge-agent runs");
    let input: String = texts
        .iter()
        .map(|t| format!("{}\n", serde_json::json!({ "text": t })))
        .collect();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert_eq!(status, 0, "classify failed");
    usage.ru_maxrss
}

/// Where the transformer's time goes: tokenising, the encoder forward pass, and
/// the cost of the padding to 128 tokens that the stock tokenizer.json asks for.
fn profile_transformer(encoder_dir: &Path, texts: &[&str]) {
    use models::encoder::SentenceEncoder;
    let encoder = models::transformer::TransformerEncoder::load(encoder_dir).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_file(encoder_dir.join("tokenizer.json")).unwrap();
    let mut tokenize = Vec::new();
    let mut forward = Vec::new();
    let mut tokens = Vec::new();
    for t in texts {
        let started = Instant::now();
        let enc = tokenizer.encode(*t, true).unwrap();
        tokenize.push(started.elapsed().as_secs_f64() * 1e3);
        tokens.push(enc.get_ids().iter().filter(|&&id| id != 0).count() as f64);
        let started = Instant::now();
        std::hint::black_box(encoder.embed(t).unwrap());
        forward.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "  profile: {:.1} real tokens on average; stock tokenizer.json pads every input to 128 tokens",
        tokens.iter().sum::<f64>() / tokens.len() as f64
    );
    println!(
        "  profile: tokenize+pad to 128 p50 {:.3} ms; embed (our tokenize, unpadded forward, pool) p50 {:.3} ms",
        percentile(&tokenize, 0.5),
        percentile(&forward, 0.5)
    );
    let padded: Vec<f64> = texts
        .iter()
        .take(60)
        .map(|t| {
            let enc = tokenizer.encode(*t, true).unwrap();
            let ids = candle_core::Tensor::new(enc.get_ids(), &candle_core::Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let mask = candle_core::Tensor::new(enc.get_attention_mask(), &candle_core::Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let started = Instant::now();
            std::hint::black_box(encoder.forward_raw(&ids, &mask).unwrap());
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "  profile: the same forward padded to 128 tokens p50 {:.3} ms (what a plain stock setup measures)",
        percentile(&padded, 0.5)
    );
}
