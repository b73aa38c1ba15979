//! Swarm and plugin endpoints, answered as a dockerd that is not in a swarm and has no
//! plugins answers them: clients probe these (docker-py's `client.swarm` reads the 503 as "no
//! swarm", `docker plugin ls` lists nothing). Berth has no swarm mode and no plugin system,
//! so whatever would make either is refused as not implemented.

use hyper::{Method, StatusCode};

use super::{ApiError, HandlerResult, ok_json};

const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

fn unavailable(msg: &str) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: msg.to_owned(),
    }
}

/// What dockerd answers outside a swarm where a swarm manager is needed.
pub(super) fn not_a_manager() -> ApiError {
    unavailable(NOT_A_MANAGER)
}

fn not_implemented(what: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_IMPLEMENTED,
        message: format!("{what} is not supported by Berth"),
    }
}

/// `/swarm/...`, `/nodes`, `/services`, `/tasks`, `/secrets`, `/configs`; `None` for other paths.
pub(super) fn route(m: &Method, s: &[&str]) -> Option<HandlerResult> {
    let first = *s.first()?;
    Some(match (m, first, &s[1..]) {
        (&Method::POST, "swarm", ["init" | "join"]) => Err(not_implemented("swarm mode")),
        (&Method::POST, "swarm", ["leave"]) => Err(unavailable("This node is not part of a swarm")),
        (_, "swarm" | "nodes" | "services" | "tasks" | "secrets" | "configs", _) => {
            Err(unavailable(NOT_A_MANAGER))
        }
        (&Method::GET, "plugins", [] | ["privileges"]) => ok_json(&Vec::<()>::new()),
        (&Method::POST, "plugins", ["pull" | "create"]) => Err(not_implemented("plugins")),
        (_, "plugins", [name, ..]) => {
            Err(ApiError::not_found(format!("plugin \"{name}\" not found")))
        }
        _ => return None,
    })
}
