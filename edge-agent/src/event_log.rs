//! The daemon's event stream, numbered so a client can resume it: every event
//! gets the next id of this boot (`<boot>-<seq>`, the SSE `id:`), and the last
//! [`KEPT`] are kept, so a client that reconnects with `Last-Event-ID` hears what
//! it missed once and in order, then the live stream. What is too old to replay,
//! or from before a restart, is reported as missed rather than silently lost.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Events kept for replay; also the live channel's depth.
pub const KEPT: usize = 256;

/// An event's place in the stream: the boot it was published in and its
/// sequence number there, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    boot: u32,
    seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.boot, self.seq)
    }
}

impl EventId {
    /// Reads an id as [`fmt::Display`] writes it; `None` for anything else.
    pub fn parse(text: &str) -> Option<EventId> {
        let (boot, seq) = text.trim().split_once('-')?;
        Some(EventId {
            boot: u32::from_str_radix(boot, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One event with its id.
#[derive(Debug, Clone)]
pub struct Numbered<E> {
    pub id: EventId,
    pub event: E,
}

/// How many events a resuming client missed and cannot be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    /// Too old to replay: this many.
    Count(u64),
    /// Its id is from before a restart, or not one of ours: an unknown number.
    Unknown,
}

/// What a resuming client is given: the kept events after its id, in order, and
/// the live stream from just after them (no gap, no repeat).
pub struct Resumed<E> {
    pub missed: Missed,
    pub replay: Vec<Numbered<E>>,
    pub live: broadcast::Receiver<Numbered<E>>,
}

pub struct EventLog<E> {
    boot: u32,
    inner: Mutex<Inner<E>>,
    sender: broadcast::Sender<Numbered<E>>,
}

struct Inner<E> {
    next: u64,
    kept: VecDeque<Numbered<E>>,
}

impl<E: Clone> EventLog<E> {
    /// A log for one boot; `boot` tells this boot's ids from an earlier one's.
    pub fn new(boot: u32) -> EventLog<E> {
        let (sender, _) = broadcast::channel(KEPT);
        EventLog {
            boot,
            inner: Mutex::new(Inner {
                next: 1,
                kept: VecDeque::with_capacity(KEPT),
            }),
            sender,
        }
    }

    /// Numbers `event`, keeps it for replay and sends it to every subscriber.
    pub fn publish(&self, event: E) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let numbered = Numbered {
            id: EventId {
                boot: self.boot,
                seq: inner.next,
            },
            event,
        };
        inner.next += 1;
        if inner.kept.len() == KEPT {
            inner.kept.pop_front();
        }
        inner.kept.push_back(numbered.clone());
        // No subscriber is fine: late answers are also in the conversation's history.
        let _ = self.sender.send(numbered);
    }

    /// The live stream from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Numbered<E>> {
        self.sender.subscribe()
    }

    /// The stream after `last_seen` (a `Last-Event-ID` as the client sent it).
    pub fn resume(&self, last_seen: &str) -> Resumed<E> {
        // Under the lock that publishing takes: an event is either kept before
        // the receiver exists or sent to it, never both nor neither.
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.sender.subscribe();
        let Some(last) = EventId::parse(last_seen).filter(|id| id.boot == self.boot && id.seq < inner.next) else {
            return Resumed {
                missed: Missed::Unknown,
                replay: inner.kept.iter().cloned().collect(),
                live,
            };
        };
        let oldest_kept = inner.kept.front().map_or(inner.next, |n| n.id.seq);
        let missed = match oldest_kept.saturating_sub(last.seq + 1) {
            0 => Missed::None,
            count => Missed::Count(count),
        };
        let replay = inner.kept.iter().filter(|n| n.id.seq > last.seq).cloned().collect();
        Resumed { missed, replay, live }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(replay: &[Numbered<u32>]) -> Vec<u32> {
        replay.iter().map(|n| n.event).collect()
    }

    #[test]
    fn ids_read_back_as_written_and_nothing_else_parses() {
        let id = EventId { boot: 0xbeef, seq: 42 };
        assert_eq!(id.to_string(), "0000beef-42");
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        for bad in ["", "42", "zz-1", "beef-", "beef--1", "beef-1-2"] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_client_resuming_gets_what_came_after_its_id_then_the_live_stream() {
        let log = EventLog::new(7);
        let mut first = log.subscribe();
        for event in 1..=5 {
            log.publish(event);
        }
        let mut seen = Vec::new();
        while let Ok(n) = first.try_recv() {
            seen.push(n);
        }
        let last = seen[2].id.to_string();
        let mut resumed = log.resume(&last);
        assert_eq!(resumed.missed, Missed::None);
        assert_eq!(seqs(&resumed.replay), [4, 5]);
        log.publish(6);
        assert_eq!(resumed.live.try_recv().unwrap().event, 6, "no gap");
        assert!(resumed.live.try_recv().is_err(), "no repeat");
        let up_to_date = log.resume(&resumed.replay[1].id.to_string());
        assert_eq!(seqs(&up_to_date.replay), [6]);
    }

    #[test]
    fn what_is_too_old_or_from_another_boot_is_reported_missed() {
        let log = EventLog::new(1);
        let total = KEPT as u32 + 10;
        for event in 1..=total {
            log.publish(event);
        }
        let resumed = log.resume("00000001-3");
        assert_eq!(resumed.missed, Missed::Count(7), "4..=10 are gone");
        assert_eq!(resumed.replay.len(), KEPT);
        assert_eq!(resumed.replay[0].event, 11);

        for stale in ["00000002-3", "not an id", "00000001-999999"] {
            let resumed = log.resume(stale);
            assert_eq!(resumed.missed, Missed::Unknown, "{stale}");
            assert_eq!(resumed.replay.len(), KEPT, "{stale}: all that is kept");
        }
    }
}
