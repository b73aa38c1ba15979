//! The event bus: every lifecycle change is published here and streamed by `/events`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// One event, in Docker's `/events` shape.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// Legacy fields (API < 1.22 readers still look at them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// Events kept for `since` readers.
const HISTORY: usize = 1024;

/// Publishes events to every current subscriber, and keeps the last ones for readers that
/// ask for past events (`since`).
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Arc<Mutex<VecDeque<Event>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            history: Arc::default(),
        }
    }
}

impl EventBus {
    pub fn publish(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        // moby fills the legacy fields for container and image events; `from` is a
        // container's image.
        let legacy = matches!(kind, "container" | "image");
        let from = if kind == "container" {
            attributes.get("image").cloned()
        } else {
            None
        };
        let event = Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes,
            },
            scope: "local".into(),
            time: now.timestamp(),
            time_nano: nanos,
            status: legacy.then(|| action.to_owned()),
            id: (legacy && !id.is_empty()).then(|| id.to_owned()),
            from,
        };
        // Kept and sent under one lock, so a `since` reader sees each event exactly once.
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(event.clone());
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The kept events from `since_nano` on, and a subscription to the ones after them.
    pub fn subscribe_since(&self, since_nano: i64) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let past = h
            .iter()
            .filter(|e| e.time_nano >= since_nano)
            .cloned()
            .collect();
        (past, self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_events_then_live_ones_each_once() {
        let bus = EventBus::default();
        bus.publish("container", "create", "a", BTreeMap::new());
        let cut = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        bus.publish("container", "start", "a", BTreeMap::new());
        let (past, mut rx) = bus.subscribe_since(cut);
        assert_eq!(
            past.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["start"]
        );
        bus.publish("container", "die", "a", BTreeMap::new());
        assert_eq!(rx.try_recv().unwrap().action, "die");
        assert!(rx.try_recv().is_err());
    }
}
