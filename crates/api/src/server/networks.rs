//! `/networks/...`: list, inspect, create, connect, disconnect, remove, prune, with Docker's
//! shapes; and the network parts of container inspect and list.

use std::collections::BTreeMap;

use berth_engine::ContainerRecord;
use berth_engine::networks::{CreateNetwork, EndpointState, IpamRequest, NetworkRecord};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::json;
use super::{ApiError, Ctx, HandlerResult, Req, ok_json};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfigBody {
    subnet: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
    gateway: String,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    driver: String,
    config: Option<Vec<IpamConfigBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    internal: bool,
    attachable: bool,
    scope: String,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// `EndpointSettings` as create and connect bodies carry it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct EndpointBody {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
    aliases: Option<Vec<String>>,
    links: Option<Vec<String>>,
    mac_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    ipv6_address: String,
}

impl EndpointBody {
    fn into_state(self) -> EndpointState {
        let ipam = self.ipam_config.unwrap_or_default();
        EndpointState {
            aliases: self.aliases.unwrap_or_default(),
            links: self.links.unwrap_or_default(),
            requested_ipv4: ipam.ipv4_address,
            requested_ipv6: ipam.ipv6_address,
            requested_mac: self.mac_address,
            ..Default::default()
        }
    }
}

/// `NetworkingConfig.EndpointsConfig` of a create body, by network name.
pub(super) fn endpoints_of(
    networking: Option<&Value>,
) -> Result<BTreeMap<String, EndpointState>, ApiError> {
    let Some(cfg) = networking.and_then(|n| n.get("EndpointsConfig")) else {
        return Ok(BTreeMap::new());
    };
    if cfg.is_null() {
        return Ok(BTreeMap::new());
    }
    let map: BTreeMap<String, Option<EndpointBody>> = serde_json::from_value(cfg.clone())
        .map_err(|e| ApiError::bad(format!("invalid NetworkingConfig: {e}")))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default().into_state()))
        .collect())
}

/// A network as inspect and list show it (list leaves `Containers` empty, as Docker).
fn view(ctx: &Ctx, n: &NetworkRecord, with_containers: bool, r: &Req) -> Value {
    let config: Vec<Value> = n
        .ipam
        .iter()
        .map(|c| {
            let mut v = serde_json::Map::new();
            if let Some(s) = c.subnet {
                v.insert("Subnet".into(), json!(s.to_string()));
            }
            if let Some(r) = c.ip_range {
                v.insert("IPRange".into(), json!(r.to_string()));
            }
            let implied = c.subnet.is_some_and(|s| n.implied_gateways.contains(&s));
            if let Some(g) = c.gateway.filter(|_| !implied) {
                v.insert("Gateway".into(), json!(g.to_string()));
            }
            if !c.aux_addresses.is_empty() {
                v.insert("AuxiliaryAddresses".into(), json!(c.aux_addresses));
            }
            Value::Object(v)
        })
        .collect();
    let mut containers = serde_json::Map::new();
    if with_containers {
        for (id, name, ep) in ctx.engine.network_endpoints(&n.id) {
            let v4 = if ep.ip_address.is_empty() {
                String::new()
            } else {
                format!("{}/{}", ep.ip_address, ep.ip_prefix_len)
            };
            let v6 = if ep.global_ipv6_address.is_empty() {
                String::new()
            } else {
                format!("{}/{}", ep.global_ipv6_address, ep.global_ipv6_prefix_len)
            };
            containers.insert(
                id,
                json!({"Name": name, "EndpointID": ep.endpoint_id, "MacAddress": ep.mac_address,
                       "IPv4Address": v4, "IPv6Address": v6}),
            );
        }
    }
    let user = !n.predefined;
    let mut v = json!({
        "Name": n.name, "Id": n.id,
        "Created": n.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "Scope": "local", "Driver": n.driver, "EnableIPv6": n.enable_ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": if user { json!({}) } else { Value::Null },
            "Config": config,
        },
        "Internal": n.internal, "Attachable": n.attachable, "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    });
    // 1.47: whether IPv4 is on (always, in Berth).
    if r.at_least(1, 47) {
        v["EnableIPv4"] = json!(n.driver == "bridge" || n.driver == "host");
    }
    v
}

pub(super) fn list(ctx: &Ctx, r: &Req) -> HandlerResult {
    let nets = ctx.engine.network_list(&r.filters()?)?;
    // Before 1.28 the list showed each network's containers, as inspect does.
    let rows: Vec<Value> = nets
        .iter()
        .map(|n| view(ctx, n, !r.at_least(1, 28), r))
        .collect();
    ok_json(&rows)
}

pub(super) fn inspect(ctx: &Ctx, r: &Req, key: &str) -> HandlerResult {
    let n = ctx.engine.network_inspect(key)?;
    ok_json(&view(ctx, &n, true, r))
}

pub(super) async fn create(ctx: &Ctx, r: &mut Req) -> HandlerResult {
    let body: CreateBody = r.json().await?;
    if body.name.is_empty() {
        return Err(ApiError::bad("network name is required"));
    }
    // Outside a swarm, as dockerd: swarm-scoped and overlay networks need one.
    if body.scope == "swarm" {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "cannot create a swarm scoped network when swarm is not active".into(),
        });
    }
    if body.driver == "overlay" {
        return Err(super::swarm::not_a_manager());
    }
    let ipam = body.ipam.unwrap_or_default();
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(ApiError::not_found(format!(
            "plugin \"{}\" not found",
            ipam.driver
        )));
    }
    let rec = ctx
        .engine
        .network_create(CreateNetwork {
            name: body.name,
            driver: body.driver,
            internal: body.internal,
            attachable: body.attachable,
            enable_ipv6: body.enable_ipv6.unwrap_or(false),
            labels: body.labels.unwrap_or_default(),
            options: body.options.unwrap_or_default(),
            ipam: ipam
                .config
                .unwrap_or_default()
                .into_iter()
                .map(|c| IpamRequest {
                    subnet: c.subnet,
                    ip_range: c.ip_range,
                    gateway: c.gateway,
                    aux_addresses: c.auxiliary_addresses.unwrap_or_default(),
                })
                .collect(),
        })
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"Id": rec.id, "Warning": ""}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointBody>,
    force: bool,
}

pub(super) async fn connect(ctx: &Ctx, r: &mut Req, key: &str) -> HandlerResult {
    let body: ConnectBody = r.json().await?;
    let ep = body.endpoint_config.unwrap_or_default().into_state();
    ctx.engine.network_connect(key, &body.container, ep).await?;
    Ok(json(StatusCode::OK, &Value::Null))
}

pub(super) async fn disconnect(ctx: &Ctx, r: &mut Req, key: &str) -> HandlerResult {
    let body: ConnectBody = r.json().await?;
    ctx.engine
        .network_disconnect(key, &body.container, body.force)
        .await?;
    Ok(json(StatusCode::OK, &Value::Null))
}

pub(super) async fn remove(ctx: &Ctx, key: &str) -> HandlerResult {
    ctx.engine.network_remove(key).await?;
    Ok(super::body::empty(StatusCode::NO_CONTENT))
}

pub(super) async fn prune(ctx: &Ctx, r: &Req) -> HandlerResult {
    let f = super::containers::prune_filters(r, &[])?;
    let names = ctx
        .engine
        .network_prune(f.until, &f.labels, &f.not_labels)
        .await?;
    ok_json(&json!({ "NetworksDeleted": names }))
}

/// One endpoint as `NetworkSettings.Networks.<name>` shows it, in inspect (and, less its
/// names, in the list).
fn endpoint_view(ctx: &Ctx, rec: &ContainerRecord, ep: &EndpointState, r: &Req) -> Value {
    let running = rec.state.is_running();
    let user = ctx.engine.network_is_user_defined(&ep.network_id);
    // Up to API 1.44 the short id follows the aliases given; from 1.45 it is in
    // `DNSNames` only, and `Aliases` is what the client asked for.
    let mut aliases: Vec<String> = ep.aliases.clone();
    if user && running && !r.at_least(1, 45) && !aliases.iter().any(|a| a == rec.short_id()) {
        aliases.push(rec.short_id().to_owned());
    }
    let ipam = if ep.requested_ipv4.is_empty() && ep.requested_ipv6.is_empty() {
        Value::Null
    } else {
        json!({"IPv4Address": ep.requested_ipv4, "IPv6Address": ep.requested_ipv6})
    };
    let mut v = json!({
        "IPAMConfig": ipam,
        "Links": if ep.links.is_empty() { Value::Null } else { json!(ep.links) },
        "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
        // Set when the container first joins (moby: empty until its first start).
        "NetworkID": if rec.has_been_started { ep.network_id.as_str() } else { "" },
        "EndpointID": ep.endpoint_id, "Gateway": ep.gateway,
        "IPAddress": ep.ip_address, "IPPrefixLen": ep.ip_prefix_len,
        "IPv6Gateway": ep.ipv6_gateway, "GlobalIPv6Address": ep.global_ipv6_address,
        "GlobalIPv6PrefixLen": ep.global_ipv6_prefix_len, "MacAddress": ep.mac_address,
        "DriverOpts": null,
    });
    if r.at_least(1, 44) {
        // moby's order: name, aliases, short id, hostname; each once.
        let mut dns: Vec<String> = Vec::new();
        if user && running {
            let hostname = &rec.config.hostname;
            for n in std::iter::once(&rec.name)
                .chain(&ep.aliases)
                .map(String::as_str)
                .chain([rec.short_id(), hostname.as_str()])
            {
                if !n.is_empty() && !dns.iter().any(|d| d == n) {
                    dns.push(n.to_owned());
                }
            }
        }
        v["DNSNames"] = if dns.is_empty() {
            Value::Null
        } else {
            json!(dns)
        };
    }
    v
}

/// The container's network namespace file (inspect's `SandboxKey`).
fn sandbox_path(ctx: &Ctx, id: &str) -> std::path::PathBuf {
    ctx.engine.config().exec_root.join("netns").join(id)
}

/// Whether the container's network namespace file is there (while it runs, after its
/// network is set up).
pub(super) fn sandbox_exists(ctx: &Ctx, id: &str) -> bool {
    sandbox_path(ctx, id).exists()
}

/// `NetworkSettings` of container inspect.
pub(super) fn settings(ctx: &Ctx, rec: &ContainerRecord, r: &Req) -> Value {
    let running = rec.state.is_running();
    let mut networks = serde_json::Map::new();
    for (name, ep) in &rec.networks {
        networks.insert(name.clone(), endpoint_view(ctx, rec, ep, r));
    }
    if rec.networks.is_empty() && rec.host_config.network_mode() == "bridge" {
        // The default bridge turned off: the container is on loopback only.
        networks.insert("bridge".into(), json!({}));
    }
    let default = rec.networks.get("bridge").cloned().unwrap_or_default();
    let mut ports = serde_json::Map::new();
    if running {
        for key in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            ports.insert(key.clone(), Value::Null);
        }
        for key in rec.host_config.port_bindings.iter().flat_map(|m| m.keys()) {
            ports.entry(key.clone()).or_insert(Value::Null);
        }
        for p in &rec.published {
            let key = format!("{}/{}", p.container_port, p.protocol.as_str());
            let entry = ports.entry(key).or_insert(Value::Null);
            if entry.is_null() {
                *entry = json!([]);
            }
            if let Some(list) = entry.as_array_mut() {
                list.push(
                    json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}),
                );
            }
        }
    }
    let sandbox = if running && sandbox_exists(ctx, &rec.id) {
        sandbox_path(ctx, &rec.id).display().to_string()
    } else {
        String::new()
    };
    json!({
        "Bridge": "", "SandboxID": if sandbox.is_empty() { String::new() } else { rec.id.clone() },
        "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports, "SandboxKey": sandbox,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
        "EndpointID": default.endpoint_id, "Gateway": default.gateway,
        "GlobalIPv6Address": default.global_ipv6_address,
        "GlobalIPv6PrefixLen": default.global_ipv6_prefix_len,
        "IPAddress": default.ip_address, "IPPrefixLen": default.ip_prefix_len,
        "IPv6Gateway": default.ipv6_gateway, "MacAddress": default.mac_address,
        "Networks": networks,
    })
}

/// `Ports` of a container list row.
pub(super) fn summary_ports(rec: &ContainerRecord) -> Vec<crate::models::Port> {
    rec.listed_ports()
        .into_iter()
        .map(|p| crate::models::Port {
            ip: p.public.map(|(ip, _)| ip.to_string()),
            private_port: p.private_port,
            public_port: p.public.map(|(_, port)| port),
            kind: p.protocol.as_str().into(),
        })
        .collect()
}

/// `NetworkSettings.Networks` of a list row: the same endpoints as inspect shows.
/// moby's list copies an endpoint's addresses and ids only: no aliases, links or DNS names.
pub(super) fn summary_networks(
    ctx: &Ctx,
    rec: &ContainerRecord,
    r: &Req,
) -> BTreeMap<String, Value> {
    rec.networks
        .iter()
        .map(|(name, ep)| {
            let mut v = endpoint_view(ctx, rec, ep, r);
            for key in ["Aliases", "Links", "DNSNames"] {
                if let Some(x) = v.get_mut(key) {
                    *x = Value::Null;
                }
            }
            (name.clone(), v)
        })
        .collect()
}
