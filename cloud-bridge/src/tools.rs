//! The tools the model may call, and nothing else: a whitelist with a JSON schema
//! per tool, strict argument validation (unknown fields, wrong types and values
//! out of range are refused with a reason the model can act on), and their
//! execution against the appointment and profile stores for one car.
//!
//! Driver text never reaches a tool as an instruction: a tool acts only on the car
//! the escalation came from, and only within the dealer's real slots.

use std::sync::Mutex;

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::servicing::{self, PartOfDay, Workshop};
use crate::store::{Appointment, AppointmentStatus, AppointmentStore, Profile, StoreError};

/// The whitelist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolName {
    ListServiceSlots,
    BookServiceSlot,
    ConfirmAppointment,
    LookupRecallsWarranty,
}

impl ToolName {
    pub const ALL: [ToolName; 4] = [
        ToolName::ListServiceSlots,
        ToolName::BookServiceSlot,
        ToolName::ConfirmAppointment,
        ToolName::LookupRecallsWarranty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ToolName::ListServiceSlots => "list_service_slots",
            ToolName::BookServiceSlot => "book_service_slot",
            ToolName::ConfirmAppointment => "confirm_appointment",
            ToolName::LookupRecallsWarranty => "lookup_recalls_warranty",
        }
    }

    pub fn parse(name: &str) -> Option<ToolName> {
        ToolName::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            ToolName::ListServiceSlots => {
                "Free appointment slots at the owner's dealer on one day. Call before booking."
            }
            ToolName::BookServiceSlot => "Holds one slot returned by list_service_slots for a service.",
            ToolName::ConfirmAppointment => "Confirms a held appointment. The booking is final only after this.",
            ToolName::LookupRecallsWarranty => "Open recalls for this vehicle and its warranty status.",
        }
    }

    /// The JSON schema of the arguments, derived from the structs `validate`
    /// reads them into.
    pub fn schema(self) -> Value {
        match self {
            ToolName::ListServiceSlots => arguments_schema::<SlotsArgs>(),
            ToolName::BookServiceSlot => arguments_schema::<BookArgs>(),
            ToolName::ConfirmAppointment => arguments_schema::<ConfirmArgs>(),
            ToolName::LookupRecallsWarranty => arguments_schema::<NoArgs>(),
        }
    }
}

/// The JSON schema of `T` as a model's tool spec takes it: every definition
/// inline, without the meta-schema line or a title.
pub fn arguments_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft07()
        .with(|s| {
            s.meta_schema = None;
            s.inline_subschemas = true;
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
    }
    schema
}

/// The services a booking may name, as the model must spell them.
fn service_schema(_: &mut SchemaGenerator) -> Schema {
    let services: Vec<&str> = servicing::SERVICES.iter().map(|(name, _)| *name).collect();
    json_schema!({"type": "string", "enum": services})
}

/// A validated call.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCall {
    ListServiceSlots {
        date: jiff::civil::Date,
        part_of_day: PartOfDay,
        service: &'static str,
    },
    BookServiceSlot {
        slot: jiff::Timestamp,
        service: &'static str,
    },
    ConfirmAppointment {
        appointment_id: String,
    },
    LookupRecallsWarranty,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ToolError {
    #[error("`{0}` is not a tool you can call")]
    UnknownTool(String),
    #[error("invalid arguments for {tool}: {reason}")]
    InvalidArguments { tool: &'static str, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("the appointment service failed: {0}")]
    Store(String),
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) | StoreError::NotFound(m) => ToolError::Refused(m),
            other => ToolError::Store(other.to_string()),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SlotsArgs {
    /// YYYY-MM-DD, in the owner's time zone
    date: String,
    #[schemars(extend("enum" = ["morning", "afternoon", "evening", "any"]))]
    part_of_day: String,
    #[schemars(schema_with = "service_schema")]
    service: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BookArgs {
    /// a starts_at value from list_service_slots
    slot: String,
    #[schemars(schema_with = "service_schema")]
    service: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmArgs {
    appointment_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// Checks a call against the whitelist and its schema.
pub fn validate(name: &str, input: &Value) -> Result<ToolCall, ToolError> {
    let tool = ToolName::parse(name).ok_or_else(|| ToolError::UnknownTool(name.chars().take(64).collect()))?;
    let invalid = |reason: String| ToolError::InvalidArguments {
        tool: tool.as_str(),
        reason,
    };
    let service = |s: &str| {
        servicing::canonical_service(s).ok_or_else(|| {
            invalid(format!(
                "service `{}` is not one of: {}",
                s.chars().take(64).collect::<String>(),
                servicing::SERVICES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    match tool {
        ToolName::ListServiceSlots => {
            let a: SlotsArgs = serde_json::from_value(input.clone()).map_err(|e| invalid(e.to_string()))?;
            let date = a.date.parse::<jiff::civil::Date>().map_err(|_| {
                invalid(format!(
                    "date `{}` is not YYYY-MM-DD",
                    a.date.chars().take(32).collect::<String>()
                ))
            })?;
            let part_of_day = PartOfDay::parse(&a.part_of_day)
                .ok_or_else(|| invalid("part_of_day must be morning, afternoon, evening or any".into()))?;
            Ok(ToolCall::ListServiceSlots {
                date,
                part_of_day,
                service: service(&a.service)?,
            })
        }
        ToolName::BookServiceSlot => {
            let a: BookArgs = serde_json::from_value(input.clone()).map_err(|e| invalid(e.to_string()))?;
            let slot = a
                .slot
                .parse::<jiff::Timestamp>()
                .map_err(|_| invalid("slot must be a starts_at value returned by list_service_slots".into()))?;
            Ok(ToolCall::BookServiceSlot {
                slot,
                service: service(&a.service)?,
            })
        }
        ToolName::ConfirmAppointment => {
            let a: ConfirmArgs = serde_json::from_value(input.clone()).map_err(|e| invalid(e.to_string()))?;
            if a.appointment_id.is_empty() || a.appointment_id.len() > 64 {
                return Err(invalid("appointment_id is not one this service issued".into()));
            }
            Ok(ToolCall::ConfirmAppointment {
                appointment_id: a.appointment_id,
            })
        }
        ToolName::LookupRecallsWarranty => {
            let _: NoArgs = serde_json::from_value(input.clone()).map_err(|e| invalid(e.to_string()))?;
            Ok(ToolCall::LookupRecallsWarranty)
        }
    }
}

/// How far ahead a booking may be.
pub const BOOKING_HORIZON_DAYS: i32 = 90;

/// The tools bound to one car's escalation. Records what was booked and
/// confirmed, for the response's actions.
pub struct Toolbox<'a> {
    pub appointments: &'a dyn AppointmentStore,
    /// The car the tools act for (its thing name).
    pub thing: String,
    /// The owner's profile; `None` when none is on file (nothing is assumed).
    pub profile: Option<&'a Profile>,
    /// What the car itself reported, for a car without a profile.
    pub reported: Reported,
    pub workshop: Workshop,
    pub now: jiff::Timestamp,
    confirmed: Mutex<Vec<Appointment>>,
    calls: Mutex<Vec<(String, bool)>>,
}

/// The model and year a car reports in its escalation's vehicle snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reported {
    pub model: Option<String>,
    pub year: Option<u16>,
}

impl Reported {
    pub fn from_snapshot(vehicle: &Value) -> Reported {
        Reported {
            model: vehicle["model"].as_str().filter(|m| !m.is_empty()).map(str::to_string),
            year: vehicle["year"].as_u64().and_then(|y| u16::try_from(y).ok()),
        }
    }

    /// Model and year, when both are known.
    fn model_year(&self) -> Option<(String, u16)> {
        Some((self.model.clone()?, self.year?))
    }
}

impl<'a> Toolbox<'a> {
    pub fn new(
        appointments: &'a dyn AppointmentStore,
        thing: &str,
        (profile, reported): (Option<&'a Profile>, Reported),
        workshop: Workshop,
        now: jiff::Timestamp,
    ) -> Toolbox<'a> {
        Toolbox {
            appointments,
            thing: thing.to_string(),
            profile,
            reported,
            workshop,
            now,
            confirmed: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Appointments confirmed through this toolbox.
    pub fn confirmed(&self) -> Vec<Appointment> {
        self.confirmed.lock().expect("toolbox").clone()
    }

    /// Every call made, by name, and whether it succeeded.
    pub fn calls(&self) -> Vec<(String, bool)> {
        self.calls.lock().expect("toolbox").clone()
    }

    /// Validates and runs a call by name: the result the model sees.
    pub fn call(&self, name: &str, input: &Value) -> Result<Value, ToolError> {
        let result = validate(name, input).and_then(|call| self.run(&call));
        self.calls
            .lock()
            .expect("toolbox")
            .push((name.chars().take(64).collect(), result.is_ok()));
        result
    }

    pub fn run(&self, call: &ToolCall) -> Result<Value, ToolError> {
        let today = self.now.to_zoned_datetime(self.workshop.zone.clone()).date();
        match call {
            ToolCall::ListServiceSlots {
                date,
                part_of_day,
                service,
            } => {
                let ahead = today.until(*date).map(|s| s.get_days()).unwrap_or(-1);
                if *date < today || ahead > BOOKING_HORIZON_DAYS {
                    return Err(ToolError::Refused(format!(
                        "{date} is outside the bookable range (today {today} to {BOOKING_HORIZON_DAYS} days ahead)"
                    )));
                }
                let from = date
                    .to_zoned_datetime(self.workshop.zone.clone())
                    .map_err(|e| ToolError::Store(e.to_string()))?;
                let to = from.tomorrow().map_err(|e| ToolError::Store(e.to_string()))?;
                let taken = self
                    .appointments
                    .taken(&self.workshop.dealer, from.timestamp(), to.timestamp())?;
                let slots = self.workshop.free_slots(*date, *part_of_day, None, self.now, &taken, 6);
                Ok(json!({
                    "dealer": self.workshop.dealer,
                    "date": date.to_string(),
                    "weekday": date.strftime("%A").to_string(),
                    "service": service,
                    "slots": slots.iter().map(|s| json!({
                        "starts_at": s.to_string(),
                        "local_time": servicing::spoken_time(*s, &self.workshop.zone),
                    })).collect::<Vec<_>>(),
                }))
            }
            ToolCall::BookServiceSlot { slot, service } => {
                if !self.workshop.is_slot(*slot) || *slot <= self.now {
                    return Err(ToolError::Refused(format!(
                        "{slot} is not a free slot: book only a starts_at that list_service_slots returned"
                    )));
                }
                let appointment = Appointment {
                    appointment_id: format!("apt-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
                    thing: self.thing.clone(),
                    dealer: self.workshop.dealer.clone(),
                    service: service.to_string(),
                    starts_at: *slot,
                    status: AppointmentStatus::Held,
                };
                self.appointments.hold(&appointment)?;
                Ok(json!({
                    "appointment_id": appointment.appointment_id,
                    "status": "held",
                    "dealer": appointment.dealer,
                    "service": appointment.service,
                    "starts_at": appointment.starts_at.to_string(),
                    "local_time": servicing::spoken_time(appointment.starts_at, &self.workshop.zone),
                    "next": "call confirm_appointment to make it final",
                }))
            }
            ToolCall::ConfirmAppointment { appointment_id } => {
                let appointment = self.appointments.confirm(appointment_id, &self.thing)?;
                let local_time = servicing::spoken_time(appointment.starts_at, &self.workshop.zone);
                let mut confirmed = self.confirmed.lock().expect("toolbox");
                if !confirmed.iter().any(|a| a.appointment_id == appointment.appointment_id) {
                    confirmed.push(appointment.clone());
                }
                Ok(json!({
                    "appointment_id": appointment.appointment_id,
                    "status": "confirmed",
                    "dealer": appointment.dealer,
                    "service": appointment.service,
                    "starts_at": appointment.starts_at.to_string(),
                    "local_time": local_time,
                }))
            }
            ToolCall::LookupRecallsWarranty => self.recalls_and_warranty(today),
        }
    }

    /// Open recalls for the car's model and year (from its profile, else as the
    /// car reports them) and its warranty (from its profile only). What is not
    /// known is said to be unknown.
    fn recalls_and_warranty(&self, today: jiff::civil::Date) -> Result<Value, ToolError> {
        let (vehicle, model_year) = match self.profile {
            Some(p) => (
                format!("{} {}", p.model_year, p.model),
                Some((p.model.clone(), p.model_year)),
            ),
            None => match self.reported.model_year() {
                Some((model, year)) => (format!("{year} {model} (as the car reports it)"), Some((model, year))),
                None => ("unknown".to_string(), None),
            },
        };
        let open_recalls = match &model_year {
            Some((model, year)) => json!(self
                .appointments
                .recalls(model, *year)?
                .iter()
                .map(|r| json!({"campaign": r.campaign, "summary": r.summary, "remedy": r.remedy}))
                .collect::<Vec<_>>()),
            None => json!("unknown: the car's model and year are not known"),
        };
        let warranty = match self.profile {
            Some(p) => json!({
                "known": true,
                "in_warranty": today <= p.warranty_until && p.mileage_km <= p.warranty_km,
                "until": p.warranty_until.to_string(),
                "km_limit": p.warranty_km,
                "mileage_km": p.mileage_km,
            }),
            None => json!({"known": false, "why": "no owner profile is on file for this car; an agent can look it up"}),
        };
        Ok(json!({"vehicle": vehicle, "open_recalls": open_recalls, "warranty": warranty}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_car_without_a_profile_has_an_unknown_warranty_and_recalls_only_for_what_it_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        store
            .put_recall(&crate::store::Recall {
                campaign: "26V-001".into(),
                model: "Voyager".into(),
                years: (2024, 2025),
                summary: "s".into(),
                remedy: "r".into(),
            })
            .unwrap();
        let workshop = Workshop {
            dealer: "d".into(),
            zone: jiff::tz::TimeZone::UTC,
        };
        let lookup = |reported: Reported| {
            Toolbox::new(
                &store,
                "car",
                (None, reported),
                workshop.clone(),
                jiff::Timestamp::now(),
            )
            .run(&ToolCall::LookupRecallsWarranty)
            .unwrap()
        };
        let reported = lookup(Reported::from_snapshot(&json!({"model": "Voyager", "year": 2025})));
        assert_eq!(reported["open_recalls"].as_array().unwrap().len(), 1, "{reported}");
        assert_eq!(reported["warranty"]["known"], false, "{reported}");
        assert!(
            reported["warranty"].get("until").is_none(),
            "no invented date: {reported}"
        );
        let unknown = lookup(Reported::from_snapshot(&json!({"vin": "x"})));
        assert_eq!(unknown["vehicle"], "unknown", "{unknown}");
        assert!(
            unknown["open_recalls"].as_str().unwrap().starts_with("unknown"),
            "{unknown}"
        );
    }

    #[test]
    fn each_schema_names_what_validate_reads_and_nothing_else() {
        let services: Vec<Value> = servicing::SERVICES.iter().map(|(n, _)| json!(n)).collect();
        let slots = ToolName::ListServiceSlots.schema();
        assert_eq!(slots["type"], "object", "{slots}");
        assert_eq!(slots["additionalProperties"], false, "{slots}");
        assert_eq!(slots["required"], json!(["date", "part_of_day", "service"]), "{slots}");
        assert_eq!(slots["properties"]["service"]["enum"], json!(services), "{slots}");
        assert_eq!(
            slots["properties"]["part_of_day"]["enum"],
            json!(["morning", "afternoon", "evening", "any"])
        );
        assert!(slots["properties"]["date"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("YYYY-MM-DD")));
        assert!(
            slots.get("$schema").is_none() && slots.get("title").is_none(),
            "{slots}"
        );
        assert_eq!(
            ToolName::BookServiceSlot.schema()["required"],
            json!(["slot", "service"])
        );
        assert_eq!(
            ToolName::ConfirmAppointment.schema()["required"],
            json!(["appointment_id"])
        );
        let none = ToolName::LookupRecallsWarranty.schema();
        assert_eq!(none["additionalProperties"], false, "{none}");
        assert!(none.get("required").is_none_or(|r| r == &json!([])), "{none}");
        // Every value a schema's enum offers passes validation.
        for part in ["morning", "afternoon", "evening", "any"] {
            for service in &services {
                let args = json!({"date": "2026-11-27", "part_of_day": part, "service": service});
                assert!(validate("list_service_slots", &args).is_ok(), "{args}");
            }
        }
    }

    #[test]
    fn only_whitelisted_tools_with_valid_arguments_pass() {
        assert_eq!(
            validate("delete_all_bookings", &json!({})),
            Err(ToolError::UnknownTool("delete_all_bookings".into()))
        );
        let ok = validate(
            "list_service_slots",
            &json!({"date": "2026-11-27", "part_of_day": "morning", "service": "brakes"}),
        )
        .unwrap();
        assert_eq!(
            ok,
            ToolCall::ListServiceSlots {
                date: jiff::civil::Date::constant(2026, 11, 27),
                part_of_day: PartOfDay::Morning,
                service: "brake inspection"
            }
        );
        for (name, args) in [
            (
                "list_service_slots",
                json!({"date": "friday", "part_of_day": "morning", "service": "brakes"}),
            ),
            (
                "list_service_slots",
                json!({"date": "2026-11-27", "part_of_day": "night", "service": "brakes"}),
            ),
            (
                "list_service_slots",
                json!({"date": "2026-11-27", "part_of_day": "any", "service": "free car"}),
            ),
            (
                "list_service_slots",
                json!({"date": "2026-11-27", "part_of_day": "any", "service": "brakes", "dealer": "x"}),
            ),
            ("book_service_slot", json!({"slot": 12, "service": "brakes"})),
            ("confirm_appointment", json!({})),
            ("lookup_recalls_warranty", json!({"vin": "x"})),
        ] {
            assert!(
                matches!(validate(name, &args), Err(ToolError::InvalidArguments { .. })),
                "{name} {args}"
            );
        }
    }
}
