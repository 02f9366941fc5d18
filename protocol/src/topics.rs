//! The topic tree and who may use which topic, defined once.
//!
//! ```text
//! {prefix}/cars/{thing}/escalations      car -> cloud   (cloud-bridge: $share/{group}/{prefix}/cars/+/escalations)
//! {prefix}/cars/{thing}/responses        cloud -> car
//! {prefix}/cars/{thing}/analytics        car -> cloud
//! {prefix}/cars/{thing}/status           car -> cloud
//! {prefix}/fleet/{channel}/knowledge     fleet ops -> cars, retained, read-only for cars
//! $aws/things/{thing}/shadow/name/knowledge/...   the knowledge shadow (IoT Core)
//! ```
//!
//! Each car's own topics carry its thing name as a level, so one IoT Core policy
//! serves every car through `${iot:Connection.Thing.ThingName}`, and one mosquitto
//! ACL through `%u` (the certificate's CN, with `use_identity_as_username`). Cars
//! subscribe to fleet topics by exact name: IoT Core sends no retained message to
//! a wildcard subscription.

use serde_json::json;

use crate::envelope::ProtocolError;

/// IoT Core: at most 7 slashes (8 levels) and 256 bytes per topic.
pub const MAX_TOPIC_SLASHES: usize = 7;
pub const MAX_TOPIC_BYTES: usize = 256;
/// The knowledge shadow's name.
pub const KNOWLEDGE_SHADOW: &str = "knowledge";

/// Topic names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: "kestrel/v1".to_string(),
        }
    }
}

/// A topic level we build from a name (thing, channel, group): no separators, no
/// wildcards, nothing IoT Core reserves.
pub fn check_level(level: &str) -> Result<(), ProtocolError> {
    let ok = !level.is_empty()
        && level.len() <= 128
        && level
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        && !level.starts_with('$');
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadTopicLevel(level.to_string()))
    }
}

fn check_topic(topic: String) -> Result<String, ProtocolError> {
    if topic.matches('/').count() > MAX_TOPIC_SLASHES {
        return Err(ProtocolError::TopicRule {
            topic,
            rule: "at most 7 slashes",
        });
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(ProtocolError::TopicRule {
            topic,
            rule: "at most 256 bytes",
        });
    }
    Ok(topic)
}

impl Topics {
    /// `prefix` is one or more levels (`kestrel/v1`); the longest topic built on
    /// it must still keep IoT Core's rules, which is checked here.
    pub fn new(prefix: &str) -> Result<Topics, ProtocolError> {
        let prefix = prefix.trim_matches('/');
        for level in prefix.split('/') {
            check_level(level)?;
        }
        let topics = Topics {
            prefix: prefix.to_string(),
        };
        // The deepest topics: a car's own, and a fleet channel's.
        topics.escalations("x")?;
        topics.fleet_knowledge("x")?;
        Ok(topics)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn car(&self, thing: &str, leaf: &str) -> Result<String, ProtocolError> {
        check_level(thing)?;
        check_topic(format!("{}/cars/{thing}/{leaf}", self.prefix))
    }

    pub fn escalations(&self, thing: &str) -> Result<String, ProtocolError> {
        self.car(thing, "escalations")
    }

    pub fn responses(&self, thing: &str) -> Result<String, ProtocolError> {
        self.car(thing, "responses")
    }

    pub fn analytics(&self, thing: &str) -> Result<String, ProtocolError> {
        self.car(thing, "analytics")
    }

    pub fn status(&self, thing: &str) -> Result<String, ProtocolError> {
        self.car(thing, "status")
    }

    /// The retained manifest of a fleet channel; cars subscribe to it by this exact name.
    pub fn fleet_knowledge(&self, channel: &str) -> Result<String, ProtocolError> {
        check_level(channel)?;
        check_topic(format!("{}/fleet/{channel}/knowledge", self.prefix))
    }

    /// Every car's escalations, shared among cloud-bridge instances of `group`.
    pub fn shared_escalations(&self, group: &str) -> Result<String, ProtocolError> {
        self.shared_car_topic(group, "escalations")
    }

    /// Every car's `leaf` topic (`escalations`, `analytics`, `status`), shared
    /// among the cloud-bridge instances of `group`: each message goes to one.
    pub fn shared_car_topic(&self, group: &str, leaf: &str) -> Result<String, ProtocolError> {
        check_level(group)?;
        check_level(leaf)?;
        Ok(format!("$share/{group}/{}/cars/+/{leaf}", self.prefix))
    }

    /// `$aws/things/{thing}/shadow/name/knowledge/{op}`, e.g. `update`, `get/accepted`.
    pub fn knowledge_shadow(&self, thing: &str, op: &str) -> Result<String, ProtocolError> {
        check_level(thing)?;
        Ok(format!("$aws/things/{thing}/shadow/name/{KNOWLEDGE_SHADOW}/{op}"))
    }

    /// Which car a topic of the car tree belongs to, and its leaf.
    pub fn parse_car_topic<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix("/cars/")?;
        let (thing, leaf) = rest.split_once('/')?;
        (!leaf.contains('/') && check_level(thing).is_ok()).then_some((thing, leaf))
    }
}

/// Who may use which topic: rendered for mosquitto and for AWS IoT Core from the
/// same definitions.
#[derive(Debug, Clone)]
pub struct Acl {
    pub topics: Topics,
    /// Fleet channels the cars may read.
    pub channels: Vec<String>,
    /// The broker user (certificate CN) of cloud-bridge.
    pub cloud_user: String,
}

/// What a car may do with its own topics (`{thing}` stands for its name).
const CAR_PUBLISHES: [&str; 3] = ["escalations", "analytics", "status"];
const CAR_SUBSCRIBES: [&str; 1] = ["responses"];

impl Acl {
    /// A mosquitto `acl_file`. It needs `require_certificate true` and
    /// `use_identity_as_username true`, so that `%u` is the certificate's CN (the
    /// thing name) and cannot be claimed by another client.
    pub fn mosquitto(&self) -> String {
        let p = self.topics.prefix();
        let mut out = String::from(
            "# Generated from protocol::Acl (protocol/src/topics.rs); do not edit by hand.\n\
             # Needs require_certificate true and use_identity_as_username true: %u is the\n\
             # client certificate's CN, which is the car's thing name.\n\n\
             # Every car: its own topics only.\n",
        );
        for leaf in CAR_PUBLISHES {
            out.push_str(&format!("pattern write {p}/cars/%u/{leaf}\n"));
        }
        for leaf in CAR_SUBSCRIBES {
            out.push_str(&format!("pattern read {p}/cars/%u/{leaf}\n"));
        }
        out.push_str(&format!(
            "pattern readwrite $aws/things/%u/shadow/name/{KNOWLEDGE_SHADOW}/#\n"
        ));
        out.push_str("\n# Fleet channels: read-only for cars.\n");
        for channel in &self.channels {
            out.push_str(&format!("pattern read {p}/fleet/{channel}/knowledge\n"));
        }
        out.push_str(&format!(
            "\n# cloud-bridge: every car's uplink, every car's responses, the fleet channels.\nuser {}\n",
            self.cloud_user
        ));
        for leaf in CAR_PUBLISHES {
            out.push_str(&format!("topic read {p}/cars/+/{leaf}\n"));
        }
        for leaf in CAR_SUBSCRIBES {
            out.push_str(&format!("topic write {p}/cars/+/{leaf}\n"));
        }
        out.push_str(&format!("topic readwrite {p}/fleet/#\n"));
        out.push_str("topic readwrite $aws/things/+/shadow/#\n");
        out
    }

    /// The AWS IoT Core policy attached to every car's certificate, for one region
    /// and account (the committed `protocol/acl/iot-car-policy.json` has the
    /// placeholders `REGION` and `ACCOUNT_ID`).
    pub fn iot_car_policy(&self, region: &str, account: &str) -> serde_json::Value {
        let p = self.topics.prefix();
        let arn = format!("arn:aws:iot:{region}:{account}");
        let arn = arn.as_str();
        let me = "${iot:Connection.Thing.ThingName}";
        let own = |kind: &str, leaf: &str| format!("{arn}:{kind}/{p}/cars/{me}/{leaf}");
        let shadow = |kind: &str| format!("{arn}:{kind}/$aws/things/{me}/shadow/name/{KNOWLEDGE_SHADOW}/*");
        let fleet = |kind: &str| -> Vec<String> {
            self.channels
                .iter()
                .map(|c| format!("{arn}:{kind}/{p}/fleet/{c}/knowledge"))
                .collect()
        };
        let mut publish: Vec<String> = CAR_PUBLISHES.iter().map(|l| own("topic", l)).collect();
        publish.push(format!(
            "{arn}:topic/$aws/things/{me}/shadow/name/{KNOWLEDGE_SHADOW}/update"
        ));
        publish.push(format!(
            "{arn}:topic/$aws/things/{me}/shadow/name/{KNOWLEDGE_SHADOW}/get"
        ));
        let mut subscribe: Vec<String> = CAR_SUBSCRIBES.iter().map(|l| own("topicfilter", l)).collect();
        subscribe.extend(fleet("topicfilter"));
        subscribe.push(shadow("topicfilter"));
        let mut receive: Vec<String> = CAR_SUBSCRIBES.iter().map(|l| own("topic", l)).collect();
        receive.extend(fleet("topic"));
        receive.push(shadow("topic"));
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": format!("{arn}:client/{me}"),
                    "Condition": { "Bool": { "iot:Connection.Thing.IsAttached": "true" } }
                },
                { "Effect": "Allow", "Action": "iot:Publish", "Resource": publish },
                { "Effect": "Allow", "Action": "iot:Subscribe", "Resource": subscribe },
                { "Effect": "Allow", "Action": "iot:Receive", "Resource": receive }
            ]
        })
    }
}
