//! `regmirror show`'s output: the validated spec in a stable, documented JSON schema
//! (`regmirror.show/v1`): hosts and targets as the strings users write, the endpoint URLs
//! regmirror writes for each mirror, PASSWORD as `***`. Pure.

use serde::Serialize;

use crate::render::legacy::endpoint_list;
use crate::spec::RegistrySpec;

/// The schema name; bumped on any incompatible change.
pub const SCHEMA: &str = "regmirror.show/v1";

#[derive(Debug, Serialize)]
pub struct ShowMirror {
    /// `docker.io`, `registry.example.com:5000`, or `*` for the wildcard.
    pub source: String,
    /// As written after normalisation (`harbor.example.org/airgap-images/docker.io`), `null` for
    /// "no mirror".
    pub target: Option<String>,
    /// The URLs containerd is pointed at, in order.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ShowCa {
    pub certificates: usize,
    pub subjects: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ShowContainerd {
    /// `null` when unknown.
    pub version: Option<String>,
    /// What was learnt and how, or why not.
    pub decided_for: String,
}

#[derive(Debug, Serialize)]
pub struct Show {
    pub schema: &'static str,
    pub domain: String,
    pub base_path: Option<String>,
    pub username: Option<String>,
    /// `***` when a password is set, `null` otherwise: never the value.
    pub password: Option<&'static str>,
    pub insecure: bool,
    pub ca_cert: Option<ShowCa>,
    pub mirrors: Vec<ShowMirror>,
    pub spec_hash: String,
    pub containerd: ShowContainerd,
    pub warnings: Vec<String>,
}

/// The view of `spec` for the node's containerd `runtime`.
pub fn show(spec: &RegistrySpec, runtime: &crate::runtime::Runtime) -> Show {
    Show {
        schema: SCHEMA,
        domain: spec.domain.to_string(),
        base_path: spec.base_path.clone(),
        username: spec.credentials.as_ref().map(|c| c.username.clone()),
        password: spec.credentials.as_ref().map(|_| "***"),
        insecure: spec.insecure,
        ca_cert: spec.ca.as_ref().map(|c| ShowCa {
            certificates: c.subjects.len(),
            subjects: c.subjects.clone(),
        }),
        mirrors: spec
            .mirrors
            .iter()
            .map(|m| ShowMirror {
                source: m.source.to_string(),
                target: m.target.as_ref().map(|t| t.to_string()),
                endpoints: endpoint_list(spec, m.target.as_ref()),
            })
            .collect(),
        spec_hash: spec.hash(),
        containerd: ShowContainerd {
            version: runtime.version.map(|v| v.to_string()),
            decided_for: runtime.to_string(),
        },
        warnings: spec.warnings.clone(),
    }
}
