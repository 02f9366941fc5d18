//! `cloud-bridge report`: per day, volumes, the local-versus-escalated ratio from
//! the cars' analytics, the sentiment trend, top intents, handoffs and their
//! waits, and model cost.

use std::io::Write;

use crate::store::{DayReport, StoreError, Stores};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read the analytics: {0}")]
    Store(#[from] StoreError),
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Prints the last `days` days (a table, or JSON) and returns them.
pub fn print(stores: &Stores, days: u32, json: bool, out: &mut dyn Write) -> Result<Vec<DayReport>, ReportError> {
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let report = stores.analytics.report(days, today)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(report);
    }
    let mut table = daemon::table::new(
        &[
            "day (UTC)",
            "escal.",
            "car turns",
            "local%",
            "sentiment",
            "neg%",
            "fixed",
            "handoffs",
            "mean wait",
            "cost USD",
            "top intents",
        ],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    for d in &report {
        let local = (d.edge_local + d.edge_escalated > 0)
            .then(|| 100.0 * d.edge_local as f64 / (d.edge_local + d.edge_escalated) as f64);
        let fmt = |v: Option<f64>, scale: f64, unit: &str| {
            v.map(|v| format!("{:.1}{unit}", v * scale))
                .unwrap_or_else(|| "-".to_string())
        };
        table.add_row(vec![
            d.day.to_string(),
            d.escalations.to_string(),
            d.edge_turns.to_string(),
            fmt(local, 1.0, ""),
            d.mean_sentiment
                .map(|s| format!("{s:+.2}"))
                .unwrap_or_else(|| "-".into()),
            fmt(d.negative_share, 100.0, ""),
            d.corrections.to_string(),
            d.handoffs.to_string(),
            fmt(d.mean_wait_seconds, 1.0, "s"),
            format!("{:.4}", d.cost_usd),
            d.top_intents
                .iter()
                .map(|(i, n)| format!("{i} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(report)
}
