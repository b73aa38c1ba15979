//! Image commands: `images`, `tag`, `rmi`, `import`.

use berth_api::client::{Client, RequestBody, query};
use berth_api::models::{ImageDeleteItem, ImageSummary, JsonMessage};
use serde_json::{Value, json};

use super::image_seg;
use crate::args::{ImagesArgs, ImportArgs, RmiArgs, TagArgs};
use crate::error::{CliError, Result};
use crate::format::{human_size_prec, short_id, since_unix};
use crate::opts::{io_msg, parse_filters, split_reference};
use crate::template::render_rows;

fn image_headers() -> Value {
    json!({
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
        "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
        "VirtualSize": "VIRTUAL SIZE",
    })
}

/// The template rows of one image: one per tag (or one `<none>` row).
pub fn image_rows(img: &ImageSummary, trunc: bool) -> Vec<Value> {
    let id = if trunc {
        short_id(&img.id)
    } else {
        img.id.clone()
    };
    let digest = img
        .repo_digests
        .iter()
        .flatten()
        .next()
        .and_then(|d| d.split_once('@').map(|(_, d)| d.to_owned()))
        .unwrap_or_else(|| "<none>".to_owned());
    let created = chrono::DateTime::from_timestamp(img.created, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %z %Z")
                .to_string()
        })
        .unwrap_or_default();
    let mut refs: Vec<(String, String)> = img
        .repo_tags
        .iter()
        .filter(|t| t.as_str() != "<none>:<none>")
        .map(|t| {
            let (name, tag) = split_reference(t);
            (
                name,
                if tag.is_empty() {
                    "<none>".to_owned()
                } else {
                    tag
                },
            )
        })
        .collect();
    if refs.is_empty() {
        refs.push(("<none>".to_owned(), "<none>".to_owned()));
    }
    refs.into_iter()
        .map(|(repo, tag)| {
            json!({
                "ID": id,
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": since_unix(img.created),
                "CreatedAt": created,
                "Size": human_size_prec(img.size as f64, 3),
                "VirtualSize": human_size_prec(img.virtual_size.unwrap_or(img.size).max(img.size) as f64, 3),
                "SharedSize": if img.shared_size < 0 { "N/A".to_owned() } else { human_size_prec(img.shared_size as f64, 3) },
                "UniqueSize": if img.shared_size < 0 { "N/A".to_owned() } else { human_size_prec((img.size - img.shared_size) as f64, 3) },
                "Containers": if img.containers < 0 { "N/A".to_owned() } else { img.containers.to_string() },
            })
        })
        .collect()
}

/// `images`.
pub async fn images(client: &Client, a: ImagesArgs) -> Result<i32> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if a.all {
        pairs.push(("all", "1".into()));
    }
    if let Some(f) = parse_filters(&filters)? {
        pairs.push(("filters", f));
    }
    let q: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let list: Vec<ImageSummary> = client.get(&format!("/images/json?{}", query(&q))).await?;
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for img in &list {
            let id = if a.no_trunc {
                img.id.clone()
            } else {
                short_id(&img.id)
            };
            if seen.insert(id.clone()) {
                outln!("{id}");
            }
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .flat_map(|i| image_rows(i, !a.no_trunc))
        .collect();
    let format = match &a.format {
        Some(f) if !f.is_empty() && f != "table" => f.clone(),
        _ if a.digests => {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                .to_owned()
        }
        _ => "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".to_owned(),
    };
    out!("{}", render_rows(&format, &image_headers(), &rows)?);
    Ok(0)
}

/// `tag`.
pub async fn tag(client: &Client, a: TagArgs) -> Result<i32> {
    let (repo, tag) = split_reference(&a.target);
    let tag = if tag.is_empty() && !repo.contains('@') {
        "latest".to_owned()
    } else {
        tag
    };
    let path = format!(
        "/images/{}/tag?{}",
        image_seg(&a.source),
        query(&[("repo", &repo), ("tag", &tag)])
    );
    client.post_empty(&path).await?;
    Ok(0)
}

/// `rmi`.
pub async fn rmi(client: &Client, a: RmiArgs) -> Result<i32> {
    let mut pairs = Vec::new();
    if a.force {
        pairs.push(("force", "1"));
    }
    if a.no_prune {
        pairs.push(("noprune", "1"));
    }
    let q = query(&pairs);
    let mut failed = false;
    for name in &a.images {
        let path = format!("/images/{}?{q}", image_seg(name));
        match client.delete::<Option<Vec<ImageDeleteItem>>>(&path).await {
            Ok(items) => {
                for item in items.unwrap_or_default() {
                    if let Some(u) = item.untagged {
                        outln!("Untagged: {u}");
                    }
                    if let Some(d) = item.deleted {
                        outln!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        Err(CliError::Partial)
    } else {
        Ok(0)
    }
}

/// `import`.
pub async fn import(client: &Client, a: ImportArgs) -> Result<i32> {
    let (repo, tag) = match &a.reference {
        Some(r) => split_reference(r),
        None => (String::new(), String::new()),
    };
    let is_url = a.source.starts_with("http://") || a.source.starts_with("https://");
    let from = if is_url { a.source.as_str() } else { "-" };
    let mut pairs: Vec<(&str, &str)> = vec![("fromSrc", from)];
    if !repo.is_empty() {
        pairs.push(("repo", &repo));
    }
    if !tag.is_empty() {
        pairs.push(("tag", &tag));
    }
    if let Some(m) = &a.message {
        pairs.push(("message", m));
    }
    if let Some(p) = &a.platform {
        pairs.push(("platform", p));
    }
    for c in &a.change {
        pairs.push(("changes", c));
    }
    let path = format!("/images/create?{}", query(&pairs));
    let body = if is_url {
        RequestBody::Empty
    } else if a.source == "-" {
        RequestBody::Reader {
            reader: Box::new(tokio::io::stdin()),
            content_type: "application/x-tar",
        }
    } else {
        let f = tokio::fs::File::open(&a.source)
            .await
            .map_err(|e| CliError::Precondition(format!("open {}: {}", a.source, io_msg(&e))))?;
        RequestBody::Reader {
            reader: Box::new(f),
            content_type: "application/x-tar",
        }
    };
    let mut s = client.stream(hyper::Method::POST, &path, body).await?;
    while let Some(m) = s.next_json::<JsonMessage>().await? {
        if let Some(e) = m.error.or(m.error_detail.map(|d| d.message)) {
            return Err(CliError::Stream(e));
        }
        if let Some(status) = m.status {
            outln!("{status}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_table_like_docker() {
        let img = ImageSummary {
            id: "sha256:0123456789abcdef".into(),
            repo_tags: vec!["busybox:latest".into(), "localhost:5000/bb:v1".into()],
            created: chrono::Utc::now().timestamp() - 3 * 86400,
            size: 4_257_000,
            ..ImageSummary::default()
        };
        let rows = image_rows(&img, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["Repository"], "localhost:5000/bb");
        let out = render_rows(
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
            &image_headers(),
            &rows[..1],
        )
        .unwrap();
        assert_eq!(
            out,
            "REPOSITORY   TAG       IMAGE ID       CREATED      SIZE\nbusybox      latest    0123456789ab   3 days ago   4.26MB\n"
        );
        let none = image_rows(&ImageSummary::default(), true);
        assert_eq!(none[0]["Repository"], "<none>");
    }
}
