//! Keeps the maps in step with the API: Services and EndpointSlices are watched, and every
//! change recomputes the frontends of the one service it belongs to and writes the difference.
//! Nothing is written until both initial lists are in, so a restart replaces its
//! predecessor's tables in one pass without a moment of missing services.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::mpsc;

use ferrokube_component::informer::{self, Change};
use ferrokube_component::metrics::Registry;

use crate::datapath::Maps;
use crate::model;
use crate::tables::Tables;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

enum Input {
    Service(Change<Service>),
    Slice(Change<EndpointSlice>),
}

fn key<K: kube::Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The `namespace/name` of the service a slice belongs to.
fn owner(slice: &EndpointSlice) -> Option<String> {
    let name = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some(format!(
        "{}/{}",
        slice.namespace().unwrap_or_default(),
        name
    ))
}

/// `10.96.0.10:80/tcp=2`, `0.0.0.0:30080/tcp/ext=1`: a frontend and its backend count.
fn describe(f: &model::Frontend) -> String {
    let proto = match f.proto {
        model::Proto::Tcp => "tcp",
        model::Proto::Udp => "udp",
    };
    let scope = match f.scope {
        model::Scope::Sock => "",
        model::Scope::Ext => "/ext",
    };
    format!("{}:{}/{proto}{scope}={}", f.addr, f.port, f.backends.len())
}

pub struct Controller {
    node_name: String,
    tables: Tables,
    maps: Maps,
    metrics: Arc<Registry>,
    services: HashMap<String, Service>,
    slices: HashMap<String, EndpointSlice>,
    slices_of: HashMap<String, BTreeSet<String>>,
    dirty: BTreeSet<String>,
}

impl Controller {
    pub fn new(node_name: String, tables: Tables, maps: Maps, metrics: Arc<Registry>) -> Self {
        metrics.describe(
            "kubelb_sync_duration_seconds",
            "How long writing one service's change to the BPF maps took, from the watch event.",
        );
        metrics.describe(
            "kubelb_syncs_total",
            "Service changes written to the BPF maps.",
        );
        metrics.describe(
            "kubelb_map_entries",
            "Entries kube-lb keeps in each BPF map.",
        );
        metrics.describe("kubelb_services", "Services with at least one frontend.");
        Controller {
            node_name,
            tables,
            maps,
            metrics,
            services: HashMap::new(),
            slices: HashMap::new(),
            slices_of: HashMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Watches the API and writes the maps until the watches end.
    pub async fn run(mut self, client: kube::Client) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        informer::spawn(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            tx.clone(),
            Input::Service,
        );
        informer::spawn(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
            tx,
            Input::Slice,
        );
        let (mut services_listed, mut slices_listed, mut adopted) = (false, false, false);
        while let Some(input) = rx.recv().await {
            let received = Instant::now();
            match input {
                Input::Service(change) => {
                    services_listed |= matches!(change, Change::Relist(_));
                    self.on_service(change);
                }
                Input::Slice(change) => {
                    slices_listed |= matches!(change, Change::Relist(_));
                    self.on_slice(change);
                }
            }
            if !(services_listed && slices_listed) {
                continue;
            }
            // Take whatever else has arrived, so a burst becomes one pass.
            while let Ok(input) = rx.try_recv() {
                match input {
                    Input::Service(change) => self.on_service(change),
                    Input::Slice(change) => self.on_slice(change),
                }
            }
            self.sync(received, !adopted)?;
            if !adopted {
                self.tables.finish_adoption(&mut self.maps)?;
                adopted = true;
                tracing::info!(services = self.tables.service_count(), "initial sync done");
            }
            self.report();
        }
        Ok(())
    }

    fn on_service(&mut self, change: Change<Service>) {
        match change {
            Change::Apply(svc) => {
                let k = key(svc.as_ref());
                self.dirty.insert(k.clone());
                self.services.insert(k, *svc);
            }
            Change::Delete(svc) => {
                let k = key(svc.as_ref());
                self.services.remove(&k);
                self.dirty.insert(k);
            }
            Change::Relist(all) => {
                self.dirty.extend(self.services.keys().cloned());
                self.services = all.into_iter().map(|s| (key(&s), s)).collect();
                self.dirty.extend(self.services.keys().cloned());
            }
        }
    }

    fn on_slice(&mut self, change: Change<EndpointSlice>) {
        match change {
            Change::Apply(slice) => self.put_slice(*slice),
            Change::Delete(slice) => self.remove_slice(&key(slice.as_ref())),
            Change::Relist(all) => {
                let old: Vec<String> = self.slices.keys().cloned().collect();
                for k in old {
                    self.remove_slice(&k);
                }
                for slice in all {
                    self.put_slice(slice);
                }
            }
        }
    }

    fn put_slice(&mut self, slice: EndpointSlice) {
        let k = key(&slice);
        // A slice whose service label changed leaves its old service.
        self.remove_slice(&k);
        if let Some(svc) = owner(&slice) {
            self.slices_of
                .entry(svc.clone())
                .or_default()
                .insert(k.clone());
            self.dirty.insert(svc);
        }
        self.slices.insert(k, slice);
    }

    fn remove_slice(&mut self, k: &str) {
        let Some(old) = self.slices.remove(k) else {
            return;
        };
        if let Some(svc) = owner(&old) {
            if let Some(set) = self.slices_of.get_mut(&svc) {
                set.remove(k);
                if set.is_empty() {
                    self.slices_of.remove(&svc);
                }
            }
            self.dirty.insert(svc);
        }
    }

    /// Writes every service changed since the last pass.
    fn sync(&mut self, received: Instant, initial: bool) -> anyhow::Result<()> {
        for svc_key in std::mem::take(&mut self.dirty) {
            let frontends = match self.services.get(&svc_key) {
                Some(svc) => {
                    let slices: Vec<&EndpointSlice> = self
                        .slices_of
                        .get(&svc_key)
                        .into_iter()
                        .flatten()
                        .filter_map(|k| self.slices.get(k))
                        .collect();
                    model::frontends(svc, &slices, &self.node_name)
                }
                None => Vec::new(),
            };
            self.tables.apply(&svc_key, &frontends, &mut self.maps)?;
            // Every change is logged once the initial sync is done (that one is a single
            // summary line); tests and hack/test.sh wait on these lines.
            let summary = || frontends.iter().map(describe).collect::<Vec<_>>().join(" ");
            if initial {
                tracing::debug!("synced {svc_key} {}", summary());
            } else {
                tracing::info!("synced {svc_key} {}", summary());
            }
            self.metrics.inc("kubelb_syncs_total", &[]);
            self.metrics.observe(
                "kubelb_sync_duration_seconds",
                &ferrokube_component::metrics::latency_buckets(),
                &[],
                received.elapsed().as_secs_f64(),
            );
        }
        Ok(())
    }

    fn report(&self) {
        let m = &self.metrics;
        m.set("kubelb_services", &[], self.tables.service_count() as f64);
        m.set(
            "kubelb_map_entries",
            &[("map", "frontends")],
            self.tables.frontend_count() as f64,
        );
        m.set(
            "kubelb_map_entries",
            &[("map", "slots")],
            self.tables.slot_count() as f64,
        );
    }
}
