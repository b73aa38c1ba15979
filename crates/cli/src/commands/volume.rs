//! `volume create|ls|inspect|rm|prune`, printed as Docker's CLI prints them.

use berth_api::client::Client;
use serde_json::{Value, json};

use super::system::{confirm, deleted_section, filters_query};
use super::{for_each, inspect_each, seg};
use crate::args::{
    VolumeCmd, VolumeCreateArgs, VolumeInspectArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs,
};
use crate::error::{CliError, Result};
use crate::opts::parse_kv;
use crate::template::render_rows;

pub async fn execute(client: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => create(client, a).await,
        VolumeCmd::Ls(a) => ls(client, a).await,
        VolumeCmd::Inspect(a) => inspect(client, a).await,
        VolumeCmd::Rm(a) => rm(client, a).await,
        VolumeCmd::Prune(a) => prune(client, a).await,
    }
}

async fn create(client: &Client, a: VolumeCreateArgs) -> Result<i32> {
    let name = match (&a.name, &a.volume) {
        (Some(n), Some(v)) if n != v => {
            return Err(CliError::Precondition(format!(
                "conflicting options: cannot specify a volume-name through both --name and as a positional arg ({n} != {v})"
            )));
        }
        (Some(n), _) => n.clone(),
        (None, Some(v)) => v.clone(),
        (None, None) => String::new(),
    };
    let body = json!({
        "Name": name,
        "Driver": a.driver,
        "DriverOpts": parse_kv(&a.opt),
        "Labels": parse_kv(&a.label),
    });
    let v: Value = client.post("/volumes/create", Some(&body)).await?;
    outln!("{}", v["Name"].as_str().unwrap_or_default());
    Ok(0)
}

/// A `volume ls` template row.
fn row(v: &Value) -> Value {
    let labels: Vec<String> = v["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
        .collect();
    json!({
        "Name": v["Name"], "Driver": v["Driver"], "Scope": v["Scope"],
        "Mountpoint": v["Mountpoint"], "Labels": labels.join(","), "Links": "N/A", "Size": "N/A",
    })
}

async fn ls(client: &Client, a: VolumeLsArgs) -> Result<i32> {
    let v: Value = client
        .get(&filters_query("/volumes", &a.filter, None)?)
        .await?;
    let mut vols: Vec<Value> = v["Volumes"].as_array().cloned().unwrap_or_default();
    vols.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    if a.quiet {
        for v in &vols {
            outln!("{}", v["Name"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let format = match a.format.as_deref() {
        Some(f) if !f.is_empty() && f != "table" => f.to_owned(),
        _ => "table {{.Driver}}\t{{.Name}}".to_owned(),
    };
    let headers = json!({
        "Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE",
    });
    let rows: Vec<Value> = vols.iter().map(row).collect();
    out!("{}", render_rows(&format, &headers, &rows)?);
    Ok(0)
}

async fn inspect(client: &Client, a: VolumeInspectArgs) -> Result<i32> {
    inspect_each(client, &a.volumes, a.format.as_deref(), |n| {
        format!("/volumes/{}", seg(n))
    })
    .await
}

async fn rm(client: &Client, a: VolumeRmArgs) -> Result<i32> {
    let q = if a.force { "?force=1" } else { "" };
    for_each(&a.volumes, true, |name| {
        let path = format!("/volumes/{}{q}", seg(&name));
        async move {
            client.delete::<()>(&path).await?;
            Ok(())
        }
    })
    .await
}

async fn prune(client: &Client, a: VolumePruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !confirm(warning) {
        return Ok(0);
    }
    let extra = a.all.then_some(("all", "true"));
    let (names, space) = prune_volumes(client, &a.filter, extra).await?;
    outln!(
        "{}Total reclaimed space: {}",
        deleted_section("Deleted Volumes:", &names),
        crate::format::human_size(space as f64)
    );
    Ok(0)
}

/// `POST /volumes/prune`: the removed names and the space freed.
pub async fn prune_volumes(
    client: &Client,
    filter: &[String],
    extra: Option<(&str, &str)>,
) -> Result<(Vec<String>, u64)> {
    let v: Value = client
        .post(
            &filters_query("/volumes/prune", filter, extra)?,
            None::<&Value>,
        )
        .await?;
    let names = v["VolumesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    Ok((names, v["SpaceReclaimed"].as_u64().unwrap_or(0)))
}
