//! The label contract (`protocol/contract/intents.md`, a copy of the team's shared
//! contract): the 30 intents the product reports, the route each one takes by
//! default, and the sentiment labels with their score. The car's models predict
//! them (`models` re-exports them) and both sides of the wire speak them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What the driver wants, exactly as the contract spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    FuelLevel,
    FuelType,
    FuelEconomy,
    TirePressure,
    WarningLight,
    VehicleHealth,
    OilChangeWhen,
    OilChangeHow,
    TireChange,
    JumpStart,
    LastService,
    FeatureHowto,
    CurrentLocation,
    Greeting,
    Goodbye,
    BookService,
    RoadsideAssistance,
    Emergency,
    TalkToAgent,
    Complaint,
    RecallWarranty,
    Directions,
    Distance,
    Traffic,
    FindPlace,
    Affirm,
    Deny,
    Cancel,
    Repeat,
    OutOfScope,
}

/// Where an intent is handled by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Answered on the vehicle, online or not.
    Local,
    /// Escalated to the cloud supervisor, queued while offline.
    Cloud,
    /// Escalated at once, ahead of everything, never held back by the gate.
    Urgent,
}

impl Intent {
    /// Every label, in the contract's order. Head outputs use this order.
    pub const ALL: [Intent; 30] = [
        Intent::FuelLevel,
        Intent::FuelType,
        Intent::FuelEconomy,
        Intent::TirePressure,
        Intent::WarningLight,
        Intent::VehicleHealth,
        Intent::OilChangeWhen,
        Intent::OilChangeHow,
        Intent::TireChange,
        Intent::JumpStart,
        Intent::LastService,
        Intent::FeatureHowto,
        Intent::CurrentLocation,
        Intent::Greeting,
        Intent::Goodbye,
        Intent::BookService,
        Intent::RoadsideAssistance,
        Intent::Emergency,
        Intent::TalkToAgent,
        Intent::Complaint,
        Intent::RecallWarranty,
        Intent::Directions,
        Intent::Distance,
        Intent::Traffic,
        Intent::FindPlace,
        Intent::Affirm,
        Intent::Deny,
        Intent::Cancel,
        Intent::Repeat,
        Intent::OutOfScope,
    ];

    pub const COUNT: usize = Self::ALL.len();

    /// Position in [`Intent::ALL`] and in the intent head's output.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(index: usize) -> Option<Intent> {
        Self::ALL.get(index).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::FuelLevel => "fuel_level",
            Intent::FuelType => "fuel_type",
            Intent::FuelEconomy => "fuel_economy",
            Intent::TirePressure => "tire_pressure",
            Intent::WarningLight => "warning_light",
            Intent::VehicleHealth => "vehicle_health",
            Intent::OilChangeWhen => "oil_change_when",
            Intent::OilChangeHow => "oil_change_how",
            Intent::TireChange => "tire_change",
            Intent::JumpStart => "jump_start",
            Intent::LastService => "last_service",
            Intent::FeatureHowto => "feature_howto",
            Intent::CurrentLocation => "current_location",
            Intent::Greeting => "greeting",
            Intent::Goodbye => "goodbye",
            Intent::BookService => "book_service",
            Intent::RoadsideAssistance => "roadside_assistance",
            Intent::Emergency => "emergency",
            Intent::TalkToAgent => "talk_to_agent",
            Intent::Complaint => "complaint",
            Intent::RecallWarranty => "recall_warranty",
            Intent::Directions => "directions",
            Intent::Distance => "distance",
            Intent::Traffic => "traffic",
            Intent::FindPlace => "find_place",
            Intent::Affirm => "affirm",
            Intent::Deny => "deny",
            Intent::Cancel => "cancel",
            Intent::Repeat => "repeat",
            Intent::OutOfScope => "out_of_scope",
        }
    }

    /// The contract's default route.
    pub fn route(self) -> Route {
        use Intent::*;
        match self {
            Emergency => Route::Urgent,
            BookService | RoadsideAssistance | TalkToAgent | Complaint | RecallWarranty | Directions | Distance
            | Traffic | FindPlace | OutOfScope => Route::Cloud,
            FuelLevel | FuelType | FuelEconomy | TirePressure | WarningLight | VehicleHealth | OilChangeWhen
            | OilChangeHow | TireChange | JumpStart | LastService | FeatureHowto | CurrentLocation | Greeting
            | Goodbye | Affirm | Deny | Cancel | Repeat => Route::Local,
        }
    }

    pub fn is_in_scope(self) -> bool {
        self != Intent::OutOfScope
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown label, named in the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown label {0:?}: the labels are those of contract/intents.md")]
pub struct UnknownLabel(pub String);

impl FromStr for Intent {
    type Err = UnknownLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Intent::ALL
            .iter()
            .copied()
            .find(|intent| intent.as_str() == s)
            .ok_or_else(|| UnknownLabel(s.to_string()))
    }
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Local => "local",
            Route::Cloud => "cloud",
            Route::Urgent => "urgent",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the driver sounds.
///
/// The sentiment head gives three probabilities. The label is the most probable of
/// the three; the score is `p(positive) - p(negative)`, in [-1, 1]. So a `negative`
/// label always has a score below zero and a `positive` label one above zero, while
/// `neutral` can sit anywhere in between; the score's magnitude says how strongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Negative,
    Neutral,
    Positive,
}

impl Sentiment {
    pub const ALL: [Sentiment; 3] = [Sentiment::Negative, Sentiment::Neutral, Sentiment::Positive];
    pub const COUNT: usize = 3;

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Negative => "negative",
            Sentiment::Neutral => "neutral",
            Sentiment::Positive => "positive",
        }
    }
}

impl fmt::Display for Sentiment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sentiment {
    type Err = UnknownLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sentiment::ALL
            .iter()
            .copied()
            .find(|sentiment| sentiment.as_str() == s)
            .ok_or_else(|| UnknownLabel(s.to_string()))
    }
}

/// The label table of a contract document: `(label, route)` for every table row.
pub fn parse_contract_table(markdown: &str) -> Vec<(String, String)> {
    markdown
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | label | route | what | examples |  -> ["", label, route, what, examples, ""]
            if cells.len() < 4 || cells[1].is_empty() || cells[1] == "label" || cells[1].starts_with('-') {
                return None;
            }
            Some((cells[1].to_string(), cells[2].to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = include_str!("../contract/intents.md");

    #[test]
    fn label_set_and_routes_equal_the_contract() {
        let table = parse_contract_table(CONTRACT);
        let ours: Vec<(String, String)> = Intent::ALL
            .iter()
            .map(|i| (i.as_str().to_string(), i.route().as_str().to_string()))
            .collect();
        assert_eq!(table, ours, "labels or routes drifted from contract/intents.md");
    }

    #[test]
    fn vendored_contract_matches_the_shared_one_when_present() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/contracts/intents.md");
        match std::fs::read_to_string(&shared) {
            Ok(text) => assert_eq!(
                parse_contract_table(&text),
                parse_contract_table(CONTRACT),
                "protocol/contract/intents.md is out of date with {}",
                shared.display()
            ),
            Err(_) => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIP: {} not found; checked the vendored copy only",
                    shared.display()
                );
            }
        }
    }

    #[test]
    fn labels_round_trip_through_strings_and_serde() {
        for intent in Intent::ALL {
            assert_eq!(intent.as_str().parse::<Intent>().unwrap(), intent);
            assert_eq!(serde_json::to_string(&intent).unwrap(), format!("\"{intent}\""));
            assert_eq!(Intent::from_index(intent.index()), Some(intent));
        }
        assert!("fuel-level".parse::<Intent>().is_err());
        for s in Sentiment::ALL {
            assert_eq!(s.as_str().parse::<Sentiment>().unwrap(), s);
        }
    }
}
