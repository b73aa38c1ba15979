//! Docker's seccomp profile format turned into the OCI `linux.seccomp` object.
//!
//! Docker's profiles (`profiles/moby-default.json` is Docker's own default, embedded) carry
//! conditions the OCI format lacks: an `archMap`, and per-rule `includes`/`excludes` on
//! capabilities, architectures and kernel versions. They are resolved here, for this host and
//! the container's capabilities, exactly as Docker does before handing the spec to runc.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::RuntimeError;

/// Docker's default profile (Apache-2.0, see profiles/NOTICE).
pub const DEFAULT_PROFILE: &str = include_str!("../profiles/moby-default.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Value>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The host's architecture as Docker's profiles name it (`amd64`, `arm64`...).
fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The host's seccomp architecture name (`SCMP_ARCH_X86_64`...).
fn native_scmp_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "x86" => "SCMP_ARCH_X86",
        "arm" => "SCMP_ARCH_ARM",
        "s390x" => "SCMP_ARCH_S390X",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Converts a Docker-format profile into the OCI `linux.seccomp` JSON for a container holding
/// `caps` (OCI names) on this host.
pub fn to_oci(profile_json: &str, caps: &[String]) -> Result<Value, RuntimeError> {
    to_oci_for(
        profile_json,
        caps,
        native_arch(),
        native_scmp_arch(),
        kernel_version(),
    )
}

fn to_oci_for(
    profile_json: &str,
    caps: &[String],
    arch: &str,
    scmp_arch: &str,
    kernel: (u32, u32),
) -> Result<Value, RuntimeError> {
    let profile: Profile =
        serde_json::from_str(profile_json).map_err(|e| RuntimeError::Seccomp(e.to_string()))?;
    let mut arches: Vec<String> = Vec::new();
    if let Some(map) = &profile.arch_map {
        for m in map.iter().filter(|m| m.architecture == scmp_arch) {
            arches.push(m.architecture.clone());
            arches.extend(m.sub_architectures.clone().unwrap_or_default());
        }
    } else if let Some(a) = &profile.architectures {
        arches = a.clone();
    }
    let mut syscalls = Vec::new();
    for rule in profile.syscalls.unwrap_or_default() {
        let inc = rule.includes.unwrap_or_default();
        let exc = rule.excludes.unwrap_or_default();
        if inc
            .arches
            .as_ref()
            .is_some_and(|a| !a.iter().any(|x| x == arch))
        {
            continue;
        }
        if inc
            .caps
            .as_ref()
            .is_some_and(|c| !c.iter().all(|x| caps.contains(x)))
        {
            continue;
        }
        if let Some(k) = &inc.min_kernel {
            let want = parse_version(k)
                .ok_or_else(|| RuntimeError::Seccomp(format!("bad minKernel {k:?}")))?;
            if kernel < want {
                continue;
            }
        }
        if exc
            .arches
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == arch))
        {
            continue;
        }
        if exc
            .caps
            .as_ref()
            .is_some_and(|c| c.iter().any(|x| caps.contains(x)))
        {
            continue;
        }
        let mut names = rule.names.unwrap_or_default();
        names.extend(rule.name);
        if names.is_empty() {
            continue;
        }
        let mut out = json!({ "names": names, "action": rule.action });
        if let Some(e) = rule.errno_ret {
            out["errnoRet"] = json!(e);
        }
        if let Some(args) = rule.args.filter(|a| !a.is_empty()) {
            out["args"] = Value::Array(args);
        }
        syscalls.push(out);
    }
    let mut out = json!({
        "defaultAction": profile.default_action,
        "architectures": arches,
        "syscalls": syscalls,
    });
    if let Some(e) = profile.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<String> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_owned())
            })
            .collect()
    }

    #[test]
    fn default_profile_resolves_for_default_caps() {
        let caps: Vec<String> = crate::defaults::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let v = to_oci_for(DEFAULT_PROFILE, &caps, "amd64", "SCMP_ARCH_X86_64", (6, 1)).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["architectures"][0], "SCMP_ARCH_X86_64");
        let n = names(&v);
        assert!(n.contains(&"read".to_owned()));
        assert!(
            n.contains(&"chroot".to_owned()),
            "CAP_SYS_CHROOT is a default cap"
        );
        assert!(
            !n.contains(&"mount".to_owned()),
            "mount needs CAP_SYS_ADMIN"
        );
        assert!(!n.contains(&"reboot".to_owned()));
        // clone3 is refused with ENOSYS without CAP_SYS_ADMIN.
        let clone3 = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"].as_array().unwrap().iter().any(|x| x == "clone3"))
            .unwrap();
        assert_eq!(clone3["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3["errnoRet"], 38);
    }

    #[test]
    fn sys_admin_unlocks_mount() {
        let caps = vec!["CAP_SYS_ADMIN".to_owned()];
        let v = to_oci_for(DEFAULT_PROFILE, &caps, "amd64", "SCMP_ARCH_X86_64", (6, 1)).unwrap();
        assert!(names(&v).contains(&"mount".to_owned()));
    }

    #[test]
    fn converts_into_the_oci_type() {
        let v = to_oci(DEFAULT_PROFILE, &[]).unwrap();
        let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(v).unwrap();
        assert!(!parsed.syscalls().as_ref().unwrap().is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(to_oci("{", &[]).is_err());
        assert!(to_oci("{\"syscalls\": 3}", &[]).is_err());
    }
}
