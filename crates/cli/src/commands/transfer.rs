//! Images made from and moved out of the daemon: `commit`, `save`, `load`, `history`.

use berth_api::client::{Client, RequestBody, query};
use berth_api::models::JsonMessage;
use hyper::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{image_seg, seg};
use crate::args::{CommitArgs, HistoryArgs, LoadArgs, SaveArgs};
use crate::error::{CliError, Result};
use crate::format::{ellipsis, human_size_prec, short_id, since_unix};
use crate::opts::io_err as io;
use crate::opts::split_reference;
use crate::template::render_rows;

/// `commit`: prints the new image's id.
pub async fn commit(client: &Client, a: CommitArgs) -> Result<i32> {
    let (repo, tag) = match &a.reference {
        Some(r) => split_reference(r),
        None => (String::new(), String::new()),
    };
    let pause = if a.pause { "1" } else { "0" };
    let mut pairs: Vec<(&str, &str)> = vec![("container", &a.container), ("pause", pause)];
    if !repo.is_empty() {
        pairs.push(("repo", &repo));
    }
    if !tag.is_empty() {
        pairs.push(("tag", &tag));
    }
    if let Some(m) = &a.message {
        pairs.push(("comment", m));
    }
    if let Some(au) = &a.author {
        pairs.push(("author", au));
    }
    for c in &a.change {
        pairs.push(("changes", c));
    }
    let resp: Value = client
        .post::<Value, _>(&format!("/commit?{}", query(&pairs)), None)
        .await?;
    outln!("{}", resp["Id"].as_str().unwrap_or_default());
    Ok(0)
}

/// `save`: the archive to a file or to stdout (never to a terminal); `-o DIR/` (or an
/// existing directory) writes the OCI image layout into the directory instead.
pub async fn save(client: &Client, a: SaveArgs) -> Result<i32> {
    if let Some(dir) = a
        .output
        .as_deref()
        .filter(|o| o.ends_with('/') || std::path::Path::new(o).is_dir())
    {
        return save_layout(client, &a.images, dir).await;
    }
    if a.output.is_none() && crate::tty::stdout_is_tty() {
        return Err(CliError::Precondition(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        ));
    }
    let path = match a.images.as_slice() {
        [one] => format!("/images/{}/get", image_seg(one)),
        many => {
            let pairs: Vec<(&str, &str)> = many.iter().map(|n| ("names", n.as_str())).collect();
            format!("/images/get?{}", query(&pairs))
        }
    };
    let mut body = client
        .stream(Method::GET, &path, RequestBody::Empty)
        .await?;
    // A file is written beside its target and renamed once complete.
    let (mut out, temp): (Box<dyn tokio::io::AsyncWrite + Unpin + Send>, _) = match &a.output {
        Some(p) => {
            let temp = format!("{p}.berth-tmp-{}", std::process::id());
            let f = tokio::fs::File::create(&temp)
                .await
                .map_err(io(format!("create {p}")))?;
            (Box::new(f), Some((temp, p.clone())))
        }
        None => (Box::new(tokio::io::stdout()), None),
    };
    let copied = async {
        while let Some(chunk) = body.chunk().await? {
            out.write_all(&chunk).await.map_err(io("write"))?;
        }
        out.flush().await.map_err(io("write"))?;
        Ok::<(), CliError>(())
    }
    .await;
    match (copied, temp) {
        (Ok(()), Some((temp, dest))) => tokio::fs::rename(&temp, &dest)
            .await
            .map_err(io(format!("rename to {dest}")))?,
        (Err(e), Some((temp, _))) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        (r, None) => r?,
    }
    Ok(0)
}

/// `save -o DIR/`: the archive unpacked as an OCI image layout directory (what skopeo's
/// `oci:DIR` reads).
async fn save_layout(client: &Client, images: &[String], dir: &str) -> Result<i32> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io(format!("create {dir}")))?;
    let archive = std::path::Path::new(dir).join(format!(".berth-save-{}.tar", std::process::id()));
    let args = SaveArgs {
        output: Some(archive.to_string_lossy().into_owned()),
        images: images.to_vec(),
    };
    let saved = Box::pin(save(client, args)).await;
    let unpacked = match saved {
        Ok(_) => {
            let (archive, target) = (archive.clone(), dir.to_owned());
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&archive)?;
                tar::Archive::new(f).unpack(&target)
            })
            .await
            .map_err(|e| CliError::Precondition(format!("unpack: {e}")))?
            .map_err(io(format!("unpack into {dir}")))
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&archive).await;
    unpacked.map(|()| 0)
}

/// `load`: prints `Loaded image: ...` per image.
pub async fn load(client: &Client, a: LoadArgs) -> Result<i32> {
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &a.input {
        Some(p) => Box::new(
            tokio::fs::File::open(p)
                .await
                .map_err(io(format!("open {p}")))?,
        ),
        None => {
            if crate::tty::stdin_is_tty() {
                return Err(CliError::Precondition(
                    "requested load from stdin, but stdin is empty".into(),
                ));
            }
            Box::new(tokio::io::stdin())
        }
    };
    let q = if a.quiet { "?quiet=1" } else { "?quiet=0" };
    let mut s = client
        .stream(
            Method::POST,
            &format!("/images/load{q}"),
            RequestBody::Reader {
                reader,
                content_type: "application/x-tar",
            },
        )
        .await?;
    while let Some(m) = s.next_json::<JsonMessage>().await? {
        if let Some(e) = m.error.or(m.error_detail.map(|d| d.message)) {
            return Err(CliError::Stream(e));
        }
        if let Some(line) = m.stream {
            out!("{line}");
        }
    }
    Ok(0)
}

fn history_headers() -> Value {
    json!({
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
    })
}

/// `history`.
pub async fn history(client: &Client, a: HistoryArgs) -> Result<i32> {
    let rows: Vec<Value> = client
        .get(&format!(
            "/images/{}/history",
            seg(&a.image).replace("%2F", "/")
        ))
        .await?;
    let view: Vec<Value> = rows
        .iter()
        .map(|r| {
            let id = r["Id"].as_str().unwrap_or_default();
            let id = if a.no_trunc || id == "<missing>" {
                id.to_owned()
            } else {
                short_id(id)
            };
            let created = r["Created"].as_i64().unwrap_or(0);
            let by = r["CreatedBy"]
                .as_str()
                .unwrap_or_default()
                .replace('\t', " ");
            let size = r["Size"].as_i64().unwrap_or(0);
            json!({
                "ID": id,
                "CreatedSince": if a.human { since_unix(created) } else {
                    chrono::DateTime::from_timestamp(created, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                },
                "CreatedAt": chrono::DateTime::from_timestamp(created, 0)
                    .map(|t| t.with_timezone(&chrono::Local).to_rfc3339())
                    .unwrap_or_default(),
                "CreatedBy": if a.no_trunc { by } else { ellipsis(&by, 45) },
                "Size": if a.human { human_size_prec(size as f64, 3) } else { size.to_string() },
                "Comment": r["Comment"].as_str().unwrap_or_default(),
            })
        })
        .collect();
    if a.quiet {
        for v in &view {
            outln!("{}", v["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let format = match &a.format {
        Some(f) if !f.is_empty() && f != "table" => f.clone(),
        _ => "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".to_owned(),
    };
    out!("{}", render_rows(&format, &history_headers(), &view)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut_like_docker() {
        assert_eq!(ellipsis("short", 45), "short");
        let long = "x".repeat(50);
        let cut = ellipsis(&long, 45);
        assert_eq!(cut.chars().count(), 45);
        assert!(cut.ends_with('…'));
    }
}
