//! An MQTT link driven by the test: every publish is recorded and answered
//! with the next packet id; the test decides which acknowledgements arrive, in
//! which order, and when the connection fails.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Connector, LinkEvent, MqttLink, UplinkError};

/// A publish the fake received: connection number (from 1), packet id,
/// topic, payload.
pub type Published = (usize, u16, String, Vec<u8>);
type EventSender = mpsc::UnboundedSender<Result<LinkEvent, UplinkError>>;

/// What the test sees and steers.
#[derive(Clone)]
pub struct FakeBroker {
    /// Every publish, in order.
    pub published: Arc<Mutex<Vec<Published>>>,
    events: Arc<Mutex<Option<EventSender>>>,
}

impl FakeBroker {
    /// Acknowledges a packet id on the current connection.
    pub fn ack(&self, pkid: u16) {
        self.send(Ok(LinkEvent::Acked { pkid }));
    }

    /// A message from the broker on `topic` (the cloud's acknowledgement, say).
    pub fn deliver(&self, topic: &str, payload: Vec<u8>) {
        self.send(Ok(LinkEvent::Received {
            topic: topic.to_string(),
            payload,
        }));
    }

    /// Drops the current connection.
    pub fn fail(&self) {
        self.send(Err(UplinkError::Connection("the test cut the connection".into())));
    }

    fn send(&self, event: Result<LinkEvent, UplinkError>) {
        if let Some(tx) = self.events.lock().expect("fake").as_ref() {
            let _ = tx.send(event);
        }
    }
}

pub struct FakeConnector {
    broker: FakeBroker,
    connections: usize,
}

impl FakeConnector {
    pub fn new() -> (FakeConnector, FakeBroker) {
        let broker = FakeBroker {
            published: Arc::default(),
            events: Arc::default(),
        };
        (
            FakeConnector {
                broker: broker.clone(),
                connections: 0,
            },
            broker,
        )
    }
}

pub struct FakeLink {
    connection: usize,
    next_pkid: u16,
    events: mpsc::UnboundedReceiver<Result<LinkEvent, UplinkError>>,
    loopback: EventSender,
    broker: FakeBroker,
}

impl Connector for FakeConnector {
    type Link = FakeLink;

    fn connect(&mut self) -> FakeLink {
        self.connections += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Ok(LinkEvent::Connected { session_present: false }));
        *self.broker.events.lock().expect("fake") = Some(tx.clone());
        FakeLink {
            connection: self.connections,
            next_pkid: 1,
            events: rx,
            loopback: tx,
            broker: self.broker.clone(),
        }
    }
}

impl MqttLink for FakeLink {
    fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), UplinkError> {
        let pkid = self.next_pkid;
        self.next_pkid += 1;
        self.broker
            .published
            .lock()
            .expect("fake")
            .push((self.connection, pkid, topic.to_string(), payload));
        let _ = self.loopback.send(Ok(LinkEvent::Sent { pkid }));
        Ok(())
    }

    fn subscribe(&mut self, _topic: &str) -> Result<(), UplinkError> {
        Ok(())
    }

    async fn next(&mut self) -> Result<LinkEvent, UplinkError> {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }
}
