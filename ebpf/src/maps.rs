//! The BPF maps' keys and values, laid out exactly as `bpf/lb.h` declares them (addresses and
//! ports in network byte order).

use std::net::Ipv4Addr;

pub const SCOPE_SOCK: u8 = 0;
pub const SCOPE_EXT: u8 = 1;
pub const F_AFFINITY: u16 = 0x1;
pub const F_SNAT: u16 = 0x2;
pub const F_DROP: u16 = 0x4;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LbKey {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
    pub scope: u8,
    pub slot: u16,
    pub pad: u16,
}

/// Slot 0 of a frontend (the head) or one of its backend slots; see `bpf/lb.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbValue {
    pub svc_id: u32,
    pub addr: u32,
    pub port: u16,
    pub count: u16,
    pub flags: u16,
    pub pad: u16,
    pub affinity_timeout: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub dir: u8,
    pub pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    pub new_saddr: u32,
    pub new_daddr: u32,
    pub new_sport: u16,
    pub new_dport: u16,
    pub faddr: u32,
    pub slot: u16,
    pub pad: u16,
    pub pad2: u32,
    pub last_seen_ns: u64,
}

// SAFETY: plain C structs of integers with no padding holes left uninitialised (every gap
// is an explicit field), so any bit pattern is valid and they can be copied to the kernel.
unsafe impl aya::Pod for LbKey {}
unsafe impl aya::Pod for LbValue {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for CtValue {}

/// An address as the programs see it: the octets in memory order.
pub fn addr(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub fn ip(addr: u32) -> Ipv4Addr {
    Ipv4Addr::from(addr.to_ne_bytes())
}

/// A port as the programs see it: network byte order.
pub fn port(p: u16) -> u16 {
    p.to_be()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_lb_h() {
        assert_eq!(std::mem::size_of::<LbKey>(), 12);
        assert_eq!(std::mem::size_of::<LbValue>(), 20);
        assert_eq!(std::mem::size_of::<CtKey>(), 16);
        assert_eq!(std::mem::size_of::<CtValue>(), 32);
    }

    #[test]
    fn addresses_keep_memory_order() {
        let ip4 = Ipv4Addr::new(10, 96, 0, 1);
        assert_eq!(addr(ip4).to_ne_bytes(), [10, 96, 0, 1]);
        assert_eq!(ip(addr(ip4)), ip4);
        assert_eq!(port(80).to_ne_bytes(), [0, 80]);
    }
}
