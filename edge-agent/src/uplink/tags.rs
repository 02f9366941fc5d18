//! The in-flight tags: what each publish awaiting its PUBACK was. rumqttc's
//! `publish()` returns no packet id, so publishes are paired with the ids of its
//! `Outgoing::Publish` events in order, and a PUBACK's id says what it
//! acknowledges.

use std::collections::{HashMap, VecDeque};

/// What a publish was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    /// An outbox row: the broker has it once acked, and it stays in the outbox
    /// until the cloud says so.
    Escalation(i64),
    /// The analytics batch the connection holds until its PUBACK.
    AnalyticsBatch,
    /// A status report (or shadow update). A lost one is not resent: the next
    /// connection reports the state as it is then.
    StatusReport,
    /// An acknowledged escalation asked again for its answer; a lost one is asked
    /// again later.
    AskedAgain,
}

/// One connection's tags: publishes waiting for their packet id, in publish
/// order, then by packet id until the PUBACK.
#[derive(Debug, Default)]
pub(super) struct Tags {
    awaiting_pkid: VecDeque<Tag>,
    by_pkid: HashMap<u16, Tag>,
}

impl Tags {
    /// A publish was queued on the link.
    pub(super) fn published(&mut self, tag: Tag) {
        self.awaiting_pkid.push_back(tag);
    }

    /// The link sent the oldest queued publish with this packet id.
    pub(super) fn sent(&mut self, pkid: u16) {
        if let Some(tag) = self.awaiting_pkid.pop_front() {
            self.by_pkid.insert(pkid, tag);
        }
    }

    /// The broker acknowledged this packet id: what it was, if this connection
    /// sent it.
    pub(super) fn acked(&mut self, pkid: u16) -> Option<Tag> {
        self.by_pkid.remove(&pkid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_pair_with_packet_ids_in_order_and_acks_in_any_order() {
        let mut tags = Tags::default();
        tags.published(Tag::Escalation(7));
        tags.published(Tag::StatusReport);
        tags.published(Tag::Escalation(9));
        tags.sent(3);
        tags.sent(4);
        tags.sent(5);
        assert_eq!(tags.acked(5), Some(Tag::Escalation(9)));
        assert_eq!(tags.acked(3), Some(Tag::Escalation(7)));
        assert_eq!(tags.acked(3), None, "an id is acknowledged once");
        assert_eq!(tags.acked(4), Some(Tag::StatusReport));
        assert_eq!(tags.acked(1), None, "an id this connection never sent");
    }
}
