//! A fake Kubernetes API server (plain HTTP on 127.0.0.1) answering the three reads the CSI
//! provider makes: a service account (for its IRSA role annotation), a pod (for its node) and a
//! node (for its region label), shaped as the real API answers them, with `Status` objects for
//! what it does not hold.
//!
//! It records the path of every request and whether it carried an `Authorization` header, never
//! the header's value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::jwt::uid;
use super::local_server::{Answer, LocalServer, json_answer};

/// The annotation IRSA reads a service account's role from.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The well-known label of a node's region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

#[derive(Default)]
struct State {
    /// (namespace, name) → role ARN annotation.
    service_accounts: HashMap<(String, String), Option<String>>,
    /// (namespace, name) → node name.
    pods: HashMap<(String, String), String>,
    /// name → region label.
    nodes: HashMap<String, Option<String>>,
    /// Path, and whether an Authorization header came with it.
    requests: Vec<(String, bool)>,
    failing: bool,
}

pub struct FakeKube {
    state: Arc<Mutex<State>>,
    server: LocalServer,
}

impl FakeKube {
    pub fn start() -> FakeKube {
        let state: Arc<Mutex<State>> = Arc::default();
        let by_server = Arc::clone(&state);
        let server = LocalServer::start("fake kube", move |parts| {
            answer(&mut by_server.lock().unwrap(), parts)
        });
        FakeKube { state, server }
    }

    /// `http://127.0.0.1:PORT`, the API server's address.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Adds or replaces a service account; `role_arn` becomes its IRSA annotation.
    pub fn add_service_account(&self, namespace: &str, name: &str, role_arn: Option<&str>) {
        self.state.lock().unwrap().service_accounts.insert(
            (namespace.to_owned(), name.to_owned()),
            role_arn.map(str::to_owned),
        );
    }

    /// Adds or replaces a pod scheduled on `node_name`.
    pub fn add_pod(&self, namespace: &str, name: &str, node_name: &str) {
        self.state.lock().unwrap().pods.insert(
            (namespace.to_owned(), name.to_owned()),
            node_name.to_owned(),
        );
    }

    /// Adds or replaces a node; `region` becomes its region label.
    pub fn add_node(&self, name: &str, region: Option<&str>) {
        self.state
            .lock()
            .unwrap()
            .nodes
            .insert(name.to_owned(), region.map(str::to_owned));
    }

    /// The paths requested (without query), in order.
    pub fn requests(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.requests.iter().map(|(p, _)| p.clone()).collect()
    }

    /// For each request, in order: whether it carried an `Authorization` header.
    pub fn authorized(&self) -> Vec<bool> {
        let state = self.state.lock().unwrap();
        state.requests.iter().map(|(_, a)| *a).collect()
    }

    /// While true, every request is answered 500 (an API server in trouble).
    pub fn set_failing(&self, failing: bool) {
        self.state.lock().unwrap().failing = failing;
    }
}

fn answer(state: &mut State, parts: &Parts) -> Answer {
    let path = parts.uri.path().to_owned();
    let authorized = parts.headers.contains_key(AUTHORIZATION);
    state.requests.push((path.clone(), authorized));
    if state.failing {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "an error on the server (\"fake failure\") has prevented the request from succeeding"
                .to_owned(),
            None,
        );
    }
    let segments: Vec<&str> = match path.strip_prefix("/api/v1/") {
        Some(rest) => rest.split('/').collect(),
        None => Vec::new(),
    };
    let (resource, namespace, name) = match segments[..] {
        [
            "namespaces",
            ns,
            resource @ ("serviceaccounts" | "pods"),
            name,
        ] if !ns.is_empty() && !name.is_empty() => (resource, Some(ns), name),
        ["nodes", name] if !name.is_empty() => ("nodes", None, name),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource".to_owned(),
                None,
            );
        }
    };
    if parts.method != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_owned(),
            None,
        );
    }
    let key = |ns: Option<&str>| (ns.unwrap_or_default().to_owned(), name.to_owned());
    let object = match resource {
        "serviceaccounts" => state.service_accounts.get(&key(namespace)).map(|role_arn| {
            let mut metadata = metadata("ServiceAccount", namespace, name);
            if let Some(arn) = role_arn {
                metadata.insert(
                    "annotations".to_owned(),
                    json!({ ROLE_ARN_ANNOTATION: arn }),
                );
            }
            json!({"kind": "ServiceAccount", "apiVersion": "v1", "metadata": metadata})
        }),
        "pods" => state.pods.get(&key(namespace)).map(|node_name| {
            json!({
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": metadata("Pod", namespace, name),
                "spec": {"nodeName": node_name},
                "status": {"phase": "Running"},
            })
        }),
        _ => state.nodes.get(name).map(|region| {
            // Real nodes always carry their hostname label.
            let mut labels = Map::new();
            labels.insert("kubernetes.io/hostname".to_owned(), name.into());
            if let Some(region) = region {
                labels.insert(REGION_LABEL.to_owned(), region.as_str().into());
            }
            let mut metadata = metadata("Node", None, name);
            metadata.insert("labels".to_owned(), labels.into());
            json!({"kind": "Node", "apiVersion": "v1", "metadata": metadata})
        }),
    };
    match object {
        Some(object) => json_answer(StatusCode::OK, &object),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource} \"{name}\" not found"),
            Some(json!({"name": name, "kind": resource})),
        ),
    }
}

/// An object's metadata: name, namespace when namespaced, and a uid (the one a token of a
/// service account names, see `jwt::uid`) and resourceVersion that stay the same.
fn metadata(kind: &str, namespace: Option<&str>, name: &str) -> Map<String, Value> {
    let uid = uid(kind, namespace, name);
    let resource_version = u64::from_str_radix(&uid[..8], 16).unwrap_or(1) % 100_000;
    let mut metadata = Map::new();
    metadata.insert("name".to_owned(), name.into());
    if let Some(namespace) = namespace {
        metadata.insert("namespace".to_owned(), namespace.into());
    }
    metadata.insert("uid".to_owned(), uid.into());
    metadata.insert(
        "resourceVersion".to_owned(),
        resource_version.to_string().into(),
    );
    metadata.insert(
        "creationTimestamp".to_owned(),
        "2026-01-01T00:00:00Z".into(),
    );
    metadata
}

/// A `Status` object, as the API server answers a failure.
fn status(code: StatusCode, reason: &str, message: String, details: Option<Value>) -> Answer {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    json_answer(code, &body)
}
