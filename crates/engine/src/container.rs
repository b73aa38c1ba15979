//! A container's persisted record and its lifecycle state machine.
//!
//! Every state change goes through [`State`]'s transition methods, so an illegal transition is
//! one clear `Conflict` in one place.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, HostConfig};
use crate::error::{EngineError, Result};

/// Docker's container statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }
}

/// The runtime state of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Set by `stop`/`kill` through the API: restart policies leave the container alone.
    pub manually_stopped: bool,
    /// Healthcheck results, for containers that have one.
    #[serde(default)]
    pub health: Option<crate::health::Health>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            oom_killed: false,
            started_at: None,
            finished_at: None,
            manually_stopped: false,
            health: None,
        }
    }
}

/// Docker's zero time, as inspect shows for a time never set.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        .unwrap_or_else(|| ZERO_TIME.to_owned())
}

impl State {
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Paused)
    }

    /// created/exited -> running.
    pub fn set_running(&mut self, pid: i64) {
        self.status = Status::Running;
        self.pid = pid;
        self.exit_code = 0;
        self.error.clear();
        self.oom_killed = false;
        self.started_at = Some(Utc::now());
        self.manually_stopped = false;
        self.health = None;
    }

    /// running/paused -> exited. A stopped container is not healthy: its health status
    /// becomes `unhealthy`, as moby's `SetStopped` makes it.
    pub fn set_exited(&mut self, code: i64, oom_killed: bool, at: Option<DateTime<Utc>>) {
        self.status = Status::Exited;
        self.pid = 0;
        self.exit_code = code;
        self.oom_killed = oom_killed;
        self.finished_at = Some(at.unwrap_or_else(Utc::now));
        if let Some(h) = self.health.as_mut() {
            h.status = crate::health::UNHEALTHY.into();
        }
    }

    /// A start that failed: the container stays as it was with the error and code recorded.
    pub fn set_start_failed(&mut self, code: i64, error: String) {
        if self.status == Status::Restarting {
            self.status = Status::Exited;
        }
        self.pid = 0;
        self.exit_code = code;
        self.error = error;
        // Nothing ran, so nothing finished: dockerd leaves FinishedAt as it was.
    }

    pub fn set_paused(&mut self, paused: bool) -> Result<()> {
        match (self.status, paused) {
            (Status::Running, true) => self.status = Status::Paused,
            (Status::Paused, false) => self.status = Status::Running,
            (Status::Paused, true) => {
                return Err(EngineError::Conflict("container is already paused".into()));
            }
            (_, false) => return Err(EngineError::Conflict("container is not paused".into())),
            (_, true) => return Err(EngineError::Conflict("container is not running".into())),
        }
        Ok(())
    }

    /// Docker's human status for `ps`: "Up 3 minutes", "Exited (0) 2 seconds ago", ...
    pub fn human(&self) -> String {
        let now = Utc::now();
        match self.status {
            Status::Created => "Created".into(),
            Status::Running => {
                let health = match self.health.as_ref().map(|h| h.status.as_str()) {
                    Some(crate::health::STARTING) => " (health: starting)",
                    Some(crate::health::HEALTHY) => " (healthy)",
                    Some(crate::health::UNHEALTHY) => " (unhealthy)",
                    _ => "",
                };
                format!(
                    "Up {}{health}",
                    human_duration(now - self.started_at.unwrap_or(now))
                )
            }
            Status::Paused => {
                format!(
                    "Up {} (Paused)",
                    human_duration(now - self.started_at.unwrap_or(now))
                )
            }
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                self.exit_code,
                human_duration(now - self.finished_at.unwrap_or(now))
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Exited => match self.finished_at {
                Some(t) => format!(
                    "Exited ({}) {} ago",
                    self.exit_code,
                    human_duration(now - t)
                ),
                None => format!("Exited ({})", self.exit_code),
            },
            Status::Dead => "Dead".into(),
        }
    }
}

/// Docker's go-units `HumanDuration`.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if (s as f64 / 3600.0).round() as i64 == 1 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", (s as f64 / 3600.0).round() as i64),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86400),
        s if s < 30 * 24 * 3600 * 3 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

/// Everything the engine persists about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    pub created: DateTime<Utc>,
    /// The merged config (image defaults applied).
    pub config: Config,
    pub host_config: HostConfig,
    /// The image id (`sha256:...`).
    pub image_id: String,
    /// argv[0] and the rest, as inspect's Path/Args.
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub restart_count: i64,
    /// Whether the container was ever started (restart policies only apply after that).
    pub has_been_started: bool,
    /// Volumes, binds and tmpfs mounts, as planned at create (volumes named).
    #[serde(default)]
    pub mounts: Vec<crate::volumes::mounts::MountPoint>,
    /// Networks by name, with the endpoint each has while the container runs.
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, crate::networks::EndpointState>,
    /// Host ports published while the container runs.
    #[serde(default)]
    pub published: Vec<crate::networks::PublishedPort>,
}

/// A port as `ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPort {
    /// The host address and port, when published.
    pub public: Option<(std::net::IpAddr, u16)>,
    pub private_port: u16,
    pub protocol: berth_network::nft::Protocol,
}

impl ContainerRecord {
    /// The ports `ps` lists and its `publish`/`expose` filters match: while the container runs,
    /// the published ones, then the exposed ones not published; none otherwise (dockerd
    /// clears them when the container stops).
    pub fn listed_ports(&self) -> Vec<ListedPort> {
        if !self.state.is_running() {
            return Vec::new();
        }
        let mut out: Vec<ListedPort> = self
            .published
            .iter()
            .map(|p| ListedPort {
                public: Some((p.host_ip, p.host_port)),
                private_port: p.container_port,
                protocol: p.protocol,
            })
            .collect();
        let exposed = self.config.exposed_ports.iter().flat_map(|m| m.keys());
        for (protocol, ports) in exposed.filter_map(|k| crate::networks::parse_port_key(k).ok()) {
            for port in ports {
                if !self
                    .published
                    .iter()
                    .any(|p| p.container_port == port && p.protocol == protocol)
                {
                    out.push(ListedPort {
                        public: None,
                        private_port: port,
                        protocol,
                    });
                }
            }
        }
        out
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_transitions_are_checked() {
        let mut s = State::default();
        assert!(s.set_paused(true).is_err());
        s.set_running(42);
        s.set_paused(true).unwrap();
        assert_eq!(s.status, Status::Paused);
        assert!(s.set_paused(true).is_err());
        s.set_paused(false).unwrap();
        s.set_exited(3, false, None);
        assert_eq!((s.status, s.exit_code, s.pid), (Status::Exited, 3, 0));
        assert!(s.human().starts_with("Exited (3) "));
    }

    #[test]
    fn human_durations_match_go_units() {
        let d = chrono::TimeDelta::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(5)), "5 seconds");
        assert_eq!(human_duration(d(65)), "About a minute");
        assert_eq!(human_duration(d(600)), "10 minutes");
        assert_eq!(human_duration(d(3700)), "About an hour");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
    }
}
