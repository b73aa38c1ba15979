//! Registry credentials, kept where and how the Docker CLI keeps them, so `berth` and
//! `docker` share logins.
//!
//! The config file is `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`). Credentials
//! live either in its `auths` map (`{"<server>": {"auth": base64("user:pass"),
//! "identitytoken": ...}}`) or in a credential helper: `credHelpers` names one per registry
//! and `credsStore` one for all others. A helper is a `docker-credential-<name>` program that
//! speaks `get`/`store`/`erase` with JSON on its stdin and stdout.
//!
//! Docker Hub's key is [`INDEX_SERVER`]; other registries are keyed by `host[:port]`. Writes
//! of the file are atomic and keep every key this module does not know about.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Docker Hub's key in `config.json` and its `serveraddress` in login requests.
pub const INDEX_SERVER: &str = "https://index.docker.io/v1/";
/// The file inside the config directory.
const CONFIG_FILE: &str = "config.json";
/// Credential helpers are programs named `docker-credential-<name>`.
const HELPER_PREFIX: &str = "docker-credential-";
/// A helper's `Username` meaning "the secret is an identity token".
const TOKEN_USERNAME: &str = "<token>";
/// What helpers print when they hold nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";
/// Hosts that mean Docker Hub when given to `login`/`logout`.
const HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing the config file (or its directory) failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The config file is not JSON.
    #[error("loading config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The config file is JSON but a known key has the wrong shape.
    #[error("loading config file {path}: {what}")]
    Malformed { path: PathBuf, what: String },
    /// An `auth` entry does not decode to `user:password`.
    #[error("invalid auth configuration for {server}: {reason}")]
    InvalidAuth { server: String, reason: String },
    /// A credential helper could not be started.
    #[error("error getting credentials - err: exec: {program:?}: {source}")]
    HelperSpawn { program: String, source: io::Error },
    /// A credential helper failed.
    #[error("{program} {action}: {message}")]
    HelperFailed {
        program: String,
        action: &'static str,
        message: String,
    },
    /// A credential helper's answer is not the JSON it should be.
    #[error("{program} get: invalid answer: {source}")]
    HelperAnswer {
        program: String,
        source: serde_json::Error,
    },
}

/// Result of this module.
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

/// Credentials for one registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
    /// The registry (its `config.json` key).
    pub server_address: String,
    /// A token the registry handed out in place of the password.
    pub identity_token: String,
}

impl AuthConfig {
    /// True when there is nothing to authenticate with.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identity_token.is_empty()
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &str| if s.is_empty() { "" } else { "<hidden>" };
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("server_address", &self.server_address)
            .field("identity_token", &hidden(&self.identity_token))
            .finish()
    }
}

/// Where [`ConfigFile::store_auth`] put the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// In the file's `auths`, unencrypted.
    File,
    /// In the named credential helper.
    Helper(String),
}

/// The directory `--config` names, when given.
static CONFIG_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes `dir` the config directory of this process (`berth --config DIR`); the first call
/// wins.
pub fn set_config_dir(dir: PathBuf) {
    let _ = CONFIG_DIR.set(dir);
}

/// The config directory: `--config`, else `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> PathBuf {
    if let Some(d) = CONFIG_DIR.get() {
        return d.clone();
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match env("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env("HOME").unwrap_or_else(|| "/".into())).join(".docker"),
    }
}

/// The config file: `config.json` in [`config_dir`].
pub fn config_path() -> PathBuf {
    config_dir().join(CONFIG_FILE)
}

/// The `host[:port]` of a server address (`https://reg:5000/v2/` gives `reg:5000`).
pub fn hostname(server: &str) -> &str {
    let s = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("https://"))
        .unwrap_or(server);
    s.split('/').next().unwrap_or(s)
}

/// The `config.json` key for a server given to `login`/`logout`: [`INDEX_SERVER`] for
/// Docker Hub (and when none is given), else its `host[:port]`.
pub fn server_key(server: Option<&str>) -> String {
    match server.filter(|s| !s.is_empty()) {
        None => INDEX_SERVER.to_owned(),
        Some(s) if s == INDEX_SERVER => INDEX_SERVER.to_owned(),
        Some(s) => {
            let host = hostname(s);
            if HUB_HOSTS.contains(&host) {
                INDEX_SERVER.to_owned()
            } else {
                host.to_owned()
            }
        }
    }
}

/// The body of an `X-Registry-Auth` header.
#[derive(Serialize)]
struct HeaderAuth<'a> {
    username: &'a str,
    password: &'a str,
    serveraddress: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    identitytoken: &'a str,
}

/// Encodes credentials as Docker's `X-Registry-Auth` value: URL-safe base64 (padded) of
/// `{"username","password","serveraddress"[,"identitytoken"]}`; `{}` (`e30=`) for none.
pub fn encode_auth_header(auth: Option<&AuthConfig>) -> String {
    let json = match auth {
        Some(a) => serde_json::to_vec(&HeaderAuth {
            username: &a.username,
            password: &a.password,
            serveraddress: &a.server_address,
            identitytoken: &a.identity_token,
        })
        .unwrap_or_else(|_| b"{}".to_vec()),
        None => b"{}".to_vec(),
    };
    URL_SAFE.encode(json)
}

/// The `X-Registry-Auth` value for `server` (a `config.json` key such as [`INDEX_SERVER`] or
/// `localhost:5000`), from the user's config file and credential helpers; `None` when no
/// credentials are stored for it.
pub fn registry_auth_header(server: &str) -> Result<Option<String>> {
    let config = ConfigFile::load(&config_path())?;
    header_for(&config, server)
}

fn header_for(config: &ConfigFile, server: &str) -> Result<Option<String>> {
    Ok(config
        .get_auth(server)?
        .filter(|a| !a.is_empty())
        .map(|a| encode_auth_header(Some(&a))))
}

/// A loaded `config.json`: the whole document, so that saving keeps what we do not know.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    doc: Map<String, Value>,
    /// Where helpers are looked for; `None` searches `$PATH`.
    helper_dir: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads the file at `path`; a missing or empty file is an empty configuration.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(AuthError::Io {
                    action: "reading",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let doc = if data.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(&data) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(malformed(path, "not a JSON object")),
                Err(source) => {
                    return Err(AuthError::Parse {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        };
        for key in ["auths", "credHelpers"] {
            if !matches!(
                doc.get(key),
                None | Some(Value::Object(_)) | Some(Value::Null)
            ) {
                return Err(malformed(path, &format!("{key:?} is not an object")));
            }
        }
        if let Some(helpers) = doc.get("credHelpers").and_then(Value::as_object) {
            if helpers.values().any(|v| !v.is_string()) {
                return Err(malformed(path, "\"credHelpers\" values must be strings"));
            }
        }
        if !matches!(
            doc.get("credsStore"),
            None | Some(Value::String(_)) | Some(Value::Null)
        ) {
            return Err(malformed(path, "\"credsStore\" is not a string"));
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            doc,
            helper_dir: None,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper for `server`: its `credHelpers` entry, else `credsStore`.
    pub fn helper_for(&self, server: &str) -> Option<String> {
        let helpers = self.doc.get("credHelpers").and_then(Value::as_object);
        let named = helpers.and_then(|h| {
            h.get(server)
                .or_else(|| h.get(hostname(server)))
                .and_then(Value::as_str)
        });
        named
            .or_else(|| self.doc.get("credsStore").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// True when `auths` has an entry under exactly `key` (credential helpers leave an empty
    /// one there too).
    pub fn has_auths_entry(&self, key: &str) -> bool {
        self.auths().is_some_and(|a| a.contains_key(key))
    }

    /// The stored credentials for `server`, from its helper or from `auths`.
    pub fn get_auth(&self, server: &str) -> Result<Option<AuthConfig>> {
        let found = match self.helper_for(server) {
            Some(h) => helper_get(&self.helper_program(&h), server)?,
            None => self.file_auth(server)?,
        };
        Ok(found.filter(|a| !a.is_empty()).map(|mut a| {
            a.server_address = server.to_owned();
            a
        }))
    }

    /// Stores `auth` under `auth.server_address` (in its helper when one is configured, with
    /// an empty `auths` entry as Docker leaves) and saves the file.
    pub fn store_auth(&mut self, auth: &AuthConfig) -> Result<StoredIn> {
        let server = auth.server_address.clone();
        let stored = match self.helper_for(&server) {
            Some(h) => {
                helper_store(&self.helper_program(&h), auth)?;
                self.auths_mut().insert(server, Value::Object(Map::new()));
                StoredIn::Helper(h)
            }
            None => {
                let entry = file_entry(auth);
                self.auths_mut().insert(server, entry);
                StoredIn::File
            }
        };
        self.save()?;
        Ok(stored)
    }

    /// Removes the credentials under `server` from its helper and from `auths`, saving the
    /// file when it changed.
    pub fn erase_auth(&mut self, server: &str) -> Result<()> {
        if let Some(h) = self.helper_for(server) {
            helper_erase(&self.helper_program(&h), server)?;
        }
        let removed = self
            .doc
            .get_mut("auths")
            .and_then(Value::as_object_mut)
            .and_then(|a| a.remove(server))
            .is_some();
        if removed {
            self.save()?;
        }
        Ok(())
    }

    /// Writes the file atomically: a temporary file in the same directory (mode 0600),
    /// fsync, rename, fsync of the directory. The directory is created with mode 0700.
    pub fn save(&self) -> Result<()> {
        let mut data = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut data, fmt);
        Serialize::serialize(&self.doc, &mut ser).map_err(|e| AuthError::Io {
            action: "encoding",
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(&self.path, &data)
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.doc.get("auths").and_then(Value::as_object)
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let slot = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        match slot {
            Value::Object(m) => m,
            _ => unreachable!("just made an object"),
        }
    }

    /// The `auths` entry for `server`: the exact key, else a key with the same host name
    /// (`https://reg:5000` for `reg:5000`), as Docker falls back.
    fn file_auth(&self, server: &str) -> Result<Option<AuthConfig>> {
        let Some(auths) = self.auths() else {
            return Ok(None);
        };
        let entry = auths.get_key_value(server).or_else(|| {
            let host = hostname(server);
            auths.iter().find(|(k, _)| hostname(k) == host)
        });
        match entry {
            Some((key, v)) => decode_entry(key, v).map(Some),
            None => Ok(None),
        }
    }

    fn helper_program(&self, name: &str) -> PathBuf {
        let file = format!("{HELPER_PREFIX}{name}");
        match &self.helper_dir {
            Some(d) => d.join(file),
            None => PathBuf::from(file),
        }
    }
}

fn malformed(path: &Path, what: &str) -> AuthError {
    AuthError::Malformed {
        path: path.to_owned(),
        what: what.to_owned(),
    }
}

/// An `auths` entry as Docker writes it: `auth` (base64 `user:password`, omitted when both
/// are empty) and `identitytoken` (omitted when empty).
fn file_entry(auth: &AuthConfig) -> Value {
    let mut m = Map::new();
    if !auth.username.is_empty() || !auth.password.is_empty() {
        let pair = format!("{}:{}", auth.username, auth.password);
        m.insert("auth".into(), Value::String(STANDARD.encode(pair)));
    }
    if !auth.identity_token.is_empty() {
        m.insert(
            "identitytoken".into(),
            Value::String(auth.identity_token.clone()),
        );
    }
    Value::Object(m)
}

/// Reads an `auths` entry (`auth`, `identitytoken`, and the older `username`/`password`).
fn decode_entry(server: &str, v: &Value) -> Result<AuthConfig> {
    let invalid = |reason: &str| AuthError::InvalidAuth {
        server: server.to_owned(),
        reason: reason.to_owned(),
    };
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut auth = AuthConfig {
        username: field("username"),
        password: field("password"),
        server_address: server.to_owned(),
        identity_token: field("identitytoken"),
    };
    let encoded = field("auth");
    if !encoded.is_empty() {
        let raw = STANDARD
            .decode(encoded.trim())
            .or_else(|_| STANDARD_NO_PAD.decode(encoded.trim()))
            .map_err(|_| invalid("\"auth\" is not base64"))?;
        let pair = String::from_utf8(raw).map_err(|_| invalid("\"auth\" is not UTF-8"))?;
        let (user, pass) = pair
            .split_once(':')
            .ok_or_else(|| invalid("\"auth\" is not user:password"))?;
        auth.username = user.to_owned();
        auth.password = pass.trim_end_matches('\0').to_owned();
    }
    Ok(auth)
}

/// Writes `data` to `path` (through a symlink to its target) without ever leaving a torn file.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| AuthError::Io {
            action,
            path,
            source,
        }
    };
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let link = fs::read_link(path).map_err(io_err("reading link", path))?;
            match path.parent() {
                Some(dir) if link.is_relative() => dir.join(link),
                _ => link,
            }
        }
        _ => path.to_owned(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("creating", &dir))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| CONFIG_FILE.to_owned());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!(".{name}.tmp-{}-{nonce}", std::process::id()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&temp, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(AuthError::Io {
            action: "writing",
            path: target,
            source: e,
        });
    }
    // The rename is durable once the directory is.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What helpers read and print.
#[derive(Serialize, Deserialize)]
struct HelperCreds {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `program action`, feeding `input` to its stdin.
fn run_helper(program: &Path, action: &'static str, input: &[u8]) -> Result<std::process::Output> {
    let name = program.display().to_string();
    let spawn = || {
        Command::new(program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    // A helper written a moment ago may still be open for writing in a child that another
    // thread forked (ETXTBSY) until that child execs; that passes quickly.
    let mut tries = 0;
    let mut child = loop {
        match spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => {
                break other.map_err(|source| AuthError::HelperSpawn {
                    program: name.clone(),
                    source,
                })?;
            }
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its status below.
        let _ = stdin.write_all(input);
    }
    child
        .wait_with_output()
        .map_err(|e| AuthError::HelperFailed {
            program: name,
            action,
            message: e.to_string(),
        })
}

/// The failure of a helper run, from what it printed.
fn helper_failure(program: &Path, action: &'static str, out: &std::process::Output) -> AuthError {
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let message = if stdout.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.is_empty() {
            out.status.to_string()
        } else {
            stderr
        }
    } else {
        stdout
    };
    AuthError::HelperFailed {
        program: program.display().to_string(),
        action,
        message,
    }
}

fn is_not_found(out: &std::process::Output) -> bool {
    String::from_utf8_lossy(&out.stdout).trim() == HELPER_NOT_FOUND
}

/// `program get`: the credentials for `server`, `None` when the helper has none.
fn helper_get(program: &Path, server: &str) -> Result<Option<AuthConfig>> {
    let out = run_helper(program, "get", server.as_bytes())?;
    if !out.status.success() {
        if is_not_found(&out) {
            return Ok(None);
        }
        return Err(helper_failure(program, "get", &out));
    }
    let creds: HelperCreds =
        serde_json::from_slice(&out.stdout).map_err(|source| AuthError::HelperAnswer {
            program: program.display().to_string(),
            source,
        })?;
    let mut auth = AuthConfig {
        server_address: server.to_owned(),
        ..AuthConfig::default()
    };
    if creds.username == TOKEN_USERNAME {
        auth.identity_token = creds.secret;
    } else {
        auth.username = creds.username;
        auth.password = creds.secret;
    }
    Ok(Some(auth).filter(|a| !a.is_empty()))
}

/// `program store`: an identity token is stored with the username `<token>`.
fn helper_store(program: &Path, auth: &AuthConfig) -> Result<()> {
    let creds = if auth.identity_token.is_empty() {
        HelperCreds {
            server_url: auth.server_address.clone(),
            username: auth.username.clone(),
            secret: auth.password.clone(),
        }
    } else {
        HelperCreds {
            server_url: auth.server_address.clone(),
            username: TOKEN_USERNAME.to_owned(),
            secret: auth.identity_token.clone(),
        }
    };
    let input = serde_json::to_vec(&creds).unwrap_or_default();
    let out = run_helper(program, "store", &input)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(helper_failure(program, "store", &out))
    }
}

/// `program erase`: nothing stored counts as erased.
fn helper_erase(program: &Path, server: &str) -> Result<()> {
    let out = run_helper(program, "erase", server.as_bytes())?;
    if out.status.success() || is_not_found(&out) {
        Ok(())
    } else {
        Err(helper_failure(program, "erase", &out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn cfg_in(dir: &Path) -> PathBuf {
        dir.join("nested").join(CONFIG_FILE)
    }

    fn user(server: &str, u: &str, p: &str) -> AuthConfig {
        AuthConfig {
            username: u.into(),
            password: p.into(),
            server_address: server.into(),
            identity_token: String::new(),
        }
    }

    #[test]
    fn missing_file_is_empty_and_first_save_creates_private_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = cfg_in(tmp.path());
        let mut cfg = ConfigFile::load(&path).unwrap();
        assert_eq!(cfg.get_auth("localhost:5000").unwrap(), None);
        assert_eq!(
            cfg.store_auth(&user("localhost:5000", "bob", "pw:with:colons"))
                .unwrap(),
            StoredIn::File
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            doc["auths"]["localhost:5000"]["auth"],
            STANDARD.encode("bob:pw:with:colons")
        );
        let again = ConfigFile::load(&path).unwrap();
        let got = again.get_auth("localhost:5000").unwrap().unwrap();
        assert_eq!(got, user("localhost:5000", "bob", "pw:with:colons"));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONFIG_FILE)]);
    }

    #[test]
    fn unknown_keys_survive_and_entries_merge() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(CONFIG_FILE);
        fs::write(
            &path,
            r#"{
                "auths": {
                    "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                    "other.example": {"auth": "eDp5", "email": "x@y"}
                },
                "psFormat": "table {{.ID}}",
                "proxies": {"default": {"httpProxy": "http://p:3128"}},
                "currentContext": "default"
            }"#,
        )
        .unwrap();
        let mut cfg = ConfigFile::load(&path).unwrap();
        let hub = cfg.get_auth(INDEX_SERVER).unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        cfg.store_auth(&AuthConfig {
            identity_token: "tok".into(),
            ..user("reg.example:5000", "alice", "")
        })
        .unwrap();
        cfg.erase_auth("other.example").unwrap();
        let doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["psFormat"], "table {{.ID}}");
        assert_eq!(doc["proxies"]["default"]["httpProxy"], "http://p:3128");
        assert_eq!(doc["currentContext"], "default");
        assert_eq!(
            doc["auths"]["https://index.docker.io/v1/"]["auth"],
            "aHViOnNlY3JldA=="
        );
        assert!(doc["auths"].get("other.example").is_none());
        assert_eq!(
            doc["auths"]["reg.example:5000"],
            serde_json::json!({"auth": STANDARD.encode("alice:"), "identitytoken": "tok"})
        );
        // Docker's file is indented with tabs.
        assert!(
            String::from_utf8(fs::read(&path).unwrap())
                .unwrap()
                .contains("\n\t\"auths\"")
        );
    }

    #[test]
    fn host_name_fallback_and_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(CONFIG_FILE);
        fs::write(
            &path,
            r#"{"auths": {"https://reg.example:5000/v2/": {"auth": "dTpw"}}}"#,
        )
        .unwrap();
        let cfg = ConfigFile::load(&path).unwrap();
        let a = cfg.get_auth("reg.example:5000").unwrap().unwrap();
        assert_eq!(a.username, "u");
        assert_eq!(a.server_address, "reg.example:5000");
        assert!(cfg.get_auth("reg.example:5001").unwrap().is_none());

        fs::write(&path, r#"{"auths": {"r": {"auth": "!!!"}}}"#).unwrap();
        let cfg = ConfigFile::load(&path).unwrap();
        assert!(matches!(
            cfg.get_auth("r"),
            Err(AuthError::InvalidAuth { .. })
        ));
        fs::write(&path, r#"{"auths": []}"#).unwrap();
        assert!(matches!(
            ConfigFile::load(&path),
            Err(AuthError::Malformed { .. })
        ));
        fs::write(&path, "{nope").unwrap();
        assert!(matches!(
            ConfigFile::load(&path),
            Err(AuthError::Parse { .. })
        ));
        fs::write(&path, "\n").unwrap();
        assert!(ConfigFile::load(&path).is_ok());
    }

    #[test]
    fn writes_go_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real.json");
        fs::write(&real, "{}").unwrap();
        let link = tmp.path().join(CONFIG_FILE);
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let mut cfg = ConfigFile::load(&link).unwrap();
        cfg.store_auth(&user("r", "a", "b")).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(fs::read_to_string(&real).unwrap().contains("\"r\""));
    }

    #[test]
    fn header_encoding() {
        assert_eq!(encode_auth_header(None), "e30=");
        let h = encode_auth_header(Some(&user("localhost:5000", "bob", "s3cr?t>")));
        let json = URL_SAFE.decode(&h).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"username":"bob","password":"s3cr?t>","serveraddress":"localhost:5000"}"#
        );
        assert!(!h.contains('+') && !h.contains('/'));
        let tok = AuthConfig {
            identity_token: "abc".into(),
            ..user(INDEX_SERVER, "", "")
        };
        let json = URL_SAFE.decode(encode_auth_header(Some(&tok))).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"username":"","password":"","serveraddress":"https://index.docker.io/v1/","identitytoken":"abc"}"#
        );

        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(CONFIG_FILE);
        let mut cfg = ConfigFile::load(&path).unwrap();
        assert_eq!(header_for(&cfg, "localhost:5000").unwrap(), None);
        cfg.store_auth(&user("localhost:5000", "bob", "pw"))
            .unwrap();
        let h = header_for(&cfg, "localhost:5000").unwrap().unwrap();
        assert_eq!(
            URL_SAFE.decode(h).unwrap(),
            br#"{"username":"bob","password":"pw","serveraddress":"localhost:5000"}"#
        );
    }

    #[test]
    fn server_keys() {
        assert_eq!(server_key(None), INDEX_SERVER);
        assert_eq!(server_key(Some("docker.io")), INDEX_SERVER);
        assert_eq!(
            server_key(Some("https://index.docker.io/v1/")),
            INDEX_SERVER
        );
        assert_eq!(server_key(Some("localhost:5000")), "localhost:5000");
        assert_eq!(server_key(Some("https://reg.example/v2/")), "reg.example");
        assert_eq!(hostname("http://a:1/x"), "a:1");
    }

    /// A helper that keeps one credential per server in files beside itself.
    const FAKE_HELPER: &str = r#"#!/bin/sh
dir=$(dirname "$0")/store
mkdir -p "$dir"
case "$1" in
get)
    url=$(cat)
    key=$(printf '%s' "$url" | tr -c 'a-zA-Z0-9.' '_')
    if [ -f "$dir/$key" ]; then cat "$dir/$key"; exit 0; fi
    echo "credentials not found in native keychain"
    exit 1 ;;
store)
    json=$(cat)
    url=$(printf '%s' "$json" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
    key=$(printf '%s' "$url" | tr -c 'a-zA-Z0-9.' '_')
    printf '%s' "$json" > "$dir/$key" ;;
erase)
    url=$(cat)
    key=$(printf '%s' "$url" | tr -c 'a-zA-Z0-9.' '_')
    if [ ! -f "$dir/$key" ]; then echo "credentials not found in native keychain"; exit 1; fi
    rm "$dir/$key" ;;
*)
    echo "unknown action" >&2
    exit 2 ;;
esac
"#;

    fn fake_helper(dir: &Path) -> PathBuf {
        let program = dir.join("docker-credential-berthtest");
        fs::write(&program, FAKE_HELPER).unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        program
    }

    #[test]
    fn credential_helper_protocol() {
        let tmp = tempfile::tempdir().unwrap();
        let program = fake_helper(tmp.path());
        assert_eq!(helper_get(&program, "reg.example").unwrap(), None);
        helper_store(&program, &user("reg.example", "bob", "pw")).unwrap();
        assert_eq!(
            helper_get(&program, "reg.example").unwrap(),
            Some(user("reg.example", "bob", "pw"))
        );
        let token = AuthConfig {
            identity_token: "idtok".into(),
            ..user(INDEX_SERVER, "ignored", "")
        };
        helper_store(&program, &token).unwrap();
        let stored =
            fs::read_to_string(tmp.path().join("store").join("https___index.docker.io_v1_"))
                .unwrap();
        assert!(stored.contains(r#""Username":"<token>""#), "{stored}");
        let got = helper_get(&program, INDEX_SERVER).unwrap().unwrap();
        assert_eq!(got.identity_token, "idtok");
        assert_eq!(got.username, "");
        helper_erase(&program, "reg.example").unwrap();
        helper_erase(&program, "reg.example").unwrap();
        assert_eq!(helper_get(&program, "reg.example").unwrap(), None);

        let missing = tmp.path().join("docker-credential-absent");
        assert!(matches!(
            helper_get(&missing, "x"),
            Err(AuthError::HelperSpawn { .. })
        ));
        let broken = tmp.path().join("docker-credential-broken");
        fs::write(&broken, "#!/bin/sh\necho boom >&2\nexit 3\n").unwrap();
        fs::set_permissions(&broken, fs::Permissions::from_mode(0o755)).unwrap();
        let err = helper_get(&broken, "x").unwrap_err().to_string();
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn config_routes_to_helpers() {
        let tmp = tempfile::tempdir().unwrap();
        fake_helper(tmp.path());
        let path = tmp.path().join(CONFIG_FILE);
        fs::write(
            &path,
            r#"{"credHelpers": {"reg.example": "berthtest"}, "auths": {"plain:5000": {"auth": "YTpi"}}}"#,
        )
        .unwrap();
        let mut cfg = ConfigFile::load(&path).unwrap();
        cfg.helper_dir = Some(tmp.path().to_owned());
        assert_eq!(cfg.helper_for("reg.example").as_deref(), Some("berthtest"));
        assert_eq!(cfg.helper_for("plain:5000"), None);
        assert_eq!(
            cfg.store_auth(&user("reg.example", "bob", "pw")).unwrap(),
            StoredIn::Helper("berthtest".into())
        );
        let doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        // The file only records that there is a login; the secret is in the helper.
        assert_eq!(doc["auths"]["reg.example"], serde_json::json!({}));
        assert!(cfg.has_auths_entry("reg.example"));
        let h = header_for(&cfg, "reg.example").unwrap().unwrap();
        assert!(
            String::from_utf8(URL_SAFE.decode(h).unwrap())
                .unwrap()
                .contains("\"bob\"")
        );
        assert_eq!(cfg.get_auth("plain:5000").unwrap().unwrap().username, "a");
        cfg.erase_auth("reg.example").unwrap();
        assert_eq!(cfg.get_auth("reg.example").unwrap(), None);
        assert!(!cfg.has_auths_entry("reg.example"));

        // A global store takes every registry without its own helper.
        fs::write(&path, r#"{"credsStore": "berthtest"}"#).unwrap();
        let mut cfg = ConfigFile::load(&path).unwrap();
        cfg.helper_dir = Some(tmp.path().to_owned());
        assert_eq!(cfg.helper_for(INDEX_SERVER).as_deref(), Some("berthtest"));
        cfg.store_auth(&user(INDEX_SERVER, "hub", "pw")).unwrap();
        assert_eq!(cfg.get_auth(INDEX_SERVER).unwrap().unwrap().username, "hub");
    }
}
