//! `network create|ls|inspect|rm|prune|connect|disconnect`, printed as Docker's CLI prints
//! them.

use berth_api::client::Client;
use serde_json::{Value, json};

use super::system::{confirm, deleted_section, filters_query};
use super::{for_each, inspect_each, seg};
use crate::args::{
    NetworkCmd, NetworkConnectArgs, NetworkCreateArgs, NetworkDisconnectArgs, NetworkInspectArgs,
    NetworkLsArgs, NetworkRmArgs, PruneArgs,
};
use crate::error::{CliError, Result};
use crate::format::short_id;
use crate::opts::parse_kv;
use crate::template::render_rows;

pub async fn execute(client: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(client, a).await,
        NetworkCmd::Ls(a) => ls(client, a).await,
        NetworkCmd::Inspect(a) => inspect(client, a).await,
        NetworkCmd::Rm(a) => rm(client, a).await,
        NetworkCmd::Prune(a) => prune(client, a).await,
        NetworkCmd::Connect(a) => connect(client, a).await,
        NetworkCmd::Disconnect(a) => disconnect(client, a).await,
    }
}

/// The IPAM config entries of `--subnet`, `--ip-range`, `--gateway`, `--aux-address`: each
/// range, gateway and aux address goes with the subnet that contains it.
fn ipam_configs(a: &NetworkCreateArgs) -> Result<Vec<Value>> {
    let contains = |subnet: &str, ip: &str| -> bool {
        match (
            subnet.parse::<ipnet_lite::Net>(),
            ip.split('/')
                .next()
                .unwrap_or(ip)
                .parse::<std::net::IpAddr>(),
        ) {
            (Ok(n), Ok(ip)) => n.contains(ip),
            _ => false,
        }
    };
    if a.subnet.is_empty() && (!a.gateway.is_empty() || !a.ip_range.is_empty()) {
        return Err(CliError::Precondition(
            "every ip-range or gateway must have a corresponding subnet".into(),
        ));
    }
    let mut out = Vec::new();
    for s in &a.subnet {
        let mut c = json!({ "Subnet": s });
        if let Some(r) = a.ip_range.iter().find(|r| contains(s, r)) {
            c["IPRange"] = json!(r);
        }
        if let Some(g) = a.gateway.iter().find(|g| contains(s, g)) {
            c["Gateway"] = json!(g);
        }
        let aux: serde_json::Map<String, Value> = a
            .aux_address
            .iter()
            .filter_map(|x| x.split_once('='))
            .filter(|(_, ip)| contains(s, ip))
            .map(|(k, ip)| (k.to_owned(), json!(ip)))
            .collect();
        if !aux.is_empty() {
            c["AuxiliaryAddresses"] = Value::Object(aux);
        }
        out.push(c);
    }
    for (what, list) in [("ip-range", &a.ip_range), ("gateway", &a.gateway)] {
        for x in list.iter() {
            if !a.subnet.iter().any(|s| contains(s, x)) {
                return Err(CliError::Precondition(format!(
                    "no matching subnet for {what} {x}"
                )));
            }
        }
    }
    Ok(out)
}

/// Just enough CIDR parsing to pair ranges and gateways with their subnets.
mod ipnet_lite {
    use std::net::IpAddr;

    pub struct Net {
        addr: IpAddr,
        prefix: u8,
    }

    impl std::str::FromStr for Net {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let (a, p) = s.split_once('/').ok_or(())?;
            Ok(Self {
                addr: a.parse().map_err(|_| ())?,
                prefix: p.parse().map_err(|_| ())?,
            })
        }
    }

    impl Net {
        pub fn contains(&self, ip: IpAddr) -> bool {
            match (self.addr, ip) {
                (IpAddr::V4(n), IpAddr::V4(i)) if self.prefix <= 32 => {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(self.prefix))
                        .unwrap_or(0);
                    u32::from(n) & mask == u32::from(i) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(i)) if self.prefix <= 128 => {
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(self.prefix))
                        .unwrap_or(0);
                    u128::from(n) & mask == u128::from(i) & mask
                }
                _ => false,
            }
        }
    }
}

async fn create(client: &Client, a: NetworkCreateArgs) -> Result<i32> {
    let body = json!({
        "Name": a.name,
        "CheckDuplicate": true,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "EnableIPv6": a.ipv6,
        "IPAM": { "Driver": "default", "Config": ipam_configs(&a)?, "Options": {} },
        "Options": parse_kv(&a.opt),
        "Labels": parse_kv(&a.label),
    });
    let v: Value = client.post("/networks/create", Some(&body)).await?;
    outln!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(0)
}

async fn ls(client: &Client, a: NetworkLsArgs) -> Result<i32> {
    let v: Value = client
        .get(&filters_query("/networks", &a.filter, None)?)
        .await?;
    let mut nets: Vec<Value> = v.as_array().cloned().unwrap_or_default();
    nets.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let id = |n: &Value| {
        let id = n["Id"].as_str().unwrap_or_default();
        if a.no_trunc {
            id.to_owned()
        } else {
            short_id(id)
        }
    };
    if a.quiet {
        for n in &nets {
            outln!("{}", id(n));
        }
        return Ok(0);
    }
    let rows: Vec<Value> = nets
        .iter()
        .map(|n| {
            let labels: Vec<String> = n["Labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
                .collect();
            json!({
                "ID": id(n), "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                "IPv6": n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                "Labels": labels.join(","), "CreatedAt": n["Created"],
            })
        })
        .collect();
    let format = match a.format.as_deref() {
        Some(f) if !f.is_empty() && f != "table" => f.to_owned(),
        _ => "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}".to_owned(),
    };
    let headers = json!({
        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
        "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED",
    });
    out!("{}", render_rows(&format, &headers, &rows)?);
    Ok(0)
}

async fn inspect(client: &Client, a: NetworkInspectArgs) -> Result<i32> {
    inspect_each(client, &a.networks, a.format.as_deref(), |n| {
        format!("/networks/{}", seg(n))
    })
    .await
}

async fn rm(client: &Client, a: NetworkRmArgs) -> Result<i32> {
    let force = a.force;
    for_each(&a.networks, true, |name| {
        let path = format!("/networks/{}", seg(&name));
        async move {
            match client.delete::<()>(&path).await {
                Err(e) if force && e.is_not_found() => Ok(()),
                other => Ok(other?),
            }
        }
    })
    .await
}

async fn prune(client: &Client, a: PruneArgs) -> Result<i32> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return Ok(0);
    }
    let v: Value = client
        .post(
            &filters_query("/networks/prune", &a.filter, None)?,
            None::<&Value>,
        )
        .await?;
    let names: Vec<String> = v["NetworksDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect();
    out!("{}", deleted_section("Deleted Networks:", &names));
    Ok(0)
}

async fn connect(client: &Client, a: NetworkConnectArgs) -> Result<i32> {
    let mut ep = json!({});
    if a.ip.is_some() || a.ip6.is_some() {
        ep["IPAMConfig"] = json!({
            "IPv4Address": a.ip.unwrap_or_default(),
            "IPv6Address": a.ip6.unwrap_or_default(),
        });
    }
    if !a.alias.is_empty() {
        ep["Aliases"] = json!(a.alias);
    }
    let body = json!({ "Container": a.container, "EndpointConfig": ep });
    let _: Value = client
        .post(
            &format!("/networks/{}/connect", seg(&a.network)),
            Some(&body),
        )
        .await?;
    Ok(0)
}

async fn disconnect(client: &Client, a: NetworkDisconnectArgs) -> Result<i32> {
    let body = json!({ "Container": a.container, "Force": a.force });
    let _: Value = client
        .post(
            &format!("/networks/{}/disconnect", seg(&a.network)),
            Some(&body),
        )
        .await?;
    Ok(0)
}
