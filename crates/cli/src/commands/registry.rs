//! Registry commands: `login`, `logout`, `pull`, `push`.
//!
//! `pull` and `push` send the registry's credentials to the daemon in Docker's
//! `X-Registry-Auth` header.

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::fd::AsFd as _;

use berth_api::client::{BodyStream, Client, RequestBody, query};
use hyper::Method;
use serde::{Deserialize, Serialize};

use super::image_seg;
use crate::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs, SearchArgs};
use crate::auth::{self, AuthConfig, ConfigFile, INDEX_SERVER, StoredIn};
use crate::error::{CliError, Result};
use crate::progress::{self, ProgressMessage, ProgressOutput};
use crate::reference::ImageRef;

/// The header that carries registry credentials to the daemon.
const REGISTRY_AUTH_HEADER: &str = "X-Registry-Auth";
/// Docker's warning when credentials land in the config file itself.
const UNENCRYPTED_WARNING: &str = "Configure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/";

/// `pull [--platform P] [-q] NAME[:TAG|@DIGEST]`.
pub async fn pull(client: &Client, a: PullArgs) -> Result<i32> {
    let r = ImageRef::parse(&a.image)?;
    if r.is_name_only() && !a.quiet {
        outln!("Using default tag: latest");
    }
    let name = r.familiar_name();
    let mut pairs: Vec<(&str, &str)> = vec![("fromImage", &name)];
    if let Some(t) = r.api_tag() {
        pairs.push(("tag", t));
    }
    if let Some(p) = a.platform.as_deref().filter(|p| !p.is_empty()) {
        pairs.push(("platform", p));
    }
    let path = format!("/images/create?{}", query(&pairs));
    let auth = auth_header(&r)?;
    let mut out = progress::stdout_output(a.quiet);
    follow(client, &path, &auth, out.as_mut()).await?;
    outln!("{}", r.full());
    Ok(0)
}

/// The pull `run` and `create` make for a missing image: progress on stderr, no final
/// reference.
pub async fn pull_for_create(
    client: &Client,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
) -> Result<()> {
    let r = ImageRef::parse(image)?;
    let name = r.familiar_name();
    let mut pairs: Vec<(&str, &str)> = vec![("fromImage", &name)];
    if let Some(t) = r.api_tag() {
        pairs.push(("tag", t));
    }
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        pairs.push(("platform", p));
    }
    let path = format!("/images/create?{}", query(&pairs));
    let auth = auth_header(&r)?;
    let mut out = progress::stderr_output(quiet);
    follow(client, &path, &auth, out.as_mut()).await
}

/// `push [-q] NAME[:TAG]`.
pub async fn push(client: &Client, a: PushArgs) -> Result<i32> {
    let r = ImageRef::parse(&a.image)?;
    if r.digest().is_some() {
        return Err(CliError::Precondition(format!(
            "invalid reference {}: cannot push a digest reference",
            a.image
        )));
    }
    if r.is_name_only() && !a.quiet {
        outln!("Using default tag: latest");
    }
    let path = format!(
        "/images/{}/push?{}",
        image_seg(&r.familiar_name()),
        query(&[("tag", r.tag().unwrap_or("latest"))])
    );
    let auth = auth_header(&r)?;
    let mut out = progress::stdout_output(a.quiet);
    follow(client, &path, &auth, out.as_mut()).await?;
    if a.quiet {
        outln!("{}", r.full());
    }
    Ok(0)
}

/// The `X-Registry-Auth` value for the reference's registry (`{}` when not logged in).
fn auth_header(r: &ImageRef) -> Result<String> {
    Ok(auth::registry_auth_header(&r.auth_server())?
        .unwrap_or_else(|| auth::encode_auth_header(None)))
}

/// POSTs `path` with the credentials and shows the progress stream until it ends.
async fn follow(
    client: &Client,
    path: &str,
    auth: &str,
    out: &mut dyn ProgressOutput,
) -> Result<()> {
    let mut stream = post_with_auth(client, path, auth).await?;
    let result = async {
        while let Some(m) = stream.next_json::<ProgressMessage>().await? {
            progress::display(out, &m).map_err(CliError::Stream)?;
        }
        Ok::<_, CliError>(())
    }
    .await;
    out.finish();
    result
}

/// `POST path` (unversioned) with an `X-Registry-Auth` header: the progress stream.
async fn post_with_auth(client: &Client, path: &str, auth: &str) -> Result<BodyStream> {
    Ok(client
        .stream_with_headers(
            Method::POST,
            path,
            RequestBody::Empty,
            &[(REGISTRY_AUTH_HEADER, auth)],
        )
        .await?)
}

/// The body of `POST /auth`.
#[derive(Serialize)]
struct AuthRequest<'a> {
    username: &'a str,
    password: &'a str,
    serveraddress: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    identitytoken: &'a str,
}

/// The answer of `POST /auth`.
#[derive(Debug, Default, Deserialize)]
struct AuthResponse {
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "IdentityToken", default)]
    identity_token: String,
}

/// Asks the daemon to check `creds` against the registry.
async fn authenticate(client: &Client, creds: &AuthConfig) -> Result<AuthResponse> {
    let body = AuthRequest {
        username: &creds.username,
        password: &creds.password,
        serveraddress: &creds.server_address,
        identitytoken: &creds.identity_token,
    };
    let resp: Option<AuthResponse> = client.post("/auth", Some(&body)).await?;
    Ok(resp.unwrap_or_default())
}

/// `search TERM`: the registry's hits (Docker Hub's, or `host/term` on another registry),
/// with the credentials stored for it.
pub async fn search(client: &Client, a: SearchArgs) -> Result<i32> {
    let server = match a.term.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => host.to_owned(),
        _ => INDEX_SERVER.to_owned(),
    };
    let auth =
        auth::registry_auth_header(&server)?.unwrap_or_else(|| auth::encode_auth_header(None));
    let mut q = vec![("term", a.term.clone()), ("limit", a.limit.to_string())];
    if let Some(f) = crate::opts::parse_filters(&a.filter)? {
        q.push(("filters", f));
    }
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut stream = client
        .stream_with_headers(
            Method::GET,
            &format!("/images/search?{}", query(&pairs)),
            RequestBody::Empty,
            &[(REGISTRY_AUTH_HEADER, &auth)],
        )
        .await?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    let hits: Vec<serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| CliError::Stream(format!("search results: {e}")))?;
    let ok = |v: &serde_json::Value| {
        if v.as_bool() == Some(true) {
            "[OK]"
        } else {
            ""
        }
    };
    let rows: Vec<serde_json::Value> = hits
        .iter()
        .map(|h| {
            let desc = h["description"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', " ");
            let desc = if a.no_trunc {
                desc
            } else {
                crate::format::ellipsis(&desc, 45)
            };
            serde_json::json!({
                "Name": h["name"], "Description": desc, "StarCount": h["star_count"],
                "IsOfficial": ok(&h["is_official"]), "IsAutomated": ok(&h["is_automated"]),
            })
        })
        .collect();
    let format = match &a.format {
        Some(f) if !f.is_empty() && f != "table" => f.clone(),
        _ => "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}".to_owned(),
    };
    let headers = serde_json::json!({
        "Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS",
        "IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED",
    });
    out!(
        "{}",
        crate::template::render_rows(&format, &headers, &rows)?
    );
    Ok(0)
}

/// `login [-u USER] [-p PASS | --password-stdin] [SERVER]`.
pub async fn login(client: &Client, a: LoginArgs) -> Result<i32> {
    if a.password.is_some() && a.password_stdin {
        return Err(CliError::Precondition(
            "--password and --password-stdin are mutually exclusive".into(),
        ));
    }
    let mut password = a.password.clone();
    if password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if a.password_stdin {
        if a.username.as_deref().is_none_or(str::is_empty) {
            return Err(CliError::Precondition(
                "Must provide --username with --password-stdin".into(),
            ));
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        password = Some(s.trim_end_matches(['\n', '\r']).to_owned());
    }
    let server = auth::server_key(a.server.as_deref());
    let mut config = ConfigFile::load(&auth::config_path())?;
    // Unreadable stored credentials only mean we have to ask.
    let stored = config.get_auth(&server).ok().flatten();

    if a.username.is_none() && password.is_none() {
        if let Some(creds) = &stored {
            outln!("Authenticating with existing credentials...");
            match authenticate(client, creds).await {
                Ok(resp) => return finish_login(&mut config, creds.clone(), resp),
                Err(e) => eprintln!("Login did not succeed, error: {e}"),
            }
        }
    }

    let default_user = stored
        .as_ref()
        .map(|c| c.username.clone())
        .filter(|u| !u.is_empty());
    let needs_prompt = a.username.as_deref().is_none_or(str::is_empty)
        || password.as_deref().is_none_or(str::is_empty);
    if needs_prompt && !crate::tty::stdin_is_tty() {
        return Err(CliError::Precondition(
            "Error: Cannot perform an interactive login from a non TTY device".into(),
        ));
    }
    let username = match a.username.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => u.trim().to_owned(),
        None => {
            let prompt = match &default_user {
                Some(d) => format!("Username ({d}): "),
                None => "Username: ".to_owned(),
            };
            let typed = read_line(&prompt, true)?;
            let typed = typed.trim();
            match (&default_user, typed.is_empty()) {
                (Some(d), true) => d.clone(),
                _ => typed.to_owned(),
            }
        }
    };
    if username.is_empty() {
        return Err(CliError::Precondition(
            "Error: Non-null Username Required".into(),
        ));
    }
    let password = match password.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => {
            let p = read_line("Password: ", false)?;
            if p.is_empty() {
                return Err(CliError::Precondition("Error: Password Required".into()));
            }
            p
        }
    };
    let creds = AuthConfig {
        username,
        password,
        server_address: server,
        identity_token: String::new(),
    };
    let resp = authenticate(client, &creds).await?;
    finish_login(&mut config, creds, resp)
}

/// Stores the accepted credentials (the identity token instead of the password when the
/// registry gave one) and reports success.
fn finish_login(config: &mut ConfigFile, mut creds: AuthConfig, resp: AuthResponse) -> Result<i32> {
    if !resp.identity_token.is_empty() {
        creds.password.clear();
        creds.identity_token = resp.identity_token;
    }
    let stored = config
        .store_auth(&creds)
        .map_err(|e| CliError::Precondition(format!("Error saving credentials: {e}")))?;
    if stored == StoredIn::File {
        eprintln!(
            "\nWARNING! Your credentials are stored unencrypted in '{}'.\n{UNENCRYPTED_WARNING}\n",
            config.path().display()
        );
    }
    if resp.status.is_empty() {
        outln!("Login Succeeded");
    } else {
        outln!("{}", resp.status);
    }
    Ok(0)
}

/// Prints `prompt` and reads one line from the terminal, without echo unless `echo`.
fn read_line(prompt: &str, echo: bool) -> Result<String> {
    out!("{prompt}");
    let _quiet = if echo { None } else { NoEcho::enable() };
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !echo {
        // The user's Enter was not echoed.
        outln!();
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Terminal echo off while alive (password prompts); the settings come back on drop.
struct NoEcho {
    saved: rustix::termios::Termios,
}

impl NoEcho {
    fn enable() -> Option<NoEcho> {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &quiet).ok()?;
        Some(NoEcho { saved })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        use rustix::termios::{OptionalActions, tcsetattr};
        let stdin = std::io::stdin();
        let _ = tcsetattr(stdin.as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// `logout [SERVER]`.
pub fn logout(a: LogoutArgs) -> Result<i32> {
    let key = auth::server_key(a.server.as_deref());
    // Docker also erases the older spellings a login may have been stored under.
    let (shown, candidates) = if key == INDEX_SERVER {
        (key.clone(), vec![key.clone()])
    } else {
        let mut c = vec![
            key.clone(),
            format!("http://{key}"),
            format!("https://{key}"),
        ];
        if let Some(given) = a.server.as_deref() {
            if !c.iter().any(|k| k == given) {
                c.push(given.to_owned());
            }
        }
        (key.clone(), c)
    };
    let mut config = ConfigFile::load(&auth::config_path())?;
    let logged_in: Vec<String> = candidates
        .into_iter()
        .filter(|k| {
            config.has_auths_entry(k) || (*k == key && config.get_auth(k).ok().flatten().is_some())
        })
        .collect();
    if logged_in.is_empty() {
        outln!("Not logged in to {shown}");
        return Ok(0);
    }
    outln!("Removing login credentials for {shown}");
    let failed: Vec<(String, auth::AuthError)> = logged_in
        .into_iter()
        .filter_map(|k| config.erase_auth(&k).err().map(|e| (k, e)))
        .collect();
    if !failed.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "WARNING: could not erase credentials:");
        for (k, e) in failed {
            let _ = writeln!(err, "{k}: {e}");
        }
    }
    Ok(0)
}
