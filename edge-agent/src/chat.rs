//! `edge-agent chat`: a conversation on the terminal, or over a pipe.
//!
//! One line is one turn; the conversation ends at end of input. Each turn prints
//! the answer, then the intent, confidence, sentiment, route and sources (or, with
//! `--json`, one JSON object per turn and nothing else on stdout). A line that is
//! not valid UTF-8, or too long, gets an error line and the conversation goes on.
//! On a terminal the line is edited with rustyline (arrow keys, the session's
//! history); log lines stay out of the conversation unless `-v` asks for them.

use std::io::{BufRead, IsTerminal, Write};

use crate::classify::{read_line, MAX_LINE_BYTES};
use crate::dialogue::{Handling, Turn};
use crate::engine::{Engine, Event, UplinkState};
use crate::store::DropReason;

#[derive(Debug, Default, Clone, Copy)]
pub struct ChatSummary {
    pub turns: usize,
    pub errors: usize,
}

/// Where the driver's turns come from.
pub enum Input<R: BufRead> {
    /// A pipe or a file: lines, each at most [`MAX_LINE_BYTES`].
    Lines(R),
    /// A terminal: line editing and the session's history (rustyline), with the
    /// prompt.
    Terminal(Box<rustyline::DefaultEditor>),
}

impl<R: BufRead> Input<R> {
    /// The terminal's line editor when `interactive`, else the lines of `reader`.
    /// A terminal the editor cannot drive falls back to plain lines.
    pub fn new(reader: R, interactive: bool) -> Input<R> {
        if interactive {
            match rustyline::DefaultEditor::new() {
                Ok(editor) => return Input::Terminal(Box::new(editor)),
                Err(error) => tracing::warn!(%error, "no line editing on this terminal"),
            }
        }
        Input::Lines(reader)
    }

    /// The next turn's text (trimmed), an error to show for a bad line, or `None`
    /// at the end of input.
    fn next(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<Result<String, String>>> {
        match self {
            Input::Lines(reader) => {
                let Some(read) = read_line(reader, buf)? else {
                    return Ok(None);
                };
                Ok(Some(match read {
                    Err(len) => Err(format!("that line is {len} bytes; the limit is {MAX_LINE_BYTES}")),
                    Ok(()) => match std::str::from_utf8(buf) {
                        Ok(t) => Ok(t.trim().to_string()),
                        Err(e) => Err(format!("that line is not valid UTF-8: {e}")),
                    },
                }))
            }
            Input::Terminal(editor) => match editor.readline("you> ") {
                Ok(line) if line.len() > MAX_LINE_BYTES => Ok(Some(Err(format!(
                    "that line is {} bytes; the limit is {MAX_LINE_BYTES}",
                    line.len()
                )))),
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.trim());
                    }
                    Ok(Some(Ok(line.trim().to_string())))
                }
                Err(rustyline::error::ReadlineError::Eof | rustyline::error::ReadlineError::Interrupted) => Ok(None),
                Err(rustyline::error::ReadlineError::Io(error)) => Err(error),
                Err(other) => Err(std::io::Error::other(other.to_string())),
            },
        }
    }
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

/// Runs the conversation `conversation_id` on `engine` (whose uplink, when one is
/// configured, runs beside it). Between turns it shows what the cloud said and
/// how the connection stands.
pub fn run(
    engine: &Engine,
    conversation_id: &str,
    options: &ChatOptions,
    mut input: Input<impl BufRead>,
    mut output: impl Write,
) -> std::io::Result<ChatSummary> {
    let mut summary = ChatSummary::default();
    let mut buf = Vec::new();
    let mut events = engine.subscribe();
    if options.prompt {
        writeln!(
            output,
            "{} assistant, offline-capable. Ask about the car; Ctrl-D ends the chat. Cloud: {}.",
            engine.assistant().config().assistant.name,
            state_words(engine.uplink_state())
        )?;
    }
    loop {
        print_events(&mut output, options, &mut events, conversation_id)?;
        output.flush()?;
        let Some(text) = input.next(&mut buf)? else {
            break;
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
        match engine.ask(uuid::Uuid::now_v7(), conversation_id, &text) {
            Ok(answered) => {
                summary.turns += 1;
                print_turn(&mut output, options, &answered.turn, engine.uplink_state())?;
            }
            Err(error) => {
                summary.errors += 1;
                tracing::warn!(%error, "turn failed");
                print_error(&mut output, options, &error.to_string())?;
            }
        }
        output.flush()?;
    }
    print_events(&mut output, options, &mut events, conversation_id)?;
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

fn state_words(state: UplinkState) -> &'static str {
    match state {
        UplinkState::NotConfigured => "not configured, requests wait in the car",
        UplinkState::Connecting => "connecting",
        UplinkState::Connected => "connected",
        UplinkState::Disconnected => "offline, requests wait in the car",
    }
}

/// What arrived since the last turn: the cloud's answers for this conversation
/// and changes of the connection.
fn print_events(
    output: &mut impl Write,
    options: &ChatOptions,
    events: &mut tokio::sync::broadcast::Receiver<crate::event_log::Numbered<Event>>,
    conversation_id: &str,
) -> std::io::Result<()> {
    loop {
        let event = match events.try_recv() {
            Ok(numbered) => numbered.event,
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return Ok(()),
        };
        // JSON mode keeps its contract: one object per turn and nothing else.
        if options.json {
            continue;
        }
        let mine = event.conversation_id() == Some(conversation_id);
        match &event {
            Event::Uplink { state } => writeln!(output, "cloud: {}", state_words(*state))?,
            Event::Response { text, .. } if mine => writeln!(output, "cloud> {text}")?,
            // The car's queue is shared: a request dropped from an earlier chat
            // is still this driver's.
            Event::Dropped(d) => {
                let why = match d.reason {
                    DropReason::Expired => "it was no longer useful by the time the car could send it",
                    DropReason::Evicted => "the queue for the cloud was full",
                    DropReason::TooLarge => "it was too large to send",
                };
                writeln!(
                    output,
                    "note: your earlier {} request was dropped: {why}",
                    d.intent.replace('_', " ")
                )?
            }
            _ => {}
        }
    }
}

fn print_turn(output: &mut impl Write, options: &ChatOptions, turn: &Turn, state: UplinkState) -> std::io::Result<()> {
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
    let handling = if turn.handling == Handling::Escalated {
        format!("{handling}, cloud {}", state_words(state))
    } else {
        handling.to_string()
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
    writeln!(output, "{facts}")
}
