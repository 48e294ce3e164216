//! The data path's contents as kube-lb last wrote them, and the smallest set of map writes
//! that turns them into what a service now asks for. Backend and service-port ids are
//! allocated here; a backend keeps its slot while it stays, so an endpoint change rewrites
//! only the slots it touches.

use std::collections::{BTreeMap, HashMap};

use crate::maps::{self, LbBackend, LbKey, LbValue, SvcBackendKey, F_AFFINITY, F_SNAT};
use crate::model::{Backend, Frontend, Proto};

/// Where the writes go: the BPF maps, or a plain map in unit tests.
pub trait MapWriter {
    fn put_service(&mut self, key: LbKey, value: LbValue) -> anyhow::Result<()>;
    fn del_service(&mut self, key: LbKey) -> anyhow::Result<()>;
    fn put_backend(&mut self, id: u32, backend: LbBackend) -> anyhow::Result<()>;
    fn del_backend(&mut self, id: u32) -> anyhow::Result<()>;
    fn put_member(&mut self, key: SvcBackendKey) -> anyhow::Result<()>;
    fn del_member(&mut self, key: SvcBackendKey) -> anyhow::Result<()>;
}

/// A frontend's key with slot 0.
type Base = LbKey;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Installed {
    head: LbValue,
    /// Backend ids by slot - 1.
    slots: Vec<u32>,
}

#[derive(Default)]
pub struct Tables {
    /// Frontends by the `namespace/name` of the service that asked for them.
    services: HashMap<String, BTreeMap<Base, Installed>>,
    /// Frontends a previous kube-lb left in pinned maps that no service has claimed yet.
    adopted: HashMap<Base, Installed>,
    /// Every installed frontend holds one reference on its service-port id, one on each of
    /// its backends and one on each (service port, backend) membership.
    backends: HashMap<Backend, (u32, usize)>,
    backend_by_id: HashMap<u32, Backend>,
    next_backend: u32,
    free_backends: Vec<u32>,
    service_ports: HashMap<String, u32>,
    service_refs: HashMap<u32, usize>,
    next_svc: u32,
    free_svcs: Vec<u32>,
    members: HashMap<SvcBackendKey, usize>,
}

fn base(f: &Frontend) -> Base {
    LbKey {
        addr: maps::addr(f.addr),
        port: maps::port(f.port),
        proto: f.proto as u8,
        scope: f.scope as u8,
        slot: 0,
        pad: 0,
    }
}

fn slot_key(base: &Base, slot: usize) -> LbKey {
    LbKey {
        slot: slot as u16,
        ..*base
    }
}

fn backend_from_map(b: &LbBackend) -> Option<Backend> {
    let proto = match b.proto {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    Some(Backend {
        addr: maps::ip(b.addr),
        port: u16::from_be(b.port),
        proto,
    })
}

fn backend_to_map(b: &Backend) -> LbBackend {
    LbBackend {
        addr: maps::addr(b.addr),
        port: maps::port(b.port),
        proto: b.proto as u8,
        pad: 0,
    }
}

/// Which slot each wanted backend takes: a backend that stays keeps its slot, a new one
/// fills a freed slot, and the last slots move down into holes that remain.
fn keep_slots(prev: &[u32], wanted: &[u32]) -> Vec<u32> {
    let wanted_set: std::collections::HashSet<u32> = wanted.iter().copied().collect();
    let mut slots: Vec<Option<u32>> = prev
        .iter()
        .map(|id| wanted_set.contains(id).then_some(*id))
        .collect();
    let placed: std::collections::HashSet<u32> = slots.iter().flatten().copied().collect();
    let mut fresh = wanted.iter().filter(|id| !placed.contains(id)).copied();
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        *slot = fresh.next();
    }
    slots.extend(fresh.map(Some));
    // Holes left when more went than came: fill them from the end.
    let mut i = 0;
    while i < slots.len() {
        if slots[i].is_none() {
            let last = slots.pop().flatten();
            if i < slots.len() {
                slots[i] = last;
            }
            continue;
        }
        i += 1;
    }
    slots.into_iter().flatten().collect()
}

/// The most backend slots one frontend can have (the slot is 16 bits, slot 0 is the head).
pub const MAX_BACKENDS: usize = u16::MAX as usize - 1;

impl Tables {
    /// Starts from what a previous kube-lb left in pinned maps, so that the first sync
    /// rewrites only what changed meanwhile and established flows keep their backends.
    pub fn adopt(
        services: impl IntoIterator<Item = (LbKey, LbValue)>,
        backends: impl IntoIterator<Item = (u32, LbBackend)>,
        members: impl IntoIterator<Item = SvcBackendKey>,
        w: &mut dyn MapWriter,
    ) -> anyhow::Result<Tables> {
        let mut t = Tables::default();
        for (id, b) in backends {
            match backend_from_map(&b) {
                Some(backend) if !t.backends.contains_key(&backend) => {
                    t.backends.insert(backend, (id, 0));
                    t.backend_by_id.insert(id, backend);
                    t.next_backend = t.next_backend.max(id + 1);
                }
                _ => w.del_backend(id)?,
            }
        }
        let mut heads = HashMap::new();
        let mut slots: HashMap<Base, BTreeMap<u16, u32>> = HashMap::new();
        for (key, value) in services {
            if key.slot == 0 {
                heads.insert(key, value);
            } else {
                slots
                    .entry(slot_key(&key, 0))
                    .or_default()
                    .insert(key.slot, value.backend_id);
            }
        }
        for (base, head) in heads {
            let by_slot = slots.remove(&base).unwrap_or_default();
            let mut ids = Vec::new();
            for (slot, id) in by_slot {
                // Slots past the count, or naming a backend that is gone, are leftovers of
                // an interrupted write.
                if usize::from(slot) == ids.len() + 1
                    && slot <= head.count
                    && t.backend_by_id.contains_key(&id)
                {
                    ids.push(id);
                } else {
                    w.del_service(slot_key(&base, slot.into()))?;
                }
            }
            let head = LbValue {
                count: ids.len() as u16,
                ..head
            };
            *t.service_refs.entry(head.svc_id).or_default() += 1;
            t.next_svc = t.next_svc.max(head.svc_id + 1);
            for id in &ids {
                if let Some(b) = t.backend_by_id.get(id).copied() {
                    t.backends.entry(b).or_insert((*id, 0)).1 += 1;
                }
                *t.members
                    .entry(SvcBackendKey {
                        svc_id: head.svc_id,
                        backend_id: *id,
                    })
                    .or_default() += 1;
            }
            t.adopted.insert(base, Installed { head, slots: ids });
        }
        for (base, by_slot) in slots {
            for slot in by_slot.keys() {
                w.del_service(slot_key(&base, (*slot).into()))?;
            }
        }
        let found: std::collections::HashSet<SvcBackendKey> = members.into_iter().collect();
        for member in &found {
            if !t.members.contains_key(member) {
                w.del_member(*member)?;
            }
        }
        for member in t.members.keys() {
            if !found.contains(member) {
                w.put_member(*member)?;
            }
        }
        Ok(t)
    }

    /// Installs what `service` (`namespace/name`) now asks for; an empty list removes it.
    pub fn apply(
        &mut self,
        service: &str,
        frontends: &[Frontend],
        w: &mut dyn MapWriter,
    ) -> anyhow::Result<()> {
        let mut old = self.services.remove(service).unwrap_or_default();
        let mut new = BTreeMap::new();
        for f in frontends {
            let base = base(f);
            if new.contains_key(&base) {
                continue;
            }
            let prev = old.remove(&base).or_else(|| self.adopted.remove(&base));
            let installed = self.install(f, &base, prev, w)?;
            new.insert(base, installed);
        }
        for (base, gone) in old {
            self.uninstall(&base, gone, w)?;
        }
        if !new.is_empty() {
            self.services.insert(service.to_string(), new);
        }
        Ok(())
    }

    /// After the first full sync: whatever a previous kube-lb installed that no service
    /// claimed goes, and so do backends nothing uses.
    pub fn finish_adoption(&mut self, w: &mut dyn MapWriter) -> anyhow::Result<()> {
        for (base, gone) in std::mem::take(&mut self.adopted) {
            self.uninstall(&base, gone, w)?;
        }
        let unused: Vec<Backend> = self
            .backends
            .iter()
            .filter(|(_, (_, refs))| *refs == 0)
            .map(|(b, _)| *b)
            .collect();
        for b in unused {
            if let Some((id, _)) = self.backends.remove(&b) {
                self.backend_by_id.remove(&id);
                self.free_backends.push(id);
                w.del_backend(id)?;
            }
        }
        Ok(())
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn frontend_count(&self) -> usize {
        self.services.values().map(|f| f.len()).sum()
    }

    pub fn backend_count(&self) -> usize {
        self.backend_by_id.len()
    }

    fn install(
        &mut self,
        f: &Frontend,
        base: &Base,
        prev: Option<Installed>,
        w: &mut dyn MapWriter,
    ) -> anyhow::Result<Installed> {
        let svc_id = self.acquire_service_port(&f.service_port, prev.as_ref());
        let mut wanted: Vec<u32> = Vec::with_capacity(f.backends.len());
        for b in f.backends.iter().take(MAX_BACKENDS) {
            let id = self.acquire_backend(*b, w)?;
            self.acquire_member(
                SvcBackendKey {
                    svc_id,
                    backend_id: id,
                },
                w,
            )?;
            wanted.push(id);
        }

        let empty = Installed {
            head: LbValue::default(),
            slots: Vec::new(),
        };
        let prev_ref = prev.as_ref().unwrap_or(&empty);
        let slots = keep_slots(&prev_ref.slots, &wanted);
        // New slots are written before the head grows to them, and the head shrinks before
        // the slots past it go, so a reader never follows the count to a missing slot.
        for (i, id) in slots.iter().enumerate() {
            let moved = prev_ref.slots.get(i) != Some(id);
            if moved || prev_ref.head.svc_id != svc_id {
                w.put_service(
                    slot_key(base, i + 1),
                    LbValue {
                        backend_id: *id,
                        svc_id,
                        ..Default::default()
                    },
                )?;
            }
        }
        let mut flags = 0;
        if f.affinity_timeout.is_some() {
            flags |= F_AFFINITY;
        }
        if f.snat {
            flags |= F_SNAT;
        }
        let head = LbValue {
            svc_id,
            backend_id: 0,
            count: slots.len() as u16,
            flags,
            affinity_timeout: f.affinity_timeout.unwrap_or(0),
        };
        if prev.is_none() || head != prev_ref.head {
            w.put_service(*base, head)?;
        }
        for slot in slots.len() + 1..=prev_ref.slots.len() {
            w.del_service(slot_key(base, slot))?;
        }
        if let Some(prev) = prev {
            self.release(&prev, w)?;
        }
        Ok(Installed { head, slots })
    }

    fn uninstall(
        &mut self,
        base: &Base,
        gone: Installed,
        w: &mut dyn MapWriter,
    ) -> anyhow::Result<()> {
        w.del_service(*base)?;
        for slot in 1..=gone.slots.len() {
            w.del_service(slot_key(base, slot))?;
        }
        self.release(&gone, w)
    }

    /// Drops an install's references once the maps no longer point at it.
    fn release(&mut self, gone: &Installed, w: &mut dyn MapWriter) -> anyhow::Result<()> {
        for id in &gone.slots {
            self.release_member(
                SvcBackendKey {
                    svc_id: gone.head.svc_id,
                    backend_id: *id,
                },
                w,
            )?;
            self.release_backend(*id, w)?;
        }
        self.release_service_port(gone.head.svc_id);
        Ok(())
    }

    /// The id of a service port; one adopted from a previous kube-lb keeps its id, so that
    /// session affinities recorded under it hold.
    fn acquire_service_port(&mut self, name: &str, prev: Option<&Installed>) -> u32 {
        let id = match self.service_ports.get(name) {
            Some(id) => *id,
            None => {
                let id = match prev {
                    Some(p) if self.service_refs.contains_key(&p.head.svc_id) => p.head.svc_id,
                    _ => self.free_svcs.pop().unwrap_or_else(|| {
                        self.next_svc += 1;
                        self.next_svc - 1
                    }),
                };
                self.service_ports.insert(name.to_string(), id);
                id
            }
        };
        *self.service_refs.entry(id).or_default() += 1;
        id
    }

    fn release_service_port(&mut self, id: u32) {
        let Some(refs) = self.service_refs.get_mut(&id) else {
            return;
        };
        *refs -= 1;
        if *refs == 0 {
            self.service_refs.remove(&id);
            self.service_ports.retain(|_, v| *v != id);
            self.free_svcs.push(id);
        }
    }

    fn acquire_backend(&mut self, b: Backend, w: &mut dyn MapWriter) -> anyhow::Result<u32> {
        if let Some((id, refs)) = self.backends.get_mut(&b) {
            *refs += 1;
            return Ok(*id);
        }
        let id = self.free_backends.pop().unwrap_or_else(|| {
            self.next_backend += 1;
            self.next_backend - 1
        });
        w.put_backend(id, backend_to_map(&b))?;
        self.backends.insert(b, (id, 1));
        self.backend_by_id.insert(id, b);
        Ok(id)
    }

    fn release_backend(&mut self, id: u32, w: &mut dyn MapWriter) -> anyhow::Result<()> {
        let Some(b) = self.backend_by_id.get(&id).copied() else {
            return Ok(());
        };
        if let Some((_, refs)) = self.backends.get_mut(&b) {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                self.backends.remove(&b);
                self.backend_by_id.remove(&id);
                self.free_backends.push(id);
                w.del_backend(id)?;
            }
        }
        Ok(())
    }

    fn acquire_member(&mut self, key: SvcBackendKey, w: &mut dyn MapWriter) -> anyhow::Result<()> {
        let refs = self.members.entry(key).or_default();
        *refs += 1;
        if *refs == 1 {
            w.put_member(key)?;
        }
        Ok(())
    }

    fn release_member(&mut self, key: SvcBackendKey, w: &mut dyn MapWriter) -> anyhow::Result<()> {
        if let Some(refs) = self.members.get_mut(&key) {
            *refs -= 1;
            if *refs == 0 {
                self.members.remove(&key);
                w.del_member(key)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scope;
    use std::net::Ipv4Addr;

    /// The maps as plain maps, counting writes.
    #[derive(Default)]
    struct Memory {
        services: BTreeMap<LbKey, LbValue>,
        backends: BTreeMap<u32, LbBackend>,
        members: std::collections::BTreeSet<(u32, u32)>,
        writes: usize,
    }

    impl MapWriter for Memory {
        fn put_service(&mut self, key: LbKey, value: LbValue) -> anyhow::Result<()> {
            self.writes += 1;
            self.services.insert(key, value);
            Ok(())
        }
        fn del_service(&mut self, key: LbKey) -> anyhow::Result<()> {
            self.writes += 1;
            self.services.remove(&key);
            Ok(())
        }
        fn put_backend(&mut self, id: u32, backend: LbBackend) -> anyhow::Result<()> {
            self.writes += 1;
            self.backends.insert(id, backend);
            Ok(())
        }
        fn del_backend(&mut self, id: u32) -> anyhow::Result<()> {
            self.writes += 1;
            self.backends.remove(&id);
            Ok(())
        }
        fn put_member(&mut self, key: SvcBackendKey) -> anyhow::Result<()> {
            self.writes += 1;
            self.members.insert((key.svc_id, key.backend_id));
            Ok(())
        }
        fn del_member(&mut self, key: SvcBackendKey) -> anyhow::Result<()> {
            self.writes += 1;
            self.members.remove(&(key.svc_id, key.backend_id));
            Ok(())
        }
    }

    impl Memory {
        /// The backends a frontend resolves to, in slot order, the way the programs walk it.
        fn resolve(&self, f: &Frontend) -> Vec<Ipv4Addr> {
            let head = self.services[&base(f)];
            (1..=head.count as usize)
                .map(|s| {
                    let slot = self.services[&slot_key(&base(f), s)];
                    assert!(self.members.contains(&(head.svc_id, slot.backend_id)));
                    maps::ip(self.backends[&slot.backend_id].addr)
                })
                .collect()
        }
    }

    fn backend(last: u8) -> Backend {
        Backend {
            addr: Ipv4Addr::new(10, 244, 0, last),
            port: 8080,
            proto: Proto::Tcp,
        }
    }

    fn frontend(ip: [u8; 4], backends: &[u8]) -> Frontend {
        Frontend {
            addr: Ipv4Addr::from(ip),
            port: 80,
            proto: Proto::Tcp,
            scope: Scope::Sock,
            service_port: "default/web:http".into(),
            affinity_timeout: None,
            snat: false,
            backends: backends.iter().map(|b| backend(*b)).collect(),
        }
    }

    #[test]
    fn slots_stay_put() {
        assert_eq!(keep_slots(&[1, 2, 3], &[3, 1, 2]), vec![1, 2, 3]);
        assert_eq!(keep_slots(&[1, 2, 3], &[1, 3, 4]), vec![1, 4, 3]);
        assert_eq!(keep_slots(&[1, 2, 3], &[3]), vec![3]);
        assert_eq!(keep_slots(&[1, 2, 3, 4], &[1, 4]), vec![1, 4]);
        assert_eq!(keep_slots(&[], &[5, 6]), vec![5, 6]);
        assert_eq!(keep_slots(&[5, 6], &[]), Vec::<u32>::new());
    }

    #[test]
    fn an_endpoint_change_rewrites_only_its_slot() {
        let mut m = Memory::default();
        let mut t = Tables::default();
        let f = frontend([10, 96, 0, 10], &[1, 2, 3]);
        t.apply("default/web", std::slice::from_ref(&f), &mut m)
            .unwrap();
        assert_eq!(m.resolve(&f).len(), 3);

        m.writes = 0;
        let f2 = frontend([10, 96, 0, 10], &[1, 3, 4]);
        t.apply("default/web", std::slice::from_ref(&f2), &mut m)
            .unwrap();
        // backend 4 in, its membership, its slot; backend 2's membership and entry out.
        assert_eq!(m.writes, 5);
        let got = m.resolve(&f2);
        assert_eq!(
            got,
            vec![
                Ipv4Addr::new(10, 244, 0, 1),
                Ipv4Addr::new(10, 244, 0, 4),
                Ipv4Addr::new(10, 244, 0, 3)
            ]
        );
        assert_eq!(m.backends.len(), 3);
    }

    #[test]
    fn removing_a_service_leaves_nothing() {
        let mut m = Memory::default();
        let mut t = Tables::default();
        let a = frontend([10, 96, 0, 10], &[1, 2]);
        let mut b = frontend([10, 96, 0, 11], &[2, 3]);
        b.service_port = "default/other:".into();
        t.apply("default/web", &[a], &mut m).unwrap();
        t.apply("default/other", std::slice::from_ref(&b), &mut m)
            .unwrap();
        t.apply("default/web", &[], &mut m).unwrap();
        assert_eq!(m.resolve(&b).len(), 2);
        assert_eq!(
            m.backends.len(),
            2,
            "backend 2 is still used by the other service"
        );
        t.apply("default/other", &[], &mut m).unwrap();
        assert!(m.services.is_empty() && m.backends.is_empty() && m.members.is_empty());
        assert_eq!(t.service_count(), 0);
    }

    #[test]
    fn no_endpoints_keeps_a_head_with_count_zero() {
        let mut m = Memory::default();
        let mut t = Tables::default();
        let f = frontend([10, 96, 0, 10], &[]);
        t.apply("default/web", std::slice::from_ref(&f), &mut m)
            .unwrap();
        assert_eq!(m.services[&base(&f)].count, 0);
        assert_eq!(m.services.len(), 1);
    }

    #[test]
    fn a_restart_adopts_the_maps_and_rewrites_nothing_unchanged() {
        let mut m = Memory::default();
        let mut t = Tables::default();
        let mut web = frontend([10, 96, 0, 10], &[1, 2, 3]);
        web.affinity_timeout = Some(10800);
        let mut gone = frontend([10, 96, 0, 12], &[7]);
        gone.service_port = "default/gone:".into();
        t.apply("default/web", std::slice::from_ref(&web), &mut m)
            .unwrap();
        t.apply("default/gone", &[gone], &mut m).unwrap();
        let svc_id = m.services[&base(&web)].svc_id;

        m.writes = 0;
        let snapshot_services: Vec<_> = m.services.iter().map(|(k, v)| (*k, *v)).collect();
        let snapshot_backends: Vec<_> = m.backends.iter().map(|(k, v)| (*k, *v)).collect();
        let snapshot_members: Vec<_> = m
            .members
            .iter()
            .map(|(s, b)| SvcBackendKey {
                svc_id: *s,
                backend_id: *b,
            })
            .collect();
        let mut t = Tables::adopt(
            snapshot_services,
            snapshot_backends,
            snapshot_members,
            &mut m,
        )
        .unwrap();
        t.apply("default/web", std::slice::from_ref(&web), &mut m)
            .unwrap();
        assert_eq!(m.writes, 0, "an unchanged service is not rewritten");
        assert_eq!(
            m.services[&base(&web)].svc_id,
            svc_id,
            "affinity ids survive"
        );
        t.finish_adoption(&mut m).unwrap();
        assert_eq!(m.resolve(&web).len(), 3);
        assert_eq!(m.services.len(), 4, "the unclaimed service is gone");
        assert_eq!(m.backends.len(), 3);
        assert_eq!(m.members.len(), 3);
    }

    #[test]
    fn adoption_drops_slots_past_the_count() {
        let mut m = Memory::default();
        let f = frontend([10, 96, 0, 10], &[1]);
        let head = LbValue {
            svc_id: 4,
            count: 1,
            ..Default::default()
        };
        let slot = |s, id| {
            (
                slot_key(&base(&f), s),
                LbValue {
                    svc_id: 4,
                    backend_id: id,
                    ..Default::default()
                },
            )
        };
        let services = vec![(base(&f), head), slot(1, 0), slot(2, 0)];
        let backends = vec![(0, backend_to_map(&backend(1)))];
        m.services.extend(services.clone());
        m.backends.extend(backends.clone());
        let mut t = Tables::adopt(services, backends, vec![], &mut m).unwrap();
        assert!(!m.services.contains_key(&slot_key(&base(&f), 2)));
        assert!(
            m.members.contains(&(4, 0)),
            "a missing membership is written"
        );
        t.apply("default/web", std::slice::from_ref(&f), &mut m)
            .unwrap();
        t.finish_adoption(&mut m).unwrap();
        assert_eq!(m.resolve(&f), vec![Ipv4Addr::new(10, 244, 0, 1)]);
    }
}
