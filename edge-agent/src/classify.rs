//! `edge-agent classify`: the JSON-lines contract. One `{"text": ...}` object per
//! input line; one JSON object per input line on the output, in input order, flushed
//! per line. A bad line (malformed JSON, no `text`, invalid UTF-8, oversize, blank)
//! gets `{"error": ..., "line": N}` in its place and the rest go on. Only JSON is
//! written to the output; logs go to stderr.

use std::io::{BufRead, Write};

use models::{Classifier, Prediction};
use serde::{Deserialize, Serialize};

/// The longest input line read, in bytes; longer lines are skipped to their end and
/// answered with an error, so one runaway line cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct Request {
    text: String,
}

/// One output line for a classified utterance: the text, then the prediction's
/// fields, flattened.
#[derive(Debug, Serialize)]
pub struct Classified {
    pub text: String,
    #[serde(flatten)]
    pub prediction: Prediction,
}

#[derive(Serialize)]
struct LineError {
    error: String,
    line: usize,
}

/// What a run did, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub lines: usize,
    pub errors: usize,
}

/// Reads one line of at most `MAX_LINE_BYTES` (without its newline). Returns
/// `Ok(None)` at end of input and `Ok(Some(Err(len)))` for an oversize line, which
/// is consumed to its end.
pub(crate) fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<Result<(), usize>>> {
    buf.clear();
    let mut total = 0usize;
    let mut oversize = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(if total == 0 {
                None
            } else if oversize {
                Some(Err(total))
            } else {
                Some(Ok(()))
            });
        }
        let (used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let content = &chunk[..if done { used - 1 } else { used }];
        total += used;
        if !oversize {
            if buf.len() + content.len() > MAX_LINE_BYTES {
                oversize = true;
                buf.clear();
            } else {
                buf.extend_from_slice(content);
            }
        }
        input.consume(used);
        if done {
            return Ok(Some(if oversize { Err(total) } else { Ok(()) }));
        }
    }
}

/// Classifies every line of `input` onto `output`.
pub fn run(classifier: &Classifier, mut input: impl BufRead, mut output: impl Write) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let mut buf = Vec::new();
    while let Some(read) = read_line(&mut input, &mut buf)? {
        summary.lines += 1;
        let line = summary.lines;
        let outcome = match read {
            Err(len) => Err(format!("line is {len} bytes; the limit is {MAX_LINE_BYTES}")),
            Ok(()) => classify_line(classifier, &buf),
        };
        match outcome {
            Ok(classified) => serde_json::to_writer(&mut output, &classified)?,
            Err(error) => {
                summary.errors += 1;
                tracing::warn!(line, %error, "bad input line");
                serde_json::to_writer(&mut output, &LineError { error, line })?;
            }
        }
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(summary)
}

fn classify_line(classifier: &Classifier, bytes: &[u8]) -> Result<Classified, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("line is not valid UTF-8: {e}"))?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.trim().is_empty() {
        // Still answered, so that output line N always belongs to input line N.
        return Err("empty line: expected a JSON object {\"text\": string}".into());
    }
    let request: Request =
        serde_json::from_str(text).map_err(|e| format!("expected a JSON object {{\"text\": string}}: {e}"))?;
    let prediction = classifier.classify(&request.text).map_err(|e| e.to_string())?;
    Ok(Classified {
        text: request.text,
        prediction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Result<Vec<u8>, usize>> {
        let mut reader = std::io::BufReader::with_capacity(7, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(r) = read_line(&mut reader, &mut buf).unwrap() {
            out.push(r.map(|()| buf.clone()));
        }
        out
    }

    #[test]
    fn reads_lines_across_buffer_boundaries_and_without_final_newline() {
        let got = lines(b"first line\nsecond\nlast no newline");
        assert_eq!(
            got,
            vec![
                Ok(b"first line".to_vec()),
                Ok(b"second".to_vec()),
                Ok(b"last no newline".to_vec())
            ]
        );
    }

    #[test]
    fn oversize_line_is_skipped_to_its_end_and_reading_goes_on() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input);
        assert_eq!(got, vec![Err(MAX_LINE_BYTES + 11), Ok(b"next".to_vec())]);
    }
}
