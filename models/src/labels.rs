//! The label contract, owned by `protocol` (both sides of the wire speak it) and
//! re-exported here, where the models predict it.

pub use protocol::labels::{parse_contract_table, Intent, Route, Sentiment, UnknownLabel};
