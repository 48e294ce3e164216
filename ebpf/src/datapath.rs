//! Loading the BPF object and owning its maps. The programs' maps are pinned under a bpffs
//! directory by name, so a restarted kube-lb finds the tables and connection tracking its
//! predecessor left and established flows keep their translations.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::maps::{HashMap, Map, MapData};
use aya::{Ebpf, EbpfLoader};

use crate::maps::{CtKey, CtValue, LbKey, LbValue};
use crate::tables::{MapWriter, Tables};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kube_lb.o"));

const BPF_FS_MAGIC: u32 = 0xcafe4a11;

/// The map kube-lb writes from its sync loop: frontends and their backend slots.
pub struct Maps {
    pub services: HashMap<MapData, LbKey, LbValue>,
}

/// The pinned connection-tracking map, opened again for counting.
pub struct ConnTrack(std::sync::Mutex<HashMap<MapData, CtKey, CtValue>>);

impl ConnTrack {
    pub fn open(pin_dir: &Path) -> anyhow::Result<ConnTrack> {
        let data = MapData::from_pin(pin_dir.join("lb_ct")).context("opening the pinned lb_ct")?;
        Ok(ConnTrack(std::sync::Mutex::new(HashMap::try_from(
            Map::LruHashMap(data),
        )?)))
    }

    pub fn count(&self) -> usize {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.keys().count()
    }
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there, as a node agent has to on a
/// host that did not.
fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if !dir.starts_with(root) {
        return Ok(());
    }
    let on_bpffs = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type().0 as u32 == BPF_FS_MAGIC)
            .unwrap_or(false)
    };
    if on_bpffs(root) {
        return Ok(());
    }
    std::fs::create_dir_all(root)?;
    let mounted = nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    // Another kube-lb may have mounted it meanwhile.
    if mounted.is_err() && !on_bpffs(root) {
        mounted.context("mounting bpffs at /sys/fs/bpf")?;
    }
    Ok(())
}

/// Loads the programs (not yet attached) and takes out the maps the sync loop writes.
pub fn load(pin_dir: &Path) -> anyhow::Result<(Ebpf, Maps)> {
    ensure_bpffs(pin_dir)?;
    std::fs::create_dir_all(pin_dir)
        .with_context(|| format!("creating the pin directory {}", pin_dir.display()))?;
    let mut bpf = EbpfLoader::new()
        .map_pin_path(pin_dir)
        .load(OBJECT)
        .context("loading the BPF object")?;
    let mut take = |name: &str| -> anyhow::Result<Map> {
        bpf.take_map(name)
            .with_context(|| format!("the BPF object has no map {name}"))
    };
    let maps = Maps {
        services: HashMap::try_from(take("lb_services")?)?,
    };
    Ok((bpf, maps))
}

/// Removes a pin directory and the maps pinned in it (tests, and `kube-lb --cleanup`).
pub fn unpin(pin_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(pin_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Maps {
    /// Picks up what a previous kube-lb left in the pinned maps.
    pub fn adopt(&mut self) -> anyhow::Result<Tables> {
        let services: Vec<_> = self.services.iter().filter_map(Result::ok).collect();
        Tables::adopt(services, self)
    }
}

fn absent_ok(r: Result<(), aya::maps::MapError>) -> anyhow::Result<()> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        r => Ok(r?),
    }
}

impl MapWriter for Maps {
    fn put_service(&mut self, key: LbKey, value: LbValue) -> anyhow::Result<()> {
        Ok(self.services.insert(key, value, 0)?)
    }
    fn del_service(&mut self, key: LbKey) -> anyhow::Result<()> {
        absent_ok(self.services.remove(&key))
    }
}

/// Runs `f` on a new thread inside the network namespace at `netns` (or this one), for the
/// work that names interfaces.
pub fn in_netns<T: Send + 'static>(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<anyhow::Result<T>> {
    std::thread::spawn(move || {
        if let Some(path) = netns {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("opening network namespace {}", path.display()))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {}", path.display()))?;
        }
        f()
    })
}
