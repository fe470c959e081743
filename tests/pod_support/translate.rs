//! `packaging/kubernetes/daemonset.yaml` → the CRI calls kubelet would make for its pod on one
//! node (`RunPodSandbox` + `CreateContainer`), written once from the parsed manifest so the pod
//! test breaks when the manifest changes. What kubelet adds is done the way kubelet does it:
//! the `io.kubernetes.*` labels, the QoS cgroup parent, CPU shares/quota from requests/limits,
//! oom_score_adj -997 for `system-node-critical`, `DirectoryOrCreate` host paths, the log path,
//! the downward-API `fieldRef`s. A field this translation does not know panics ("untranslated"),
//! instead of being silently dropped.
//!
//! Not translated (no API server here): the service account token volume
//! (`automountServiceAccountToken`) and the cluster's service environment variables. The test
//! stands in for the API with a Secret volume ([`StandIn`]).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the test adds to the manifest's pod: the Secret as a mounted volume (kubelet's atomic
/// writer layout in `host_dir` on the node) and environment variables (the source switch, test
/// knobs). Each is named in the test's output.
pub struct StandIn {
    /// The Secret volume's directory on the node, and where the container sees it.
    pub secret_host_dir: String,
    pub secret_mount: String,
    pub env: Vec<(String, String)>,
}

/// An HTTP probe of the container: (`livenessProbe`|`readinessProbe`, path, port).
#[derive(Debug, Clone)]
pub struct HttpProbe {
    pub kind: &'static str,
    pub path: String,
    pub port: u16,
}

/// The pod, ready for the CRI.
pub struct PodPlan {
    pub sandbox: cri::PodSandboxConfig,
    pub container: cri::ContainerConfig,
    /// The hostPath volumes: (node path, kubelet creates it if missing).
    pub host_dirs: Vec<(String, bool)>,
    pub probes: Vec<HttpProbe>,
    /// `terminationGracePeriodSeconds` (StopContainer's timeout).
    pub grace_secs: i64,
    /// The node path of the container's log file.
    pub log_file: String,
}

/// The DaemonSet in `yaml` (the only DaemonSet of a multi-document file).
pub fn parse_daemonset(yaml: &str) -> DaemonSet {
    let mut found = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
        if v["kind"] == "DaemonSet" {
            found.push(serde_json::from_value::<DaemonSet>(v).expect("a valid DaemonSet"));
        }
    }
    assert_eq!(found.len(), 1, "one DaemonSet in the manifest");
    found.remove(0)
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    spec.expect("DaemonSet without a pod template spec")
}

/// The container's image reference.
pub fn image(ds: &DaemonSet) -> String {
    the_container(pod_spec(ds)).image.clone().expect("an image")
}

fn the_container(pod: &PodSpec) -> &Container {
    assert_eq!(
        pod.containers.len(),
        1,
        "untranslated: more than one container"
    );
    assert!(
        pod.init_containers.as_ref().is_none_or(Vec::is_empty),
        "untranslated: init containers"
    );
    &pod.containers[0]
}

/// millicores of a CPU quantity (`10m`, `0.5`, `2`).
fn millicpu(q: &str) -> i64 {
    match q.strip_suffix('m') {
        Some(m) => m
            .parse()
            .unwrap_or_else(|_| panic!("untranslated cpu {q:?}")),
        None => {
            (q.parse::<f64>()
                .unwrap_or_else(|_| panic!("untranslated cpu {q:?}"))
                * 1000.0) as i64
        }
    }
}

/// Bytes of a memory quantity (`128Mi`, `1Gi`, `64M`, `1000`).
fn bytes(q: &str) -> i64 {
    const UNITS: [(&str, i64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, mult) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<i64>().unwrap_or_else(|_| panic!("memory {q:?}")) * mult;
        }
    }
    q.parse()
        .unwrap_or_else(|_| panic!("untranslated memory {q:?}"))
}

fn ns_mode(host: Option<bool>, otherwise: cri::NamespaceMode) -> i32 {
    if host == Some(true) {
        cri::NamespaceMode::Node as i32
    } else {
        otherwise as i32
    }
}

fn http_probe(kind: &'static str, p: Option<&Probe>, c: &Container) -> Option<HttpProbe> {
    let p = p?;
    assert!(
        p.exec.is_none() && p.tcp_socket.is_none() && p.grpc.is_none(),
        "untranslated {kind}: only httpGet"
    );
    let get = p.http_get.as_ref().expect("httpGet");
    let port = match &get.port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("{kind}: no container port named {name:?}"))
                .container_port
        }
    };
    Some(HttpProbe {
        kind,
        path: get.path.clone().unwrap_or_else(|| "/".into()),
        port: port as u16,
    })
}

fn env(c: &Container, node: &str, meta: &cri::PodSandboxMetadata) -> Vec<cri::KeyValue> {
    let mut out = Vec::new();
    assert!(c.env_from.is_none(), "untranslated: envFrom");
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), None) => v.clone(),
            (None, Some(from)) => {
                let field = from.field_ref.as_ref().unwrap_or_else(|| {
                    panic!("untranslated env {}: only fieldRef valueFrom", e.name)
                });
                match field.field_path.as_str() {
                    "spec.nodeName" => node.to_string(),
                    "metadata.name" => meta.name.clone(),
                    "metadata.namespace" => meta.namespace.clone(),
                    "metadata.uid" => meta.uid.clone(),
                    other => panic!("untranslated fieldRef {other}"),
                }
            }
            _ => String::new(),
        };
        out.push(cri::KeyValue {
            key: e.name.clone(),
            value,
        });
    }
    out
}

fn mounts(pod: &PodSpec, c: &Container, host_dirs: &mut Vec<(String, bool)>) -> Vec<cri::Mount> {
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("volumeMount {} has no volume", m.name));
        let hp = v
            .host_path
            .as_ref()
            .unwrap_or_else(|| panic!("untranslated volume {}: only hostPath", v.name));
        assert!(m.sub_path.is_none(), "untranslated: subPath");
        let propagation = match m.mount_propagation.as_deref() {
            None | Some("None") => cri::MountPropagation::PropagationPrivate,
            Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
            Some(other) => panic!("untranslated mountPropagation {other}"),
        };
        let create = match hp.type_.as_deref() {
            Some("DirectoryOrCreate") => true,
            Some("Directory") | None | Some("") => false,
            Some(other) => panic!("untranslated hostPath type {other}"),
        };
        host_dirs.push((hp.path.clone(), create));
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: hp.path.clone(),
            readonly: m.read_only == Some(true),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    out
}

fn resources(pod: &PodSpec, c: &Container) -> cri::LinuxContainerResources {
    let r = c.resources.as_ref();
    let get = |which: &str, key: &str| {
        let map = match which {
            "limits" => r.and_then(|r| r.limits.as_ref()),
            _ => r.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(key)).map(|q| q.0.clone())
    };
    let mut out = cri::LinuxContainerResources::default();
    // kubelet: shares = request * 1024 / 1000 (at least 2); quota = limit * period / 1000.
    let shares = get("requests", "cpu").map(|q| millicpu(&q) * 1024 / 1000);
    out.cpu_shares = shares.unwrap_or(2).max(2);
    if let Some(cpu) = get("limits", "cpu") {
        out.cpu_period = 100_000;
        out.cpu_quota = millicpu(&cpu) * 100;
    }
    if let Some(mem) = get("limits", "memory") {
        out.memory_limit_in_bytes = bytes(&mem);
    }
    // kubelet's OOM policy: node-critical pods get -997; burstable ones a value near 1000.
    let critical = matches!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical" | "system-cluster-critical")
    );
    out.oom_score_adj = if critical { -997 } else { 999 };
    out
}

#[allow(deprecated)] // apparmor_profile: what containerd 1.6 reads
fn security(c: &Container, ns: &cri::NamespaceOption) -> cri::LinuxContainerSecurityContext {
    let sc = c.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.unwrap_or_default();
    let profile = |t: &str| cri::SecurityProfile {
        profile_type: match t {
            "RuntimeDefault" => cri::security_profile::ProfileType::RuntimeDefault,
            "Unconfined" => cri::security_profile::ProfileType::Unconfined,
            other => panic!("untranslated profile type {other}"),
        } as i32,
        localhost_ref: String::new(),
    };
    let apparmor = sc.app_armor_profile.as_ref().map(|p| profile(&p.type_));
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            add_ambient_capabilities: vec![],
        }),
        privileged: sc.privileged == Some(true),
        namespace_options: Some(ns.clone()),
        run_as_user: sc.run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        seccomp: sc.seccomp_profile.as_ref().map(|p| profile(&p.type_)),
        // containerd < 1.7.14 reads only the deprecated string (kubelet sends both).
        apparmor_profile: match apparmor.as_ref().map(|p| p.profile_type) {
            Some(1) => "unconfined".into(),
            Some(_) => "runtime/default".into(),
            None => String::new(),
        },
        apparmor,
        ..Default::default()
    }
}

/// The pod of `ds` on node `node`, with the test's [`StandIn`] added.
pub fn plan(ds: &DaemonSet, node: &str, uid: &str, stand_in: &StandIn) -> PodPlan {
    let pod = pod_spec(ds);
    let c = the_container(pod);
    let meta = ds.metadata.clone();
    let name = format!("{}-{}", meta.name.clone().unwrap_or_default(), &uid[..5]);
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let sandbox_meta = cri::PodSandboxMetadata {
        name: name.clone(),
        uid: uid.to_string(),
        namespace: namespace.clone(),
        attempt: 0,
    };
    assert!(
        c.command.is_none(),
        "untranslated: command (the image's entrypoint runs)"
    );
    assert!(
        c.working_dir.is_none() && c.lifecycle.is_none(),
        "untranslated"
    );

    let ns = cri::NamespaceOption {
        network: ns_mode(pod.host_network, cri::NamespaceMode::Pod),
        pid: ns_mode(pod.host_pid, cri::NamespaceMode::Container),
        ipc: ns_mode(pod.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    };
    let mut labels: HashMap<String, String> = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert("io.kubernetes.pod.name".into(), name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), namespace.clone());
    labels.insert("io.kubernetes.pod.uid".into(), uid.to_string());
    let log_directory = format!("/var/log/pods/{namespace}_{name}_{uid}");
    let any_privileged = pod
        .containers
        .iter()
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(sandbox_meta.clone()),
        hostname: if pod.host_network == Some(true) {
            String::new()
        } else {
            name.clone()
        },
        log_directory: log_directory.clone(),
        port_mappings: c
            .ports
            .iter()
            .flatten()
            .map(|p| cri::PortMapping {
                protocol: cri::Protocol::Tcp as i32,
                container_port: p.container_port,
                host_port: p.host_port.unwrap_or(0),
                host_ip: String::new(),
            })
            .collect(),
        labels: labels.clone(),
        linux: Some(cri::LinuxPodSandboxConfig {
            // requests < limits: the Burstable QoS class (cgroupfs driver).
            cgroup_parent: format!("/kubepods/burstable/pod{uid}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(ns.clone()),
                privileged: any_privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut host_dirs = Vec::new();
    let mut mounts = mounts(pod, c, &mut host_dirs);
    // The stand-in Secret volume: read-only, as kubelet mounts Secret volumes.
    mounts.push(cri::Mount {
        container_path: stand_in.secret_mount.clone(),
        host_path: stand_in.secret_host_dir.clone(),
        readonly: true,
        ..Default::default()
    });
    let mut envs = env(c, node, &sandbox_meta);
    envs.extend(stand_in.env.iter().map(|(k, v)| cri::KeyValue {
        key: k.clone(),
        value: v.clone(),
    }));
    let mut c_labels = labels;
    c_labels.insert("io.kubernetes.container.name".into(), c.name.clone());
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone().expect("image"),
            ..Default::default()
        }),
        args: c.args.clone().unwrap_or_default(),
        envs,
        mounts,
        labels: c_labels,
        log_path: format!("{}/0.log", c.name),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(pod, c)),
            security_context: Some(security(c, &ns)),
        }),
        ..Default::default()
    };
    let probes = [
        http_probe("livenessProbe", c.liveness_probe.as_ref(), c),
        http_probe("readinessProbe", c.readiness_probe.as_ref(), c),
    ]
    .into_iter()
    .flatten()
    .collect();
    PodPlan {
        log_file: format!("{log_directory}/{}/0.log", c.name),
        sandbox,
        container,
        host_dirs,
        probes,
        grace_secs: pod.termination_grace_period_seconds.unwrap_or(30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(millicpu("10m"), 10);
        assert_eq!(millicpu("2"), 2000);
        assert_eq!(millicpu("0.5"), 500);
        assert_eq!(bytes("128Mi"), 128 << 20);
        assert_eq!(bytes("1G"), 1_000_000_000);
    }
}
