//! Pod and container security contexts as CRI security contexts (upstream's
//! `security_context.go`, `security_context_others.go`, `pkg/securitycontext`, the seccomp and
//! AppArmor helpers of `helpers.go`, and `kuberuntime/util`'s namespace modes).

use std::path::Path;

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext,
};

use super::{format_pod, ConfigError};
use crate::runtime::api::security_profile::ProfileType;
use crate::runtime::api::{
    Capability, Int64Value, LinuxContainerSecurityContext, NamespaceMode, NamespaceOption,
    SeLinuxOption, SecurityProfile, SupplementalGroupsPolicy, UserNamespace,
};

/// Paths under /proc and /sys hidden from containers unless `procMount: Unmasked` (upstream
/// keeps them in sync with moby's defaults).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths mounted read-only unless `procMount: Unmasked`.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where the security settings of containers come from on this node.
#[derive(Debug, Clone, Copy)]
pub struct SecurityOptions<'a> {
    /// `<root-dir>/seccomp`: Localhost seccomp profiles are relative to it.
    pub seccomp_profile_root: &'a Path,
    /// `--seccomp-default`: containers without a profile get RuntimeDefault, not Unconfined.
    pub seccomp_default: bool,
    /// Extra groups from the pod's volumes (the `pv.beta.kubernetes.io/gid` annotations).
    pub extra_supplemental_groups: &'a [i64],
}

/// Upstream's `DetermineEffectiveSecurityContext`: the pod's settings that a container can
/// also set (SELinux, run-as user/group, runAsNonRoot, Windows options) overridden field by
/// field by the container's.
pub fn effective_security_context(pod: &Pod, container: &Container) -> SecurityContext {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut sc = match pod_sc {
        Some(p) => SecurityContext {
            se_linux_options: p.se_linux_options.clone(),
            windows_options: p.windows_options.clone(),
            run_as_user: p.run_as_user,
            run_as_group: p.run_as_group,
            run_as_non_root: p.run_as_non_root,
            ..Default::default()
        },
        None => SecurityContext::default(),
    };
    let Some(c) = container.security_context.as_ref() else {
        return sc;
    };
    if c.se_linux_options.is_some() {
        sc.se_linux_options = c.se_linux_options.clone();
    }
    if let Some(cw) = c.windows_options.as_ref() {
        let w = sc.windows_options.get_or_insert_with(Default::default);
        if cw.gmsa_credential_spec_name.is_some() || cw.gmsa_credential_spec.is_some() {
            w.gmsa_credential_spec_name = cw.gmsa_credential_spec_name.clone();
            w.gmsa_credential_spec = cw.gmsa_credential_spec.clone();
        }
        if cw.run_as_user_name.is_some() {
            w.run_as_user_name = cw.run_as_user_name.clone();
        }
        if cw.host_process.is_some() {
            w.host_process = cw.host_process;
        }
    }
    macro_rules! take {
        ($($field:ident),*) => {$(
            if c.$field.is_some() {
                sc.$field = c.$field.clone();
            }
        )*};
    }
    take!(
        capabilities,
        privileged,
        run_as_user,
        run_as_group,
        run_as_non_root,
        read_only_root_filesystem,
        allow_privilege_escalation,
        proc_mount
    );
    sc
}

/// Whether the container gets `no_new_privs`: when `allowPrivilegeEscalation` is false
/// (upstream's `AddNoNewPrivileges`). The apiserver rejects that setting together with
/// `privileged` or `CAP_SYS_ADMIN`; pods that skipped validation (static pods) get the same
/// answer here rather than a container that cannot do what it was granted.
pub fn no_new_privs(sc: &SecurityContext) -> bool {
    if sc.allow_privilege_escalation != Some(false) {
        return false;
    }
    let privileged = sc.privileged == Some(true);
    let sys_admin = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_ref())
        .is_some_and(|add| add.iter().any(|c| c == "SYS_ADMIN" || c == "CAP_SYS_ADMIN"));
    !privileged && !sys_admin
}

fn unmasked(proc_mount: Option<&str>) -> bool {
    proc_mount == Some("Unmasked")
}

/// Upstream's `ConvertToRuntimeMaskedPaths`.
pub fn masked_paths(proc_mount: Option<&str>) -> Vec<String> {
    if unmasked(proc_mount) {
        return Vec::new();
    }
    DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect()
}

/// Upstream's `ConvertToRuntimeReadonlyPaths`.
pub fn readonly_paths(proc_mount: Option<&str>) -> Vec<String> {
    if unmasked(proc_mount) {
        return Vec::new();
    }
    DEFAULT_READONLY_PATHS
        .iter()
        .map(|p| p.to_string())
        .collect()
}

fn profile(kind: ProfileType, localhost_ref: String) -> SecurityProfile {
    SecurityProfile {
        profile_type: kind as i32,
        localhost_ref,
    }
}

fn field_seccomp_profile(p: &SeccompProfile, root: &Path) -> Result<SecurityProfile, ConfigError> {
    match p.type_.as_str() {
        "RuntimeDefault" => Ok(profile(ProfileType::RuntimeDefault, String::new())),
        "Localhost" => match p.localhost_profile.as_deref().filter(|l| !l.is_empty()) {
            Some(l) => Ok(profile(
                ProfileType::Localhost,
                root.join(l).to_string_lossy().into_owned(),
            )),
            None => Err(ConfigError::new(
                "localhostProfile must be set if seccompProfile type is Localhost.",
            )),
        },
        _ => Ok(profile(ProfileType::Unconfined, String::new())),
    }
}

/// Upstream's `getSeccompProfile`: the container's profile, else the pod's, else RuntimeDefault
/// with `--seccomp-default` and Unconfined without.
pub fn seccomp_profile(
    pod_sc: Option<&PodSecurityContext>,
    container_sc: Option<&SecurityContext>,
    root: &Path,
    seccomp_default: bool,
) -> Result<SecurityProfile, ConfigError> {
    if let Some(p) = container_sc.and_then(|c| c.seccomp_profile.as_ref()) {
        return field_seccomp_profile(p, root);
    }
    if let Some(p) = pod_sc.and_then(|c| c.seccomp_profile.as_ref()) {
        return field_seccomp_profile(p, root);
    }
    if seccomp_default {
        return Ok(profile(ProfileType::RuntimeDefault, String::new()));
    }
    Ok(profile(ProfileType::Unconfined, String::new()))
}

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Upstream's `apparmor.GetProfile`: the container's field, else the deprecated per-container
/// annotation (static pods may still use it), else the pod's field.
fn apparmor_source(pod: &Pod, container: &Container) -> Option<AppArmorProfile> {
    if let Some(p) = container
        .security_context
        .as_ref()
        .and_then(|c| c.app_armor_profile.clone())
    {
        return Some(p);
    }
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{APPARMOR_ANNOTATION_PREFIX}{}", container.name)));
    if let Some(value) = annotation {
        let parsed = match value.as_str() {
            "runtime/default" => Some(AppArmorProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            "unconfined" => Some(AppArmorProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            }),
            v => v.strip_prefix("localhost/").map(|name| AppArmorProfile {
                type_: "Localhost".into(),
                localhost_profile: Some(name.to_string()),
            }),
        };
        if parsed.is_some() {
            return parsed;
        }
    }
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.app_armor_profile.clone())
}

/// The container's AppArmor profile, with the deprecated string form older runtimes read
/// (upstream's `getAppArmorProfile`); `None` leaves the runtime's default.
pub fn apparmor_profile(
    pod: &Pod,
    container: &Container,
) -> Result<Option<(SecurityProfile, String)>, ConfigError> {
    let Some(p) = apparmor_source(pod, container) else {
        return Ok(None);
    };
    match p.type_.as_str() {
        "RuntimeDefault" => Ok(Some((
            profile(ProfileType::RuntimeDefault, String::new()),
            "runtime/default".to_string(),
        ))),
        "Unconfined" => Ok(Some((
            profile(ProfileType::Unconfined, String::new()),
            "unconfined".to_string(),
        ))),
        "Localhost" => {
            let name = p
                .localhost_profile
                .ok_or_else(|| ConfigError::new("missing localhost apparmor profile name"))?;
            Ok(Some((
                profile(ProfileType::Localhost, name.clone()),
                format!("localhost/{name}"),
            )))
        }
        other => Err(ConfigError(format!(
            "unknown apparmor profile type: {}",
            super::go_quote(other)
        ))),
    }
}

/// The pod's namespaces (upstream's `NamespacesForPod`): host network/IPC/PID when asked for,
/// a pod-wide PID namespace with `shareProcessNamespace`, a PID namespace per container
/// otherwise. User namespaces are the node's: `hostUsers: false` needs ID-mapped mounts this
/// kubelet does not set up, so such pods are refused instead of silently run as host users.
pub fn namespace_options(pod: &Pod) -> Result<NamespaceOption, ConfigError> {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    if spec.and_then(|s| s.host_users) == Some(false) {
        return Err(ConfigError::new(
            "user namespaces (spec.hostUsers: false) are not supported by this kubelet",
        ));
    }
    let mode = |host: bool| if host { NamespaceMode::Node } else { NamespaceMode::Pod } as i32;
    let pid = if flag(|s| s.host_pid) {
        NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    Ok(NamespaceOption {
        network: mode(flag(|s| s.host_network)),
        ipc: mode(flag(|s| s.host_ipc)),
        pid: pid as i32,
        target_id: String::new(),
        userns_options: Some(UserNamespace {
            mode: NamespaceMode::Node as i32,
            ..Default::default()
        }),
    })
}

/// `supplementalGroupsPolicy` as CRI's enum.
pub(crate) fn supplemental_groups_policy(policy: Option<&str>) -> Result<i32, ConfigError> {
    match policy {
        None => Ok(SupplementalGroupsPolicy::Merge as i32),
        Some(p) => SupplementalGroupsPolicy::from_str_name(p)
            .map(|p| p as i32)
            .ok_or_else(|| ConfigError(format!("unsupported supplementalGroupsPolicy: {p}"))),
    }
}

pub(crate) fn selinux_option(o: &k8s_openapi::api::core::v1::SELinuxOptions) -> SeLinuxOption {
    SeLinuxOption {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        r#type: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
    }
}

/// The container's CRI security context (upstream's `determineEffectiveSecurityContext`).
/// `image_uid`/`image_user` are the image's configured user, used when neither pod nor
/// container sets `runAsUser`.
pub fn linux_container_security_context(
    pod: &Pod,
    container: &Container,
    image_uid: Option<i64>,
    image_user: &str,
    opts: &SecurityOptions<'_>,
) -> Result<LinuxContainerSecurityContext, ConfigError> {
    let eff = effective_security_context(pod, container);
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut sc = LinuxContainerSecurityContext {
        capabilities: eff.capabilities.as_ref().map(|c| Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: eff.privileged.unwrap_or(false),
        selinux_options: eff.se_linux_options.as_ref().map(selinux_option),
        run_as_user: eff.run_as_user.map(|value| Int64Value { value }),
        run_as_group: eff.run_as_group.map(|value| Int64Value { value }),
        readonly_rootfs: eff.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: no_new_privs(&eff),
        masked_paths: masked_paths(eff.proc_mount.as_deref()),
        readonly_paths: readonly_paths(eff.proc_mount.as_deref()),
        seccomp: Some(seccomp_profile(
            pod_sc,
            container.security_context.as_ref(),
            opts.seccomp_profile_root,
            opts.seccomp_default,
        )?),
        namespace_options: Some(namespace_options(pod)?),
        ..Default::default()
    };
    if let Some((profile, deprecated)) = apparmor_profile(pod, container)? {
        sc.apparmor = Some(profile);
        #[allow(deprecated)]
        {
            sc.apparmor_profile = deprecated;
        }
    }
    if sc.run_as_user.is_none() {
        sc.run_as_user = image_uid.map(|value| Int64Value { value });
        sc.run_as_username = image_user.to_string();
    }
    if let Some(p) = pod_sc {
        sc.supplemental_groups.extend(p.fs_group);
        sc.supplemental_groups
            .extend(p.supplemental_groups.iter().flatten().copied());
        sc.supplemental_groups_policy =
            supplemental_groups_policy(p.supplemental_groups_policy.as_deref())?;
    }
    sc.supplemental_groups
        .extend_from_slice(opts.extra_supplemental_groups);
    Ok(sc)
}

/// Upstream's `verifyRunAsNonRoot`: with `runAsNonRoot`, the container must not run as uid 0,
/// and an image user that is a name rather than a number cannot be checked and is refused.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    image_uid: Option<i64>,
    image_user_name: Option<&str>,
) -> Result<(), String> {
    let eff = effective_security_context(pod, container);
    if eff.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = format!(
        "(pod: {}, container: {})",
        super::go_quote(&format_pod(pod)),
        container.name
    );
    if let Some(uid) = eff.run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy {who}"
            ));
        }
        return Ok(());
    }
    match (image_uid, image_user_name.filter(|u| !u.is_empty())) {
        (None, Some(name)) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root {who}"
        )),
        (Some(0), _) => Err(format!("container has runAsNonRoot and image will run as root {who}")),
        (Some(uid), _) if !(0..=i64::from(i32::MAX)).contains(&uid) => Err(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be 1-({})): must be between 0 and {}, inclusive {who}",
            i32::MAX,
            i32::MAX
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(
        pod_sc: Option<PodSecurityContext>,
        container_sc: Option<SecurityContext>,
    ) -> (Pod, Container) {
        let c = Container {
            name: "app".into(),
            security_context: container_sc,
            ..Default::default()
        };
        let p = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![c.clone()],
                security_context: pod_sc,
                ..Default::default()
            }),
            ..Default::default()
        };
        (p, c)
    }

    fn opts() -> SecurityOptions<'static> {
        SecurityOptions {
            seccomp_profile_root: Path::new("/var/lib/kubelet/seccomp"),
            seccomp_default: false,
            extra_supplemental_groups: &[],
        }
    }

    #[test]
    fn run_as_non_root_messages() {
        let non_root = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        });
        let (p, c) = pod(non_root.clone(), None);
        assert_eq!(
            verify_run_as_non_root(&p, &c, Some(0), None).unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"web_ns(u1)\", container: app)"
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, None, Some("nginx")).unwrap_err(),
            "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root (pod: \"web_ns(u1)\", container: app)"
        );
        assert!(verify_run_as_non_root(&p, &c, Some(1000), None).is_ok());
        assert!(verify_run_as_non_root(&p, &c, None, None).is_ok());
        // An explicit runAsUser settles it, whatever the image says.
        let (p, c) = pod(
            non_root.clone(),
            Some(SecurityContext {
                run_as_user: Some(1000),
                ..Default::default()
            }),
        );
        assert!(verify_run_as_non_root(&p, &c, Some(0), Some("root")).is_ok());
        let (p, c) = pod(
            non_root,
            Some(SecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, None, None).unwrap_err(),
            "container's runAsUser breaks non-root policy (pod: \"web_ns(u1)\", container: app)"
        );
        // The container can switch the check off.
        let (p, c) = pod(
            Some(PodSecurityContext {
                run_as_non_root: Some(true),
                ..Default::default()
            }),
            Some(SecurityContext {
                run_as_non_root: Some(false),
                ..Default::default()
            }),
        );
        assert!(verify_run_as_non_root(&p, &c, Some(0), None).is_ok());
    }

    #[test]
    fn container_overrides_pod() {
        let (p, c) = pod(
            Some(PodSecurityContext {
                run_as_user: Some(1),
                run_as_group: Some(2),
                fs_group: Some(3),
                supplemental_groups: Some(vec![4, 5]),
                supplemental_groups_policy: Some("Strict".into()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            Some(SecurityContext {
                run_as_user: Some(10),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                allow_privilege_escalation: Some(false),
                ..Default::default()
            }),
        );
        let opts = SecurityOptions {
            extra_supplemental_groups: &[6],
            ..opts()
        };
        let sc = linux_container_security_context(&p, &c, Some(99), "img", &opts).unwrap();
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 10 }));
        assert_eq!(sc.run_as_username, "");
        assert_eq!(sc.run_as_group, Some(Int64Value { value: 2 }));
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(sc.supplemental_groups, [3, 4, 5, 6]);
        assert_eq!(
            sc.supplemental_groups_policy,
            SupplementalGroupsPolicy::Strict as i32
        );
        let caps = sc.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            ProfileType::RuntimeDefault as i32
        );
        assert_eq!(sc.masked_paths.len(), 11);
        assert_eq!(sc.readonly_paths, DEFAULT_READONLY_PATHS);
        let ns = sc.namespace_options.unwrap();
        assert_eq!(
            (ns.network, ns.ipc, ns.pid),
            (
                NamespaceMode::Pod as i32,
                NamespaceMode::Pod as i32,
                NamespaceMode::Container as i32
            )
        );
    }

    #[test]
    fn image_user_fills_in() {
        let (p, c) = pod(None, None);
        let sc = linux_container_security_context(&p, &c, Some(1000), "", &opts()).unwrap();
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1000 }));
        let sc = linux_container_security_context(&p, &c, None, "nginx", &opts()).unwrap();
        assert_eq!(
            (sc.run_as_user, sc.run_as_username.as_str()),
            (None, "nginx")
        );
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            ProfileType::Unconfined as i32
        );
        assert!(!sc.no_new_privs);
        assert!(sc.apparmor.is_none());
    }

    #[test]
    fn no_new_privs_rule() {
        let sc = |ape: Option<bool>, privileged: Option<bool>, add: &[&str]| SecurityContext {
            allow_privilege_escalation: ape,
            privileged,
            capabilities: Some(Capabilities {
                add: Some(add.iter().map(|s| s.to_string()).collect()),
                drop: None,
            }),
            ..Default::default()
        };
        assert!(!no_new_privs(&sc(None, None, &[])));
        assert!(!no_new_privs(&sc(Some(true), None, &[])));
        assert!(no_new_privs(&sc(Some(false), None, &[])));
        assert!(!no_new_privs(&sc(Some(false), Some(true), &[])));
        assert!(!no_new_privs(&sc(Some(false), None, &["SYS_ADMIN"])));
        assert!(!no_new_privs(&sc(Some(false), None, &["CAP_SYS_ADMIN"])));
    }

    #[test]
    fn seccomp_profiles() {
        let root = Path::new("/var/lib/kubelet/seccomp");
        let local = SecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: Some("profiles/audit.json".into()),
            }),
            ..Default::default()
        };
        let p = seccomp_profile(None, Some(&local), root, false).unwrap();
        assert_eq!(p.profile_type, ProfileType::Localhost as i32);
        assert_eq!(
            p.localhost_ref,
            "/var/lib/kubelet/seccomp/profiles/audit.json"
        );
        let unconfined_pod = PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        };
        let p = seccomp_profile(Some(&unconfined_pod), None, root, true).unwrap();
        assert_eq!(p.profile_type, ProfileType::Unconfined as i32);
        let p = seccomp_profile(None, None, root, true).unwrap();
        assert_eq!(p.profile_type, ProfileType::RuntimeDefault as i32);
        let bad = SecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Localhost".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            seccomp_profile(None, Some(&bad), root, false)
                .unwrap_err()
                .0,
            "localhostProfile must be set if seccompProfile type is Localhost."
        );
    }

    #[test]
    fn apparmor_sources() {
        let (mut p, c) = pod(
            Some(PodSecurityContext {
                app_armor_profile: Some(AppArmorProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            None,
        );
        let (prof, old) = apparmor_profile(&p, &c).unwrap().unwrap();
        assert_eq!(
            (prof.profile_type, old.as_str()),
            (ProfileType::RuntimeDefault as i32, "runtime/default")
        );
        p.metadata.annotations = Some(
            [(
                "container.apparmor.security.beta.kubernetes.io/app".to_string(),
                "localhost/k8s-deny-write".to_string(),
            )]
            .into(),
        );
        let (prof, old) = apparmor_profile(&p, &c).unwrap().unwrap();
        assert_eq!(prof.profile_type, ProfileType::Localhost as i32);
        assert_eq!(
            (prof.localhost_ref.as_str(), old.as_str()),
            ("k8s-deny-write", "localhost/k8s-deny-write")
        );
    }

    #[test]
    fn proc_mount_unmasked() {
        assert!(masked_paths(Some("Unmasked")).is_empty());
        assert!(readonly_paths(Some("Unmasked")).is_empty());
        assert_eq!(masked_paths(Some("Default")).len(), 11);
    }

    #[test]
    fn namespaces() {
        let (mut p, _) = pod(None, None);
        if let Some(s) = p.spec.as_mut() {
            s.host_network = Some(true);
            s.host_ipc = Some(true);
            s.share_process_namespace = Some(true);
        }
        let ns = namespace_options(&p).unwrap();
        assert_eq!(
            (ns.network, ns.ipc, ns.pid),
            (
                NamespaceMode::Node as i32,
                NamespaceMode::Node as i32,
                NamespaceMode::Pod as i32
            )
        );
        if let Some(s) = p.spec.as_mut() {
            s.host_pid = Some(true);
        }
        assert_eq!(
            namespace_options(&p).unwrap().pid,
            NamespaceMode::Node as i32
        );
        if let Some(s) = p.spec.as_mut() {
            s.host_users = Some(false);
        }
        assert!(namespace_options(&p).is_err());
    }
}
