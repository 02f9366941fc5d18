//! `edge-agent chat`: a conversation on the terminal, or over a pipe.
//!
//! One line is one turn; the conversation ends at end of input. Each turn prints
//! the answer, then the intent, confidence, sentiment, route and sources (or, with
//! `--json`, one JSON object per turn and nothing else on stdout). A line that is
//! not valid UTF-8, or too long, gets an error line and the conversation goes on.

use std::io::{BufRead, IsTerminal, Write};

use crate::classify::{read_line, MAX_LINE_BYTES};
use crate::dialogue::{Assistant, Handling, Session, Turn};
use crate::store::Store;
use crate::vehicle::Vehicle;

#[derive(Debug, Default, Clone, Copy)]
pub struct ChatSummary {
    pub turns: usize,
    pub errors: usize,
}

pub struct ChatOptions {
    pub json: bool,
    /// Show a prompt (an interactive terminal).
    pub prompt: bool,
}

impl ChatOptions {
    pub fn for_terminal(json: bool) -> ChatOptions {
        ChatOptions {
            json,
            prompt: !json && std::io::stdin().is_terminal(),
        }
    }
}

pub fn run(
    assistant: &Assistant,
    vehicle: &mut Vehicle,
    store: &Store,
    session: &mut Session,
    options: &ChatOptions,
    mut input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<ChatSummary> {
    let mut summary = ChatSummary::default();
    let mut buf = Vec::new();
    if options.prompt {
        writeln!(
            output,
            "{} assistant, offline-capable. Ask about the car; Ctrl-D ends the chat.",
            assistant.config().assistant.name
        )?;
    }
    loop {
        if options.prompt {
            write!(output, "you> ")?;
            output.flush()?;
        }
        let Some(read) = read_line(&mut input, &mut buf)? else {
            break;
        };
        let text = match read {
            Err(len) => Err(format!("that line is {len} bytes; the limit is {MAX_LINE_BYTES}")),
            Ok(()) => match std::str::from_utf8(&buf) {
                Ok(t) => Ok(t.trim().to_string()),
                Err(e) => Err(format!("that line is not valid UTF-8: {e}")),
            },
        };
        let text = match text {
            Ok(t) if t.is_empty() => continue,
            Ok(t) => t,
            Err(error) => {
                summary.errors += 1;
                print_error(&mut output, options, &error)?;
                continue;
            }
        };
        vehicle.refresh();
        match assistant.respond(session, vehicle.state(), store, &text) {
            Ok(turn) => {
                summary.turns += 1;
                print_turn(&mut output, options, &turn)?;
            }
            Err(error) => {
                summary.errors += 1;
                tracing::warn!(%error, "turn failed");
                print_error(&mut output, options, &error.to_string())?;
            }
        }
        output.flush()?;
    }
    if options.prompt {
        writeln!(output)?;
    }
    Ok(summary)
}

fn print_error(output: &mut impl Write, options: &ChatOptions, error: &str) -> std::io::Result<()> {
    if options.json {
        serde_json::to_writer(&mut *output, &serde_json::json!({ "error": error }))?;
        writeln!(output)
    } else {
        writeln!(output, "error: {error}")
    }
}

fn print_turn(output: &mut impl Write, options: &ChatOptions, turn: &Turn) -> std::io::Result<()> {
    if options.json {
        serde_json::to_writer(&mut *output, turn)?;
        return writeln!(output);
    }
    if !options.prompt {
        writeln!(output, "you> {}", turn.text)?;
    }
    writeln!(output, "car> {}", turn.answer)?;
    let handling = match turn.handling {
        Handling::Answered => "answered",
        Handling::Rephrase => "rephrase",
        Handling::Escalated => "escalated (pending)",
    };
    let u = &turn.understood;
    let mut facts = format!(
        "     intent {} {:.2} · sentiment {} {:+.2} · route {} · {handling}",
        u.intent.as_str(),
        u.intent_confidence,
        u.sentiment.as_str(),
        u.sentiment_score,
        u.route.as_str(),
    );
    if u.intent == models::Intent::OutOfScope {
        facts.push_str(&format!(
            " · best guess {} {:.2}",
            u.top_intent.as_str(),
            u.top_confidence
        ));
    }
    if !turn.sources.is_empty() {
        facts.push_str(&format!(" · sources {}", turn.sources.join(", ")));
    }
    writeln!(output, "{facts}")?;
    for dropped in &turn.dropped {
        writeln!(
            output,
            "note: an earlier {} request was dropped to make room: the queue for the cloud is full",
            dropped.intent.replace('_', " ")
        )?;
    }
    Ok(())
}
