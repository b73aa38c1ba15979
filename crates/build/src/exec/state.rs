//! A stage's state between steps: its layers and image config, and how each config-only
//! instruction changes the config (Docker's dispatchers for `ENV`, `CMD`, `LABEL`...).

use berth_image::store::LayerRef;
use serde_json::{Map, Value, json};

use crate::ast::{CommandLine, Healthcheck, Instruction, KeyValue, parse_expose, resolve_workdir};
use crate::error::ErrorKind;
use crate::expand::Platform;

/// The `PATH` a build gives an image that sets none (BuildKit's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Layers and OCI image config of a stage after some step.
#[derive(Debug, Clone)]
pub struct State {
    /// Layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The whole image config (`architecture`, `config`, `rootfs`, `history`...).
    pub config: Value,
}

impl State {
    /// The state of `FROM scratch`.
    pub fn scratch(platform: &Platform) -> State {
        let mut config = json!({
            "architecture": platform.arch,
            "os": platform.os,
            "config": { "Env": [format!("PATH={DEFAULT_PATH}")] },
            "rootfs": { "type": "layers", "diff_ids": [] },
            "history": [],
        });
        if !platform.variant.is_empty() {
            config["variant"] = platform.variant.clone().into();
        }
        State {
            layers: Vec::new(),
            config,
        }
    }

    /// The diff ids of the layers, bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// The container config (`config` of the image config), created when missing.
    pub fn container(&mut self) -> &mut Map<String, Value> {
        let root = self.root();
        let c = root.entry("config").or_insert_with(|| json!({}));
        if !c.is_object() {
            *c = json!({});
        }
        c.as_object_mut().expect("made an object above")
    }

    fn root(&mut self) -> &mut Map<String, Value> {
        if !self.config.is_object() {
            self.config = json!({});
        }
        self.config.as_object_mut().expect("made an object above")
    }

    /// A string field of the container config ("" when unset).
    pub fn get_str(&self, key: &str) -> String {
        self.config["config"][key]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A string-array field of the container config (`None` when unset or null).
    pub fn get_list(&self, key: &str) -> Option<Vec<String>> {
        self.config["config"][key].as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
    }

    /// The image config's `Env` as `KEY=value` strings.
    pub fn env(&self) -> Vec<String> {
        self.get_list("Env").unwrap_or_default()
    }

    /// The shell `RUN` and shell-form `CMD`/`ENTRYPOINT` use.
    pub fn shell(&self) -> Vec<String> {
        self.get_list("Shell")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// The working directory ("/" when unset).
    pub fn workdir(&self) -> String {
        let w = self.get_str("WorkingDir");
        if w.is_empty() { "/".into() } else { w }
    }

    /// Appends a layer and its diff id to `rootfs`.
    pub fn push_layer(&mut self, layer: LayerRef) {
        self.layers.push(layer);
        let ids = self.diff_ids();
        self.root().insert(
            "rootfs".into(),
            json!({ "type": "layers", "diff_ids": ids }),
        );
    }

    /// Records a step in `history` and as the config's creation time.
    pub fn record(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut entry = json!({
            "created": created,
            "created_by": created_by,
            "comment": "buildkit.dockerfile.v0",
        });
        if empty_layer {
            entry["empty_layer"] = true.into();
        }
        let root = self.root();
        root.insert("created".into(), created.into());
        match root.get_mut("history").and_then(Value::as_array_mut) {
            Some(h) => h.push(entry),
            None => {
                root.insert("history".into(), Value::Array(vec![entry]));
            }
        }
    }

    /// Inherited `ONBUILD` triggers, removed from the config (they run once, in the child).
    pub fn take_onbuild(&mut self) -> Vec<String> {
        let triggers = self.get_list("OnBuild").unwrap_or_default();
        self.container().remove("OnBuild");
        triggers
    }

    /// Applies a config-only instruction (already expanded). `cmd_set` tracks whether this
    /// stage set `CMD` (an `ENTRYPOINT` clears an inherited one, as Docker does).
    pub fn apply(
        &mut self,
        instruction: &Instruction,
        env: Vec<(String, String)>,
        cmd_set: &mut bool,
    ) -> Result<(), ErrorKind> {
        match instruction {
            Instruction::Env(_) => {
                let list: Vec<Value> = env
                    .into_iter()
                    .map(|(k, v)| Value::String(format!("{k}={v}")))
                    .collect();
                self.container().insert("Env".into(), list.into());
            }
            Instruction::Label(kvs) => self.set_map("Labels", kvs),
            Instruction::Cmd(line) => {
                let v = self.command_line(line);
                self.container().insert("Cmd".into(), v.into());
                *cmd_set = true;
            }
            Instruction::Entrypoint(line) => {
                let v = match line {
                    CommandLine::Shell(s) if s.trim().is_empty() => Value::Null,
                    _ => self.command_line(line).into(),
                };
                let c = self.container();
                c.insert("Entrypoint".into(), v);
                if !*cmd_set {
                    c.insert("Cmd".into(), Value::Null);
                }
            }
            Instruction::Shell(shell) => {
                self.container().insert("Shell".into(), json!(shell));
            }
            Instruction::Expose(ports) => {
                let parsed = parse_expose(ports)?;
                let c = self.container();
                let map = object_field(c, "ExposedPorts");
                for p in parsed {
                    for k in p.keys() {
                        map.insert(k, json!({}));
                    }
                }
            }
            Instruction::Volume(paths) => {
                let c = self.container();
                let map = object_field(c, "Volumes");
                for p in paths {
                    if p.trim().is_empty() {
                        return Err(ErrorKind::Syntax(
                            "VOLUME specified can not be an empty string".into(),
                        ));
                    }
                    map.insert(p.clone(), json!({}));
                }
            }
            Instruction::User(u) => {
                self.container().insert("User".into(), u.clone().into());
            }
            Instruction::Workdir(w) => {
                let dir = resolve_workdir(&self.workdir(), w);
                self.container().insert("WorkingDir".into(), dir.into());
            }
            Instruction::Onbuild(o) => {
                let c = self.container();
                let list = c.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                if let Some(a) = list.as_array_mut() {
                    a.push(o.expression.clone().into());
                }
            }
            Instruction::Stopsignal(s) => {
                crate::ast::parse_signal(s)?;
                self.container()
                    .insert("StopSignal".into(), s.clone().into());
            }
            Instruction::Healthcheck(h) => {
                let v = match h {
                    Healthcheck::Disable => json!({ "Test": ["NONE"] }),
                    Healthcheck::Check(c) => {
                        let mut v = json!({ "Test": c.test });
                        let ns = |d: std::time::Duration| d.as_nanos() as u64;
                        for (k, d) in [
                            ("Interval", c.interval),
                            ("Timeout", c.timeout),
                            ("StartPeriod", c.start_period),
                            ("StartInterval", c.start_interval),
                        ] {
                            if !d.is_zero() {
                                v[k] = ns(d).into();
                            }
                        }
                        if c.retries > 0 {
                            v["Retries"] = c.retries.into();
                        }
                        v
                    }
                };
                self.container().insert("Healthcheck".into(), v);
            }
            Instruction::Maintainer(m) => {
                self.root().insert("author".into(), m.clone().into());
            }
            Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Arg(_) => {}
        }
        Ok(())
    }

    /// Adds `labels` to the config's `Labels`.
    pub fn add_labels<'a>(&mut self, labels: impl IntoIterator<Item = (&'a String, &'a String)>) {
        let c = self.container();
        let map = object_field(c, "Labels");
        for (k, v) in labels {
            map.insert(k.clone(), v.clone().into());
        }
    }

    fn set_map(&mut self, field: &str, kvs: &[KeyValue]) {
        let c = self.container();
        let map = object_field(c, field);
        for kv in kvs {
            map.insert(kv.key.clone(), kv.value.clone().into());
        }
    }

    /// Exec form as is; shell form through the stage's `SHELL`.
    pub fn command_line(&self, line: &CommandLine) -> Vec<String> {
        match line {
            CommandLine::Exec(v) => v.clone(),
            CommandLine::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        }
    }
}

/// `c[field]` as an object, replacing a null or other value.
fn object_field<'a>(c: &'a mut Map<String, Value>, field: &str) -> &'a mut Map<String, Value> {
    let v = c.entry(field).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("made an object above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Onbuild;

    #[test]
    fn entrypoint_clears_an_inherited_cmd_but_not_this_stages() {
        let mut s = State::scratch(&Platform::host());
        s.container().insert("Cmd".into(), json!(["sh"]));
        let mut cmd_set = false;
        s.apply(
            &Instruction::Entrypoint(CommandLine::Exec(vec!["/e".into()])),
            vec![],
            &mut cmd_set,
        )
        .unwrap();
        assert_eq!(s.config["config"]["Cmd"], Value::Null);
        s.apply(
            &Instruction::Cmd(CommandLine::Shell("x".into())),
            vec![],
            &mut cmd_set,
        )
        .unwrap();
        s.apply(
            &Instruction::Entrypoint(CommandLine::Exec(vec!["/f".into()])),
            vec![],
            &mut cmd_set,
        )
        .unwrap();
        assert_eq!(s.config["config"]["Cmd"], json!(["/bin/sh", "-c", "x"]));
        assert_eq!(s.config["config"]["Entrypoint"], json!(["/f"]));
    }

    #[test]
    fn config_instructions_set_docker_fields() {
        let mut s = State::scratch(&Platform::host());
        let mut c = false;
        s.apply(
            &Instruction::Expose(vec!["80".into(), "53/udp".into()]),
            vec![],
            &mut c,
        )
        .unwrap();
        s.apply(&Instruction::Workdir("/a".into()), vec![], &mut c)
            .unwrap();
        s.apply(&Instruction::Workdir("b".into()), vec![], &mut c)
            .unwrap();
        s.apply(
            &Instruction::Onbuild(Onbuild {
                trigger: "RUN".into(),
                expression: "RUN make".into(),
            }),
            vec![],
            &mut c,
        )
        .unwrap();
        let cfg = &s.config["config"];
        assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["WorkingDir"], "/a/b");
        assert_eq!(cfg["OnBuild"], json!(["RUN make"]));
        assert_eq!(s.take_onbuild(), vec!["RUN make".to_owned()]);
        assert!(s.config["config"].get("OnBuild").is_none());
    }
}
