//! `/containers/{id}/exec` and `/exec/{id}/...`.

use berth_engine::ExecConfig;
use hyper::StatusCode;

use super::body::json;
use super::hijack;
use super::{ApiError, Ctx, HandlerResult, Req, ok_json};
use crate::models::{
    ExecCreateRequest, ExecInspect, ExecProcessConfig, ExecStartRequest, IdResponse,
};

pub(super) async fn create(ctx: &Ctx, r: &mut Req, id: &str) -> HandlerResult {
    let body: ExecCreateRequest = r.json().await?;
    let cfg = ExecConfig {
        cmd: body.cmd.unwrap_or_default(),
        env: body.env.unwrap_or_default(),
        user: body.user,
        working_dir: body.working_dir,
        tty: body.tty,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        privileged: body.privileged,
        detach_keys: body.detach_keys.unwrap_or_default(),
    };
    if !cfg.detach_keys.is_empty() {
        crate::detach::parse_detach_keys(&cfg.detach_keys).map_err(|_| {
            ApiError::bad(format!(
                "Invalid escape keys ({}) provided",
                cfg.detach_keys
            ))
        })?;
    }
    let exec_id = ctx.engine.exec_create(id, cfg)?;
    Ok(json(StatusCode::CREATED, &IdResponse { id: exec_id }))
}

pub(super) async fn start(ctx: &Ctx, mut r: Req, id: &str) -> HandlerResult {
    let body: ExecStartRequest = r.json().await?;
    let info = ctx.engine.exec_inspect(id)?;
    // The client's terminal size (API 1.42+): the tty has it from the start instead of
    // waiting on the client's resize call, which may come before the process exists.
    let size = body
        .console_size
        .and_then(|[h, w]| Some((u16::try_from(h).ok()?, u16::try_from(w).ok()?)));
    if body.detach {
        // Run it; the session drains in the background and records the exit code.
        let session = ctx.engine.exec_start(id, size).await?;
        drop(session);
        return Ok(super::body::empty(StatusCode::OK));
    }
    // As dockerd: the stream is upgraded first and the process started after, so its first
    // output never shares a read with the response head (docker-py switches to the raw
    // socket after reading the head through a buffer, and lost such output).
    ctx.engine.exec_check_startable(id)?;
    // The stream is framed or raw as the start asks, as dockerd's: the process's terminal
    // came with the create. (docker-py's `exec_start` leaves `Tty` false unless told.)
    let tty = body.tty;
    let keys = (!info.config.detach_keys.is_empty()).then(|| info.config.detach_keys.clone());
    let engine = ctx.engine.clone();
    let id = id.to_owned();
    hijack::upgrade(r, tty, move |mut io| async move {
        match engine.exec_start(&id, size).await {
            Ok(mut session) => {
                session.tty = tty;
                hijack::pump(io, session, keys.as_deref(), true).await
            }
            Err(e) => {
                // The process could not start: the client reads the error as text on its
                // stream (stdout unless there is a tty, as dockerd writes it), and the exit
                // code (126/127) from exec inspect.
                let msg = match e {
                    berth_engine::EngineError::Runtime(msg) => msg,
                    other => other.to_string(),
                };
                let text = format!("{msg}\r\n").into_bytes();
                let data = if tty {
                    text
                } else {
                    crate::stream::encode_frame(crate::stream::StdStream::Stdout, &text)
                };
                use tokio::io::AsyncWriteExt;
                let _ = io.write_all(&data).await;
                let _ = io.shutdown().await;
            }
        }
    })
}

pub(super) async fn resize(ctx: &Ctx, r: &Req, id: &str) -> HandlerResult {
    let h = r.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = r.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    ctx.engine.exec_resize(id, h, w).await?;
    Ok(super::body::empty(StatusCode::OK))
}

pub(super) fn inspect(ctx: &Ctx, id: &str) -> HandlerResult {
    let i = ctx.engine.exec_inspect(id)?;
    let mut args = i.config.cmd.clone();
    let entrypoint = if args.is_empty() {
        String::new()
    } else {
        args.remove(0)
    };
    ok_json(&ExecInspect {
        id: i.id,
        running: i.running,
        exit_code: i.exit_code,
        process_config: ExecProcessConfig {
            tty: i.config.tty,
            entrypoint,
            arguments: args,
            privileged: i.config.privileged,
            user: i.config.user.clone(),
        },
        open_stdin: i.config.attach_stdin,
        open_stderr: i.config.attach_stderr,
        open_stdout: i.config.attach_stdout,
        can_remove: false,
        container_id: i.container_id,
        detach_keys: i.config.detach_keys,
        pid: i.pid,
    })
}
