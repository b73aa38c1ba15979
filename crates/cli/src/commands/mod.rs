//! One module per command group; each command is an `async fn` returning its exit status.

pub mod build;
pub mod build_view;
pub mod container;
pub mod cp;
pub mod exec;
pub mod image;
pub mod network;
pub mod registry;
pub mod run;
pub mod stats;
pub mod system;
pub mod transfer;
pub mod volume;

use crate::error::{CliError, Result};

/// Percent-encodes a path segment (container names, ids); keeps `/` only when `keep_slash`.
fn escape(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric() || "-._~:@+".contains(c) || (keep_slash && c == '/') {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A container reference as a path segment (a leading `/` of a name is dropped).
pub fn seg(s: &str) -> String {
    escape(s.strip_prefix('/').unwrap_or(s), false)
}

/// An image reference as path segments (`/` kept: `library/busybox`).
pub fn image_seg(s: &str) -> String {
    escape(s, true)
}

/// Runs `op` for each name: prints the name on success and the error on failure (Docker's
/// multi-container commands), failing with [`CliError::Partial`] if any failed.
pub async fn for_each<F, Fut>(names: &[String], print: bool, mut op: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for name in names {
        match op(name.clone()).await {
            Ok(()) => {
                if print {
                    outln!("{name}");
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

/// `volume inspect`, `network inspect`...: each name fetched from `path(name)`, printed as
/// one JSON array (or a `--format` line each); the errors of missing ones after, and a
/// failure status if any.
pub async fn inspect_each(
    client: &berth_api::client::Client,
    names: &[String],
    format: Option<&str>,
    path: impl Fn(&str) -> String,
) -> Result<i32> {
    let tmpl = match format {
        Some(f) if !f.is_empty() => Some(crate::template::Template::parse(
            &crate::template::preprocess(f).0,
        )?),
        _ => None,
    };
    let mut found = Vec::new();
    let mut failed = false;
    for name in names {
        match client.get::<serde_json::Value>(&path(name)).await {
            Ok(v) => found.push(v),
            Err(e) => {
                failed = true;
                eprintln!("{}", CliError::from(e));
            }
        }
    }
    match &tmpl {
        Some(t) => {
            for v in &found {
                outln!("{}", t.render(v)?);
            }
        }
        None => outln!("{}", json_array(&found)),
    }
    if failed {
        Err(CliError::Partial)
    } else {
        Ok(0)
    }
}

/// Prints values as Docker's `inspect` does: a JSON array indented with four spaces, with
/// `<`, `>` and `&` escaped like Go's encoder.
pub fn json_array(values: &[serde_json::Value]) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if serde::Serialize::serialize(values, &mut ser).is_err() {
        return "[]".to_owned();
    }
    String::from_utf8_lossy(&out)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments() {
        assert_eq!(seg("/web"), "web");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(image_seg("localhost:5000/x:y"), "localhost:5000/x:y");
    }

    #[test]
    fn inspect_json() {
        assert_eq!(json_array(&[]), "[]");
        let v = serde_json::json!({"A": "<x>", "B": [1]});
        assert_eq!(
            json_array(&[v]),
            "[\n    {\n        \"A\": \"\\u003cx\\u003e\",\n        \"B\": [\n            1\n        ]\n    }\n]"
        );
    }
}
