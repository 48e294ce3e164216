//! The data path's contents as kube-lb last wrote them, and the smallest set of map writes
//! that turns them into what a service now asks for. A backend keeps its slot while it stays,
//! so an endpoint change rewrites only the slots it touches; service-port ids (the session
//! affinity domain) are allocated here.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::maps::{self, LbKey, LbValue, F_AFFINITY, F_DROP, F_SNAT};
use crate::model::{Backend, Frontend, Proto};

/// Where the writes go: the BPF map, or a plain map in unit tests.
pub trait MapWriter {
    fn put_service(&mut self, key: LbKey, value: LbValue) -> anyhow::Result<()>;
    fn del_service(&mut self, key: LbKey) -> anyhow::Result<()>;
}

/// A frontend's key with slot 0.
type Base = LbKey;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Installed {
    head: LbValue,
    /// Backends by slot - 1.
    slots: Vec<Backend>,
}

#[derive(Default)]
pub struct Tables {
    /// Frontends by the `namespace/name` of the service that asked for them.
    services: HashMap<String, BTreeMap<Base, Installed>>,
    /// Frontends a previous kube-lb left in pinned maps that no service has claimed yet.
    adopted: HashMap<Base, Installed>,
    /// Every installed frontend holds one reference on its service-port id.
    service_ports: HashMap<String, u32>,
    service_refs: HashMap<u32, usize>,
    next_svc: u32,
    free_svcs: Vec<u32>,
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

fn slot_value(b: &Backend) -> LbValue {
    LbValue {
        addr: maps::addr(b.addr),
        port: maps::port(b.port),
        ..Default::default()
    }
}

fn backend_of(key: &LbKey, value: &LbValue) -> Option<Backend> {
    let proto = match key.proto {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    Some(Backend {
        addr: maps::ip(value.addr),
        port: u16::from_be(value.port),
        proto,
    })
}

/// Which slot each wanted backend takes: a backend that stays keeps its slot, a new one
/// fills a freed slot, and the last slots move down into holes that remain.
fn keep_slots<T: Copy + Eq + std::hash::Hash>(prev: &[T], wanted: &[T]) -> Vec<T> {
    let wanted_set: HashSet<T> = wanted.iter().copied().collect();
    let mut slots: Vec<Option<T>> = prev
        .iter()
        .map(|b| wanted_set.contains(b).then_some(*b))
        .collect();
    let placed: HashSet<T> = slots.iter().flatten().copied().collect();
    let mut fresh = wanted.iter().filter(|b| !placed.contains(b)).copied();
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
    /// Starts from what a previous kube-lb left in the pinned map, so that the first sync
    /// rewrites only what changed meanwhile and established flows keep their backends.
    pub fn adopt(
        services: impl IntoIterator<Item = (LbKey, LbValue)>,
        w: &mut dyn MapWriter,
    ) -> anyhow::Result<Tables> {
        let mut t = Tables::default();
        let mut heads = HashMap::new();
        let mut slots: HashMap<Base, BTreeMap<u16, LbValue>> = HashMap::new();
        for (key, value) in services {
            if key.slot == 0 {
                heads.insert(key, value);
            } else {
                slots
                    .entry(slot_key(&key, 0))
                    .or_default()
                    .insert(key.slot, value);
            }
        }
        for (base, head) in heads {
            let by_slot = slots.remove(&base).unwrap_or_default();
            let mut backends = Vec::new();
            for (slot, value) in by_slot {
                // Slots past the count, or out of sequence, are leftovers of an interrupted
                // write.
                match backend_of(&base, &value) {
                    Some(b) if usize::from(slot) == backends.len() + 1 && slot <= head.count => {
                        backends.push(b)
                    }
                    _ => w.del_service(slot_key(&base, slot.into()))?,
                }
            }
            let head = LbValue {
                count: backends.len() as u16,
                ..head
            };
            *t.service_refs.entry(head.svc_id).or_default() += 1;
            t.next_svc = t.next_svc.max(head.svc_id + 1);
            t.adopted.insert(
                base,
                Installed {
                    head,
                    slots: backends,
                },
            );
        }
        for (base, by_slot) in slots {
            for slot in by_slot.keys() {
                w.del_service(slot_key(&base, (*slot).into()))?;
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
    /// claimed goes.
    pub fn finish_adoption(&mut self, w: &mut dyn MapWriter) -> anyhow::Result<()> {
        for (base, gone) in std::mem::take(&mut self.adopted) {
            self.uninstall(&base, gone, w)?;
        }
        Ok(())
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn frontend_count(&self) -> usize {
        self.services.values().map(|f| f.len()).sum()
    }

    /// Backend slots over all frontends.
    pub fn slot_count(&self) -> usize {
        self.services
            .values()
            .flat_map(|f| f.values())
            .map(|i| i.slots.len())
            .sum()
    }

    fn install(
        &mut self,
        f: &Frontend,
        base: &Base,
        prev: Option<Installed>,
        w: &mut dyn MapWriter,
    ) -> anyhow::Result<Installed> {
        let svc_id = self.acquire_service_port(&f.service_port, prev.as_ref());
        let wanted = &f.backends[..f.backends.len().min(MAX_BACKENDS)];
        let empty = Installed {
            head: LbValue::default(),
            slots: Vec::new(),
        };
        let prev_ref = prev.as_ref().unwrap_or(&empty);
        let slots = keep_slots(&prev_ref.slots, wanted);
        // New slots are written before the head grows to them, and the head shrinks before
        // the slots past it go, so a reader never follows the count to a missing slot.
        for (i, b) in slots.iter().enumerate() {
            if prev_ref.slots.get(i) != Some(b) {
                w.put_service(slot_key(base, i + 1), slot_value(b))?;
            }
        }
        let mut flags = 0;
        if f.affinity_timeout.is_some() {
            flags |= F_AFFINITY;
        }
        if f.snat {
            flags |= F_SNAT;
        }
        if f.drop_when_empty {
            flags |= F_DROP;
        }
        let head = LbValue {
            svc_id,
            count: slots.len() as u16,
            flags,
            affinity_timeout: f.affinity_timeout.unwrap_or(0),
            ..Default::default()
        };
        if prev.is_none() || head != prev_ref.head {
            w.put_service(*base, head)?;
        }
        for slot in slots.len() + 1..=prev_ref.slots.len() {
            w.del_service(slot_key(base, slot))?;
        }
        if let Some(prev) = prev {
            self.release_service_port(prev.head.svc_id);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scope;
    use std::net::Ipv4Addr;

    /// The map as a plain map, counting writes.
    #[derive(Default)]
    struct Memory {
        services: BTreeMap<LbKey, LbValue>,
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
    }

    impl Memory {
        /// The backends a frontend resolves to, in slot order, the way the programs walk it.
        fn resolve(&self, f: &Frontend) -> Vec<Ipv4Addr> {
            let head = self.services[&base(f)];
            (1..=head.count as usize)
                .map(|s| maps::ip(self.services[&slot_key(&base(f), s)].addr))
                .collect()
        }

        fn snapshot(&self) -> Vec<(LbKey, LbValue)> {
            self.services.iter().map(|(k, v)| (*k, *v)).collect()
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
            drop_when_empty: false,
            backends: backends.iter().map(|b| backend(*b)).collect(),
        }
    }

    #[test]
    fn slots_stay_put() {
        assert_eq!(keep_slots(&[1, 2, 3], &[3, 1, 2]), vec![1, 2, 3]);
        assert_eq!(keep_slots(&[1, 2, 3], &[1, 3, 4]), vec![1, 4, 3]);
        assert_eq!(keep_slots(&[1, 2, 3], &[3]), vec![3]);
        assert_eq!(keep_slots(&[1, 2, 3, 4], &[1, 4]), vec![1, 4]);
        assert_eq!(keep_slots::<u8>(&[], &[5, 6]), vec![5, 6]);
        assert_eq!(keep_slots::<u8>(&[5, 6], &[]), Vec::<u8>::new());
    }

    #[test]
    fn an_endpoint_change_rewrites_only_its_slot() {
        let mut m = Memory::default();
        let mut t = Tables::default();
        let f = frontend([10, 96, 0, 10], &[1, 2, 3]);
        t.apply("default/web", std::slice::from_ref(&f), &mut m)
            .unwrap();
        assert_eq!(m.writes, 4, "a head and three slots");
        assert_eq!(m.resolve(&f).len(), 3);

        m.writes = 0;
        let f2 = frontend([10, 96, 0, 10], &[1, 3, 4]);
        t.apply("default/web", std::slice::from_ref(&f2), &mut m)
            .unwrap();
        assert_eq!(m.writes, 1, "backend 4 takes backend 2's slot");
        assert_eq!(
            m.resolve(&f2),
            vec![
                Ipv4Addr::new(10, 244, 0, 1),
                Ipv4Addr::new(10, 244, 0, 4),
                Ipv4Addr::new(10, 244, 0, 3)
            ]
        );

        m.writes = 0;
        let f3 = frontend([10, 96, 0, 10], &[3]);
        t.apply("default/web", std::slice::from_ref(&f3), &mut m)
            .unwrap();
        assert_eq!(m.writes, 4, "slot 1 rewritten, the head, two slots gone");
        assert_eq!(m.resolve(&f3), vec![Ipv4Addr::new(10, 244, 0, 3)]);
        assert_eq!(m.services.len(), 2);
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
        t.apply("default/other", &[], &mut m).unwrap();
        assert!(m.services.is_empty());
        assert_eq!(t.service_count(), 0);
        assert!(t.service_refs.is_empty() && t.service_ports.is_empty());
    }

    #[test]
    fn flags_follow_the_frontend() {
        let mut m = Memory::default();
        let mut t = Tables::default();
        let mut f = frontend([10, 96, 0, 10], &[]);
        f.affinity_timeout = Some(60);
        f.snat = true;
        f.drop_when_empty = true;
        t.apply("default/web", std::slice::from_ref(&f), &mut m)
            .unwrap();
        let head = m.services[&base(&f)];
        assert_eq!(head.count, 0);
        assert_eq!(head.flags, F_AFFINITY | F_SNAT | F_DROP);
        assert_eq!(head.affinity_timeout, 60);
    }

    #[test]
    fn frontends_of_one_service_port_share_an_id() {
        let mut m = Memory::default();
        let mut t = Tables::default();
        let a = frontend([10, 96, 0, 10], &[1]);
        let mut b = frontend([0, 0, 0, 0], &[1]);
        b.scope = Scope::Ext;
        let mut other = frontend([10, 96, 0, 11], &[1]);
        other.service_port = "default/other:".into();
        t.apply("default/web", &[a.clone(), b.clone()], &mut m)
            .unwrap();
        t.apply("default/other", std::slice::from_ref(&other), &mut m)
            .unwrap();
        let id = |f: &Frontend| m.services[&base(f)].svc_id;
        assert_eq!(id(&a), id(&b));
        assert_ne!(id(&a), id(&other));
    }

    #[test]
    fn a_restart_adopts_the_map_and_rewrites_nothing_unchanged() {
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
        let mut t = Tables::adopt(m.snapshot(), &mut m).unwrap();
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

        // A new service port after adoption does not take the adopted id.
        let mut new = frontend([10, 96, 0, 13], &[1]);
        new.service_port = "default/new:".into();
        t.apply("default/new", std::slice::from_ref(&new), &mut m)
            .unwrap();
        assert_ne!(m.services[&base(&new)].svc_id, svc_id);
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
        let services = vec![
            (base(&f), head),
            (slot_key(&base(&f), 1), slot_value(&backend(1))),
            (slot_key(&base(&f), 2), slot_value(&backend(2))),
            (
                slot_key(&base(&frontend([10, 96, 0, 99], &[])), 1),
                slot_value(&backend(9)),
            ),
        ];
        m.services.extend(services.clone());
        let mut t = Tables::adopt(services, &mut m).unwrap();
        assert_eq!(
            m.services.len(),
            2,
            "the slot past the count and the headless one go"
        );
        m.writes = 0;
        t.apply("default/web", std::slice::from_ref(&f), &mut m)
            .unwrap();
        t.finish_adoption(&mut m).unwrap();
        assert_eq!(m.writes, 0);
        assert_eq!(m.resolve(&f), vec![Ipv4Addr::new(10, 244, 0, 1)]);
    }
}
