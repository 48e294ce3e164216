//! Cutting a cluster CIDR into per-node ranges (IPv4), as upstream's cidrset.

use std::net::Ipv4Addr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrSet {
    base: u32,
    prefix: u8,
    node_mask: u8,
}

impl CidrSet {
    pub fn new(cluster_cidr: &str, node_mask: u8) -> Result<CidrSet, String> {
        let (addr, prefix) = cluster_cidr
            .split_once('/')
            .ok_or_else(|| format!("invalid CIDR address: {cluster_cidr}"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("only IPv4 cluster CIDRs are supported: {cluster_cidr}"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("invalid CIDR address: {cluster_cidr}"))?;
        if node_mask < prefix || node_mask > 32 {
            return Err(format!(
                "the node CIDR mask size {node_mask} must be between the cluster CIDR's prefix {prefix} and 32"
            ));
        }
        if node_mask - prefix > 24 {
            return Err("the cluster CIDR holds too many node ranges".into());
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(CidrSet {
            base: u32::from(addr) & mask,
            prefix,
            node_mask,
        })
    }

    pub fn len(&self) -> usize {
        1usize << (self.node_mask - self.prefix)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn range(&self, index: usize) -> String {
        let step = if self.node_mask == 32 {
            1
        } else {
            1u64 << (32 - self.node_mask)
        };
        let addr = (u64::from(self.base) + index as u64 * step) as u32;
        format!("{}/{}", Ipv4Addr::from(addr), self.node_mask)
    }

    /// The index of a node range inside this set, if it is one of ours.
    pub fn index_of(&self, cidr: &str) -> Option<usize> {
        let (addr, mask) = cidr.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        if mask.parse::<u8>().ok()? != self.node_mask {
            return None;
        }
        let offset = u32::from(addr).checked_sub(self.base)?;
        let step = if self.node_mask == 32 {
            1
        } else {
            1u64 << (32 - self.node_mask)
        };
        let index = (u64::from(offset) / step) as usize;
        (index < self.len() && u64::from(offset) % step == 0).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_in_order() {
        let s = CidrSet::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(s.len(), 256);
        assert_eq!(s.range(0), "10.244.0.0/24");
        assert_eq!(s.range(3), "10.244.3.0/24");
        assert_eq!(s.index_of("10.244.3.0/24"), Some(3));
        assert_eq!(s.index_of("10.245.0.0/24"), None);
        assert!(CidrSet::new("10.0.0.0/24", 16).is_err());
        assert!(CidrSet::new("fd00::/64", 80).is_err());
    }
}
