//! `exec`: runs a command in a running container, attached or detached, and exits with the
//! command's status.

use std::time::Duration;

use berth_api::client::{Client, RequestBody};
use berth_api::models::{ExecCreateRequest, ExecInspect, ExecStartRequest, IdResponse};

use super::seg;
use crate::args::ExecArgs;
use crate::error::{CliError, Result, run_exit_code};
use crate::opts::collect_env;
use crate::stdio::{self, SessionEnd};
use crate::tty;

/// `exec`.
pub async fn exec(client: &Client, a: ExecArgs) -> Result<i32> {
    let env = collect_env(&a.env_file, &a.env)?;
    let attach_stdin = a.interactive && !a.detach;
    if !a.detach && a.tty && attach_stdin && !tty::stdin_is_tty() {
        return Err(CliError::Precondition(
            "the input device is not a TTY".to_owned(),
        ));
    }
    let console_size = if a.tty {
        tty::size().map(|(h, w)| [u32::from(h), u32::from(w)])
    } else {
        None
    };
    let req = ExecCreateRequest {
        attach_stdin,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        detach_keys: a.detach_keys.clone(),
        tty: a.tty,
        env: if env.is_empty() { None } else { Some(env) },
        cmd: Some(a.command.clone()),
        privileged: a.privileged,
        user: a.user.clone().unwrap_or_default(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        console_size,
    };
    let created: IdResponse = client
        .post(
            &format!("/containers/{}/exec", seg(&a.container)),
            Some(&req),
        )
        .await?;
    let id = created.id;
    let start_path = format!("/exec/{}/start", seg(&id));
    let start = ExecStartRequest {
        detach: a.detach,
        tty: a.tty,
        console_size,
    };

    if a.detach {
        let resp = client
            .request(hyper::Method::POST, &start_path, RequestBody::json(&start)?)
            .await
            .map_err(exec_error)?;
        drop(resp);
        return Ok(0);
    }

    let hijacked = client
        .hijack(hyper::Method::POST, &start_path, RequestBody::json(&start)?)
        .await
        .map_err(exec_error)?;
    let raw = if a.tty && attach_stdin && tty::stdin_is_tty() {
        Some(tty::RawMode::enable()?)
    } else {
        None
    };
    let resize_path = format!("/exec/{}/resize", seg(&id));
    let resize = async {
        if a.tty && tty::stdout_is_tty() {
            stdio::track_resize(client, &resize_path).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = stdio::session(hijacked, a.tty, attach_stdin, a.detach_keys.as_deref()) => r,
        () = resize => Ok(SessionEnd::Closed),
    };
    drop(raw);
    if result? == SessionEnd::Detached {
        // As Docker's CLI: the exec goes on, the client reports the detach and exits 1.
        eprintln!("read escape sequence");
        return Err(CliError::Exit(1));
    }
    exit_status(client, &id).await
}

/// A failed exec start: the daemon's message, with Docker's 126/127 for commands that cannot
/// run.
fn exec_error(e: berth_api::client::ClientError) -> CliError {
    let code = run_exit_code(&e.to_string());
    if code == 125 {
        return e.into();
    }
    eprintln!("{e}");
    CliError::Exit(code)
}

/// The exec's exit code, polling briefly while the daemon records it.
async fn exit_status(client: &Client, id: &str) -> Result<i32> {
    let path = format!("/exec/{}/json", seg(id));
    for _ in 0..100 {
        let info: ExecInspect = client.get(&path).await?;
        if !info.running {
            return Ok(info.exit_code.unwrap_or(0) as i32);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info: ExecInspect = client.get(&path).await?;
    Ok(info.exit_code.unwrap_or(0) as i32)
}
