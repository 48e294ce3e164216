//! The node side of the data path: the socket programs attached to the pods' cgroup, the TC
//! program on every node interface, and the node's addresses, kept current as interfaces and
//! addresses come and go (a CNI bridge appears with the first pod). Runs on its own thread
//! inside the node's network namespace, woken by rtnetlink.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context as _;
use aya::maps::HashMap;
use aya::programs::links::FdLink;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use aya::programs::tc::{self, TcAttachType};
use aya::programs::{CgroupSockAddr, SchedClassifier};
use aya::util::KernelVersion;
use aya::Ebpf;

use crate::maps;

/// The socket programs and their attach types (`enum bpf_attach_type`).
const SOCKET_PROGRAMS: [(&str, u32); 4] = [
    ("kube_lb_connect4", 10),
    ("kube_lb_sendmsg4", 14),
    ("kube_lb_recvmsg4", 19),
    ("kube_lb_getpeername4", 29),
];
const TC_PROGRAM: &str = "kube_lb_ingress";

pub struct NodeOptions {
    /// The cgroup (v2) whose processes get Service translation: the hierarchy's root on a
    /// node, so that pods and the node's own processes both do.
    pub cgroup: PathBuf,
    /// The network namespace of the node's interfaces, when it is not kube-lb's own.
    pub netns: Option<PathBuf>,
    /// Only these interfaces get the TC program; by default every interface with an IPv4
    /// address other than loopback.
    pub interfaces: Option<Vec<String>>,
    /// The pin directory: TC links are pinned under `links/` in it.
    pub bpf_dir: PathBuf,
}

/// Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on a unified host,
/// /sys/fs/cgroup/unified on a hybrid one.
pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .context("no cgroup2 hierarchy is mounted; give --cgroup-path")
}

/// What the node looks like to the data path, reported after every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    pub interfaces: BTreeSet<String>,
    pub addresses: BTreeSet<Ipv4Addr>,
}

/// Attaches everything and keeps it attached; the thread ends with an error, or never.
pub fn spawn(
    bpf: Ebpf,
    opts: NodeOptions,
    report: tokio::sync::watch::Sender<anyhow::Result<NodeState, String>>,
) {
    let netns = opts.netns.clone();
    let failed = report.clone();
    crate::datapath::in_netns(netns, move || {
        if let Err(e) = run(bpf, opts, &report) {
            let _ = failed.send(Err(format!("{e:#}")));
        }
        Ok(())
    });
}

fn run(
    mut bpf: Ebpf,
    opts: NodeOptions,
    report: &tokio::sync::watch::Sender<anyhow::Result<NodeState, String>>,
) -> anyhow::Result<()> {
    // Translated node-port packets are forwarded from TC after a forwarding lookup, which
    // the kernel answers only with forwarding on (as every Kubernetes node has it).
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling net.ipv4.ip_forward")?;
    let cgroup = std::fs::File::open(&opts.cgroup)
        .with_context(|| format!("opening cgroup {}", opts.cgroup.display()))?;
    let links = Links::new(&opts.bpf_dir)?;
    for (name, attach_type) in SOCKET_PROGRAMS {
        let prog: &mut CgroupSockAddr = bpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        let link = link_create(prog.fd()?.as_fd(), cgroup.as_fd(), attach_type)
            .with_context(|| format!("attaching {name} to {}", opts.cgroup.display()))?;
        links.keep(&format!("sock:{name}"), |path| obj_pin(link.as_fd(), path))?;
    }
    let classifier: &mut SchedClassifier = bpf
        .program_mut(TC_PROGRAM)
        .context("no TC program")?
        .try_into()?;
    classifier.load().context("loading the TC program")?;

    let mut node_addrs: HashMap<_, u32, u32> = HashMap::try_from(
        bpf.take_map("lb_node_addrs")
            .context("the BPF object has no map lb_node_addrs")?,
    )?;
    let events = subscribe().context("subscribing to rtnetlink")?;
    // Interface name → ifindex, so that a recreated interface is attached again.
    let mut attached: BTreeMap<String, u32> = BTreeMap::new();
    let mut unpinnable = Vec::new();
    let mut state = NodeState::default();
    loop {
        let (interfaces, addresses) = scan(opts.interfaces.as_deref())?;
        let classifier: &mut SchedClassifier = bpf
            .program_mut(TC_PROGRAM)
            .context("no TC program")?
            .try_into()?;
        attached.retain(|name, index| interfaces.get(name) == Some(index));
        for (name, index) in &interfaces {
            if attached.contains_key(name) {
                continue;
            }
            if KernelVersion::current().is_ok_and(|v| v < KernelVersion::new(6, 6, 0)) {
                // Before TCX, TC programs hang off a clsact qdisc.
                let _ = tc::qdisc_add_clsact(name);
            }
            match classifier.attach(name, TcAttachType::Ingress) {
                Ok(link) => {
                    let link = classifier.take_link(link)?;
                    if <&FdLink>::try_from(&link).is_ok() {
                        let fd = FdLink::try_from(link)?;
                        links.keep(&format!("tc:{name}"), |path| {
                            fd.pin(path).map(drop).map_err(std::io::Error::other)
                        })?;
                    } else {
                        // A netlink attachment (kernels before TCX) cannot be pinned: it
                        // lasts as long as this process holds it.
                        unpinnable.push(link);
                    }
                    tracing::info!(interface = %name, "attached the TC program");
                    attached.insert(name.clone(), *index);
                }
                // The interface may have gone since the scan; the next event says so.
                Err(e) => tracing::warn!(interface = %name, "attaching the TC program: {e}"),
            }
        }
        let wanted: BTreeSet<u32> = addresses.iter().map(|a| maps::addr(*a)).collect();
        let present: Vec<u32> = node_addrs.keys().filter_map(Result::ok).collect();
        for addr in &present {
            if !wanted.contains(addr) {
                let _ = node_addrs.remove(addr);
            }
        }
        for addr in &wanted {
            if !present.contains(addr) {
                node_addrs.insert(*addr, 1, 0)?;
            }
        }
        let now = NodeState {
            interfaces: attached.keys().cloned().collect(),
            addresses,
        };
        if now != state {
            tracing::info!(interfaces = ?now.interfaces, addresses = ?now.addresses, "node changed");
            state = now;
            if report.send(Ok(state.clone())).is_err() {
                return Ok(());
            }
        }
        wait(&events)?;
    }
}

/// Links pinned on bpffs, so that they outlive this process: while kube-lb restarts, the
/// programs stay attached (node-port flows keep being translated, new connections to cluster
/// IPs too); the next kube-lb attaches its own beside them and only then unpins the old links,
/// which detaches them. Removing the pin directory detaches everything.
struct Links {
    dir: PathBuf,
    /// Distinguishes this process's pins from a predecessor's.
    tag: String,
}

impl Links {
    fn new(bpf_dir: &std::path::Path) -> anyhow::Result<Links> {
        let dir = bpf_dir.join("links");
        std::fs::create_dir_all(&dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Ok(Links {
            dir,
            tag: format!("{}-{nanos}", std::process::id()),
        })
    }

    /// Pins a new link as `<what>:<tag>` (interface names cannot hold a colon), then unpins
    /// the predecessor's links for the same `what`.
    fn keep(
        &self,
        what: &str,
        pin: impl FnOnce(&std::path::Path) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        pin(&self.dir.join(format!("{what}:{}", self.tag)))
            .with_context(|| format!("pinning the {what} link"))?;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name
                .rsplit_once(':')
                .is_some_and(|(head, tag)| head == what && tag != self.tag)
            {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// `bpf(BPF_LINK_CREATE)` for a cgroup program. aya makes such links too, but cannot hand
/// them over for pinning.
fn link_create(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> std::io::Result<OwnedFd> {
    const BPF_LINK_CREATE: libc::c_long = 28;
    // union bpf_attr's link_create: prog_fd, target_fd, attach_type, flags.
    let mut attr = [0u32; 32];
    attr[0] = prog.as_raw_fd() as u32;
    attr[1] = cgroup.as_raw_fd() as u32;
    attr[2] = attach_type;
    // SAFETY: attr outlives the call and is as large as the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `bpf(BPF_OBJ_PIN)`: the object behind `fd` at `path` on bpffs.
fn obj_pin(fd: BorrowedFd<'_>, path: &std::path::Path) -> std::io::Result<()> {
    const BPF_OBJ_PIN: libc::c_long = 6;
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // union bpf_attr's obj_pin: pathname (a pointer), bpf_fd.
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        rest: [u32; 29],
    }
    let attr = ObjPin {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        rest: [0; 29],
    };
    // SAFETY: attr and the path it points to outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            &attr as *const ObjPin,
            std::mem::size_of::<ObjPin>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The interfaces that get the TC program (name → ifindex) and the node's IPv4 addresses.
fn scan(only: Option<&[String]>) -> anyhow::Result<(BTreeMap<String, u32>, BTreeSet<Ipv4Addr>)> {
    let mut interfaces = BTreeMap::new();
    let mut addresses = BTreeSet::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let Some(v4) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        let ip = v4.ip();
        if ip.is_loopback() {
            continue;
        }
        addresses.insert(ip);
        let wanted = only.is_none_or(|names| names.contains(&ifa.interface_name));
        if wanted {
            if let Ok(index) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) {
                interfaces.insert(ifa.interface_name.clone(), index);
            }
        }
    }
    if let Some(names) = only {
        for name in names {
            if let Ok(index) = nix::net::if_::if_nametoindex(name.as_str()) {
                interfaces.insert(name.clone(), index);
            }
        }
    }
    Ok((interfaces, addresses))
}

fn subscribe() -> anyhow::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{
        bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let groups = (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR) as u32;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, groups),
    )?;
    Ok(fd)
}

/// Blocks until rtnetlink reports a link or address change; what changed is read by the
/// next scan, so the message itself is not parsed.
fn wait(events: &std::os::fd::OwnedFd) -> anyhow::Result<()> {
    let mut buf = [0u8; 16384];
    nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(events),
        &mut buf,
        nix::sys::socket::MsgFlags::empty(),
    )?;
    Ok(())
}
