//! Trimming an escalation to fit the payload limit ([`crate::MAX_PAYLOAD_BYTES`]).

use crate::envelope::{encode, Envelope, ProtocolError};
use crate::messages::Body;

/// Encodes an escalation, dropping its oldest recent turns until it fits. Returns
/// the bytes and how many turns were dropped. Only what cannot fit even with no
/// turns is refused.
pub fn encode_escalation(envelope: &mut Envelope) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut dropped = 0;
    loop {
        match encode(envelope) {
            Ok(bytes) => return Ok((bytes, dropped)),
            Err(ProtocolError::TooLarge { size, limit }) => {
                let Body::Escalation(escalation) = &mut envelope.body else {
                    return Err(ProtocolError::TooLarge { size, limit });
                };
                if escalation.recent_turns.is_empty() {
                    return Err(ProtocolError::CannotTrim { size, limit });
                }
                // Drop as many of the oldest as the excess suggests, at least one.
                let excess = size - limit;
                let mut freed = 0;
                let mut n = 0;
                for turn in &escalation.recent_turns {
                    if freed >= excess {
                        break;
                    }
                    freed += turn.text.len() + turn.answer.len() + turn.intent.len() + 40;
                    n += 1;
                }
                let n = n.max(1);
                escalation.recent_turns.drain(..n);
                dropped += n;
            }
            Err(other) => return Err(other),
        }
    }
}
