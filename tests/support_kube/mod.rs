//! Test support for the Kubernetes source: a FAKE API server ([`fake_apiserver::FakeApiServer`])
//! speaking the real kube-apiserver wire protocol (list, chunked watch streams, 410 Expired,
//! bookmarks, Events, Node patches and status conditions, coordination.k8s.io Leases with
//! resourceVersion conflicts) on 127.0.0.1, since no real API server is available here.

#![allow(dead_code, unused_imports)]

pub mod fake_apiserver;

pub use fake_apiserver::{FakeApiServer, NodePatch, RecordedRequest};
