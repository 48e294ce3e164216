//! Making sure a container's image is on the node before the container is created, as
//! upstream's image manager does: the pull policy (`Always`, `IfNotPresent`, `Never`), the
//! pod's image pull secrets matched to the image's registry as upstream's keyring matches them,
//! a per pod and image back-off after a failed pull (10s doubling to 300s), and upstream's
//! event texts, returned for the caller to record.
//!
//! Left out: the node's own credentials (`config.json`, credential provider plugins), the
//! `KubeletEnsureSecretPulledImages` checks (alpha, off in 1.33), and serialised or
//! rate-limited pulls (each call pulls at once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use tokio::time::Instant;

use crate::events::Kind as EventType;
use crate::prober::gofmt::{self, quote};
use crate::runtime::{api, Runtime};

/// The runtime's id of an image (`sha256:...`), as `PullImage` and `ImageStatus` give it.
pub type ImageRef = String;

/// Upstream's back-off for image pulls: 10s, doubling, at most 300s.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

// ---- image names ------------------------------------------------------------------------------

/// An image reference in docker's grammar, normalised as `ParseNormalizedNamed` does
/// (`busybox` is `docker.io/library/busybox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// The registry host (and port); empty in the rare name whose first part is no host.
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageName {
    /// Parses `image`; the error is the reference library's text.
    pub fn parse(image: &str) -> Result<ImageName, String> {
        if image.len() == 64
            && image
                .bytes()
                .all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9'))
        {
            return Err(format!(
                "invalid repository name ({image}), cannot specify 64-byte hexadecimal strings"
            ));
        }
        let (domain, remainder) = split_docker_domain(image);
        let remote = remainder.split(':').next().unwrap_or("");
        if remote.to_lowercase() != remote {
            return Err(format!(
                "invalid reference format: repository name ({remote}) must be lowercase"
            ));
        }
        parse_reference(&format!("{domain}/{remainder}"))
    }

    /// The repository (`docker.io/library/busybox`), what registries and keyrings match on.
    pub fn repository(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }
}

/// The reference containerd stores an image under: `busybox` is
/// `docker.io/library/busybox:latest`; a reference with a digest keeps the digest only.
pub fn normalize_image(image: &str) -> Result<String, String> {
    let name = ImageName::parse(image)?;
    Ok(match (&name.tag, &name.digest) {
        (_, Some(d)) => format!("{}@{d}", name.repository()),
        (Some(t), None) => format!("{}:{t}", name.repository()),
        (None, None) => format!("{}:latest", name.repository()),
    })
}

/// Upstream's `ParseImageName`: the repository, tag (`latest` when neither a tag nor a digest
/// is given) and digest.
pub fn parse_image_name(image: &str) -> Result<(String, String, String), String> {
    let name = ImageName::parse(image)
        .map_err(|e| format!("couldn't parse image name {}: {e}", quote(image)))?;
    let tag = match (&name.tag, &name.digest) {
        (Some(t), _) => t.clone(),
        (None, None) => "latest".into(),
        (None, Some(_)) => String::new(),
    };
    Ok((
        name.repository(),
        tag,
        name.digest.clone().unwrap_or_default(),
    ))
}

/// Upstream's `applyDefaultImageTag`: `busybox` becomes `busybox:latest`, left short so that
/// the runtime, not the kubelet, decides what a short name means.
pub fn apply_default_tag(image: &str) -> Result<String, String> {
    let (_, tag, digest) = parse_image_name(image)?;
    if digest.is_empty() && !tag.is_empty() && !image.ends_with(&format!(":{tag}")) {
        return Ok(format!("{image}:{tag}"));
    }
    Ok(image.to_string())
}

/// The API server's default pull policy: `Always` for `:latest` or an untagged name,
/// `IfNotPresent` otherwise.
pub fn default_pull_policy(image: &str) -> &'static str {
    match parse_image_name(image) {
        Ok((_, tag, _)) if tag == "latest" => "Always",
        _ => "IfNotPresent",
    }
}

fn split_docker_domain(name: &str) -> (String, String) {
    let Some((first, rest)) = name.split_once('/') else {
        return (
            DEFAULT_DOMAIN.into(),
            format!("{OFFICIAL_REPO_PREFIX}{name}"),
        );
    };
    let (domain, remote) = if first == "localhost" {
        (first, rest.to_string())
    } else if first == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, rest.to_string())
    } else if first.contains(['.', ':']) || first.to_lowercase() != first {
        (first, rest.to_string())
    } else {
        (DEFAULT_DOMAIN, name.to_string())
    };
    let remote = if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{remote}")
    } else {
        remote
    };
    (domain.to_string(), remote)
}

/// The reference library's `Parse` on a name that starts with its domain.
fn parse_reference(s: &str) -> Result<ImageName, String> {
    match match_reference(s) {
        Some(name) => {
            if name.repository().len() > NAME_TOTAL_LENGTH_MAX {
                return Err(format!(
                    "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
                ));
            }
            if let Some(d) = &name.digest {
                validate_digest(d)?;
            }
            Ok(name)
        }
        None if s.is_empty() => Err("repository name must have at least one component".into()),
        None if match_reference(&s.to_lowercase()).is_some() => {
            Err("invalid reference format: repository name must be lowercase".into())
        }
        None => Err("invalid reference format".into()),
    }
}

fn match_reference(s: &str) -> Option<ImageName> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        if !is_digest(d) {
            return None;
        }
    }
    let last_slash = rest.rfind('/').unwrap_or(0);
    let (name, tag) = match rest.rfind(':') {
        Some(i) if i > last_slash => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        if !is_tag(t) {
            return None;
        }
    }
    let (domain, path) = match name.split_once('/') {
        Some((d, p)) if is_domain(d) && p.split('/').all(is_path_component) => (d, p),
        // The name regex's domain is optional: a first part that is no host may still be a
        // path component.
        _ if name.split('/').all(is_path_component) => ("", name),
        _ => return None,
    };
    Some(ImageName {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: tag.map(String::from),
        digest: digest.map(String::from),
    })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let mut sep = String::new();
    let mut seen_alnum = false;
    for c in s.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !sep.is_empty() {
                let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
                if !ok || !seen_alnum {
                    return false;
                }
                sep.clear();
            }
            seen_alnum = true;
        } else if matches!(c, '.' | '_' | '-') {
            sep.push(c);
        } else {
            return false;
        }
    }
    seen_alnum && sep.is_empty()
}

/// A host (name, IPv4 or bracketed IPv6) with an optional port.
fn is_domain(s: &str) -> bool {
    let (host_ok, port) = if let Some(v6) = s.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        let ok = !addr.is_empty() && addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
        match after {
            "" => (ok, None),
            a => match a.strip_prefix(':') {
                Some(p) => (ok, Some(p)),
                None => return false,
            },
        }
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        (!h.is_empty() && h.split('.').all(is_domain_component), p)
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `[\w][\w.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(&b[0])
        && b.iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

/// `algorithm:hex` with at least 32 hex digits.
fn is_digest(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate_digest(d: &str) -> Result<(), String> {
    let (alg, hex) = d.split_once(':').unwrap_or((d, ""));
    let size = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".into()),
    };
    if hex.len() != size {
        return Err("invalid checksum digest length".into());
    }
    if !hex.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9')) {
        return Err("invalid checksum digest format".into());
    }
    Ok(())
}

// ---- pull secrets -----------------------------------------------------------------------------

/// Credentials for one registry entry of a pull secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub email: String,
}

impl RegistryAuth {
    fn to_cri(&self) -> api::AuthConfig {
        api::AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            ..Default::default()
        }
    }
}

/// Upstream's `BasicDockerKeyring` built from image pull secrets.
#[derive(Debug, Default)]
pub struct Keyring {
    /// Registry keys, longest (most specific) first.
    index: Vec<String>,
    creds: HashMap<String, Vec<RegistryAuth>>,
}

const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

impl Keyring {
    /// Reads `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`) and legacy
    /// `kubernetes.io/dockercfg` (`.dockercfg`) secrets; others are skipped. A secret that does
    /// not parse fails the whole keyring, as upstream's does.
    pub fn from_secrets(secrets: &[Secret]) -> Result<Keyring, String> {
        let mut keyring = Keyring::default();
        for secret in secrets {
            let data = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.as_slice())
                    .filter(|b| !b.is_empty())
            };
            let entries = match secret.type_.as_deref() {
                Some("kubernetes.io/dockerconfigjson") => match data(".dockerconfigjson") {
                    Some(bytes) => {
                        let v: serde_json::Value = parse_json(bytes)?;
                        match field(&v, "auths") {
                            Some(auths) => parse_docker_config(auths)?,
                            None => Vec::new(),
                        }
                    }
                    None => continue,
                },
                Some("kubernetes.io/dockercfg") => match data(".dockercfg") {
                    Some(bytes) => parse_docker_config(&parse_json(bytes)?)?,
                    None => continue,
                },
                _ => continue,
            };
            keyring.add(entries);
        }
        Ok(keyring)
    }

    fn add(&mut self, entries: Vec<(String, RegistryAuth)>) {
        for (location, auth) in entries {
            let value = if location.starts_with("https://") || location.starts_with("http://") {
                location
            } else {
                format!("https://{location}")
            };
            let rest = value.split_once("://").map_or("", |(_, r)| r);
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let host = host.rsplit('@').next().unwrap_or(host);
            let path = path.split(['?', '#']).next().unwrap_or("");
            // Docker takes `/v1/` and `/v2/` to mean the registry itself.
            let path = if path.starts_with("/v2/") || path.starts_with("/v1/") {
                &path[3..]
            } else {
                path
            };
            let key = if !path.is_empty() && path != "/" {
                format!("{host}{path}")
            } else {
                host.to_string()
            };
            self.creds.entry(key.clone()).or_default().push(auth);
            self.index.push(key);
        }
        self.index.sort();
        self.index.dedup();
        self.index.reverse();
    }

    /// The credentials for a repository (`registry.example.com/team/app`), most specific
    /// registry key first; Docker Hub's credentials also serve Docker Hub images.
    pub fn lookup(&self, repository: &str) -> Vec<RegistryAuth> {
        let mut out = Vec::new();
        for key in &self.index {
            if urls_match(key, repository) {
                out.extend(self.creds.get(key).into_iter().flatten().cloned());
            }
        }
        if out.is_empty() && is_default_registry_match(repository) {
            if let Some(c) = self.creds.get(DEFAULT_REGISTRY_HOST) {
                out.extend(c.iter().cloned());
            }
        }
        out
    }
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    // serde's wording; Go's json errors read differently.
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Go's `encoding/json` matches field names without regard to case.
fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    let obj = v.as_object()?;
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A `DockerConfig`: registry location to entry.
fn parse_docker_config(v: &serde_json::Value) -> Result<Vec<(String, RegistryAuth)>, String> {
    let Some(obj) = v.as_object() else {
        if v.is_null() {
            return Ok(Vec::new());
        }
        return Err(
            "json: cannot unmarshal into Go value of type credentialprovider.DockerConfig".into(),
        );
    };
    let mut out = Vec::new();
    for (location, entry) in obj {
        let text = |name: &str| -> Result<String, String> {
            match field(entry, name) {
                None | Some(serde_json::Value::Null) => Ok(String::new()),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!(
                    "json: cannot unmarshal into Go struct field dockerConfigEntryWithAuth.{name} of type string"
                )),
            }
        };
        let mut auth = RegistryAuth {
            username: text("username")?,
            password: text("password")?,
            email: text("email")?,
        };
        let encoded = text("auth")?;
        if !encoded.is_empty() {
            let (user, pass) = decode_auth_field(&encoded)?;
            auth.username = user;
            auth.password = pass;
        }
        out.push((location.clone(), auth));
    }
    Ok(out)
}

/// The `auth` field: base64 of `username:password`, padded or not.
fn decode_auth_field(field: &str) -> Result<(String, String), String> {
    let engine = if field.trim().ends_with('=') {
        &base64::engine::general_purpose::STANDARD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let decoded = engine.decode(field).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => i,
            _ => field.len(),
        };
        format!("illegal base64 data at input byte {at}")
    })?;
    let decoded = String::from_utf8_lossy(&decoded);
    match decoded.split_once(':') {
        Some((u, p)) => Ok((u.to_string(), p.to_string())),
        None => {
            Err("unable to parse auth field, must be formatted as base64(username:password)".into())
        }
    }
}

/// Upstream's `URLsMatchStr`: same port, as many host labels, each matching the key's label
/// as a glob (`*.example.com`), and the key's path a prefix of the repository's.
fn urls_match(key: &str, target: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        match s.find('/') {
            Some(i) => (s[..i].to_string(), s[i..].to_string()),
            None => (s.to_string(), String::new()),
        }
    };
    let (key_host, key_path) = split(key);
    let (target_host, target_path) = split(target);
    let host_port = |h: &str| -> (Vec<String>, String) {
        let (host, port) = split_host_port(h);
        (host.split('.').map(String::from).collect(), port)
    };
    let (key_parts, key_port) = host_port(&key_host);
    let (target_parts, target_port) = host_port(&target_host);
    key_port == target_port
        && key_parts.len() == target_parts.len()
        && target_path.starts_with(&key_path)
        && key_parts
            .iter()
            .zip(&target_parts)
            .all(|(k, t)| glob_match(k.as_bytes(), t.as_bytes()))
}

/// `net.SplitHostPort`, falling back to the whole host and no port when it does not split.
fn split_host_port(h: &str) -> (String, String) {
    if let Some(v6) = h.strip_prefix('[') {
        if let Some((host, port)) = v6.split_once("]:") {
            return (host.to_string(), port.to_string());
        }
        return (h.to_string(), String::new());
    }
    match h.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host.to_string(), port.to_string()),
        _ => (h.to_string(), String::new()),
    }
}

/// Go's `filepath.Match` on one host label: `*`, `?`, `[...]` classes and `\` escapes.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|i| glob_match(&pattern[1..], &name[i..])),
        Some(b'?') => !name.is_empty() && glob_match(&pattern[1..], &name[1..]),
        Some(b'[') => {
            let Some(&c) = name.first() else {
                return false;
            };
            let Some(end) = pattern.iter().skip(1).position(|&b| b == b']') else {
                return false;
            };
            let mut class = &pattern[1..1 + end];
            let negated = class.first() == Some(&b'^');
            if negated {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negated && glob_match(&pattern[end + 2..], &name[1..])
        }
        Some(b'\\') if pattern.len() > 1 => {
            name.first() == Some(&pattern[1]) && glob_match(&pattern[2..], &name[1..])
        }
        Some(&p) => name.first() == Some(&p) && glob_match(&pattern[1..], &name[1..]),
    }
}

/// Whether a repository is on Docker Hub by its name's shape.
fn is_default_registry_match(repository: &str) -> bool {
    let (first, rest) = match repository.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (repository, None),
    };
    if first.is_empty() {
        return false;
    }
    if rest.is_none() || first == DEFAULT_DOMAIN || first == LEGACY_DEFAULT_DOMAIN {
        return true;
    }
    !first.contains(['.', ':'])
}

// ---- back-off ---------------------------------------------------------------------------------

/// client-go's `flowcontrol.Backoff` without jitter, on tokio's clock.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, (Duration, Instant)>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// An entry untouched for twice the maximum starts over.
    fn expired(&self, now: Instant, last: Instant) -> bool {
        now.saturating_duration_since(last) > self.max * 2
    }

    pub fn in_backoff_since_update(&self, key: &str, now: Instant) -> bool {
        match self.entries.get(key) {
            Some(&(delay, last)) => {
                !self.expired(now, last) && now.saturating_duration_since(last) < delay
            }
            None => false,
        }
    }

    pub fn next(&mut self, key: &str, now: Instant) {
        let delay = match self.entries.get(key) {
            Some(&(delay, last)) if !self.expired(now, last) => (delay * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(key.to_string(), (delay, now));
    }

    /// The current delay for `key`, if it has one.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.0)
    }

    pub fn gc(&mut self, now: Instant) {
        let max = self.max;
        self.entries
            .retain(|_, (_, last)| now.saturating_duration_since(*last) <= max * 2);
    }
}

// ---- the manager ------------------------------------------------------------------------------

/// Why an image is not available, as the container's waiting reason names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullErrorKind {
    InvalidImageName,
    ImageInspectError,
    ErrImageNeverPull,
    ErrImagePull,
    ImagePullBackOff,
    RegistryUnavailable,
    SignatureValidationFailed,
    /// A pull secret that does not parse; upstream's reason is then the error's text.
    BadPullSecret(String),
}

/// An image that could not be made available: the container's waiting reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullError {
    pub kind: PullErrorKind,
    pub message: String,
}

impl PullError {
    /// The waiting reason (`ErrImagePull`, `ImagePullBackOff`, ...).
    pub fn reason(&self) -> &str {
        match &self.kind {
            PullErrorKind::InvalidImageName => "InvalidImageName",
            PullErrorKind::ImageInspectError => "ImageInspectError",
            PullErrorKind::ErrImageNeverPull => "ErrImageNeverPull",
            PullErrorKind::ErrImagePull => "ErrImagePull",
            PullErrorKind::ImagePullBackOff => "ImagePullBackOff",
            PullErrorKind::RegistryUnavailable => "RegistryUnavailable",
            PullErrorKind::SignatureValidationFailed => "SignatureValidationFailed",
            PullErrorKind::BadPullSecret(text) => text,
        }
    }
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason(), self.message)
    }
}

impl std::error::Error for PullError {}

/// An event upstream records on the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEvent {
    pub event_type: EventType,
    /// `Pulling`, `Pulled`, `Failed`, `BackOff`, `ErrImageNeverPull`, `InspectFailed`.
    pub reason: &'static str,
    pub message: String,
}

/// What [`ImageManager::ensure_image`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureImage {
    pub image: Result<ImageRef, PullError>,
    pub events: Vec<ImageEvent>,
}

/// Upstream's image manager: one per kubelet, shared by its pod workers.
#[derive(Debug)]
pub struct ImageManager {
    backoff: Mutex<Backoff>,
    /// The last pull error per back-off key, repeated in `ImagePullBackOff` messages.
    last_error: Mutex<HashMap<String, String>>,
}

impl Default for ImageManager {
    fn default() -> Self {
        ImageManager::new()
    }
}

impl ImageManager {
    pub fn new() -> ImageManager {
        ImageManager::with_backoff(INITIAL_BACKOFF, MAX_BACKOFF)
    }

    pub fn with_backoff(initial: Duration, max: Duration) -> ImageManager {
        ImageManager {
            backoff: Mutex::new(Backoff::new(initial, max)),
            last_error: Mutex::new(HashMap::new()),
        }
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `container`'s image is present, pulling it as its pull policy says with the
    /// credentials `pull_secrets` hold for its registry. `sandbox_config` goes to the runtime
    /// with the pull.
    pub async fn ensure_image(
        &self,
        runtime: &dyn Runtime,
        pod: &Pod,
        container: &Container,
        pull_secrets: &[Secret],
        sandbox_config: Option<&api::PodSandboxConfig>,
    ) -> EnsureImage {
        let mut events = Vec::new();
        let image = self
            .ensure(
                runtime,
                pod,
                container,
                pull_secrets,
                sandbox_config,
                &mut events,
            )
            .await;
        EnsureImage { image, events }
    }

    async fn ensure(
        &self,
        runtime: &dyn Runtime,
        pod: &Pod,
        container: &Container,
        pull_secrets: &[Secret],
        sandbox_config: Option<&api::PodSandboxConfig>,
        events: &mut Vec<ImageEvent>,
    ) -> Result<ImageRef, PullError> {
        let requested = container.image.clone().unwrap_or_default();
        let mut event = |event_type, reason, message: &str| {
            events.push(ImageEvent {
                event_type,
                reason,
                message: message.to_string(),
            })
        };
        let image = match apply_default_tag(&requested) {
            Ok(i) => i,
            Err(e) => {
                let msg = format!(
                    "Failed to apply default image tag {}: {e}",
                    quote(&requested)
                );
                event(EventType::Warning, "InspectFailed", &msg);
                return Err(PullError {
                    kind: PullErrorKind::InvalidImageName,
                    message: msg,
                });
            }
        };
        let spec = api::ImageSpec {
            image: image.clone(),
            annotations: pod
                .metadata
                .annotations
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        };
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&requested).to_string());

        if policy == "IfNotPresent" || policy == "Never" {
            let status = runtime
                .image_status(api::ImageStatusRequest {
                    image: Some(spec.clone()),
                    verbose: false,
                })
                .await;
            match status {
                Err(status) => {
                    // Upstream names the (still empty) image id here; the image reads better.
                    let msg = format!(
                        "Failed to inspect image {}: {}",
                        quote(&requested),
                        cri_error_text(&status)
                    );
                    event(EventType::Warning, "InspectFailed", &msg);
                    return Err(PullError {
                        kind: PullErrorKind::ImageInspectError,
                        message: msg,
                    });
                }
                Ok(resp) => {
                    if let Some(found) = resp.image.filter(|i| !i.id.is_empty()) {
                        let msg = format!(
                            "Container image {} already present on machine",
                            quote(&requested)
                        );
                        event(EventType::Normal, "Pulled", &msg);
                        return Ok(found.id);
                    }
                }
            }
            if policy == "Never" {
                let msg = format!(
                    "Container image {} is not present with pull policy of Never",
                    quote(&requested)
                );
                event(EventType::Warning, "ErrImageNeverPull", &msg);
                return Err(PullError {
                    kind: PullErrorKind::ErrImageNeverPull,
                    message: msg,
                });
            }
        }

        let (repository, _, _) = parse_image_name(&image).map_err(|e| PullError {
            kind: PullErrorKind::InvalidImageName,
            message: e,
        })?;
        let keyring = Keyring::from_secrets(pull_secrets).map_err(|e| PullError {
            kind: PullErrorKind::BadPullSecret(e.clone()),
            message: e,
        })?;
        let credentials = keyring.lookup(&repository);

        let pod_uid = pod.metadata.uid.as_deref().unwrap_or("");
        let key = format!("{pod_uid}_{requested}");
        if self.backoff().in_backoff_since_update(&key, Instant::now()) {
            let mut msg = format!("Back-off pulling image {}", quote(&requested));
            event(EventType::Normal, "BackOff", &msg);
            if let Some(prev) = self.last_error().get(&key) {
                msg = format!("{msg}: {prev}");
            }
            return Err(PullError {
                kind: PullErrorKind::ImagePullBackOff,
                message: msg,
            });
        }
        self.last_error().remove(&key);

        event(
            EventType::Normal,
            "Pulling",
            &format!("Pulling image {}", quote(&requested)),
        );
        let start = Instant::now();
        let pulled = pull(runtime, &spec, &credentials, sandbox_config).await;
        let pull_duration = start.elapsed();
        match pulled {
            Err(err) => {
                event(
                    EventType::Warning,
                    "Failed",
                    &format!("Failed to pull image {}: {err}", quote(&requested)),
                );
                self.backoff().next(&key, Instant::now());
                let error = classify_pull_error(&requested, &err);
                self.last_error()
                    .insert(key, format!("{}: {}", error.reason(), error.message));
                Err(error)
            }
            Ok(image_ref) => {
                let size = if image_ref.is_empty() {
                    0
                } else {
                    image_size(runtime, &spec).await
                };
                let truncate = |d: Duration| Duration::from_millis(d.as_millis() as u64);
                event(
                    EventType::Normal,
                    "Pulled",
                    &format!(
                        "Successfully pulled image {} in {} ({} including waiting). Image size: {size} bytes.",
                        quote(&requested),
                        gofmt::duration(truncate(pull_duration)),
                        gofmt::duration(truncate(start.elapsed())),
                    ),
                );
                self.backoff().gc(Instant::now());
                Ok(image_ref)
            }
        }
    }

    /// The current back-off delay for a pod's image, for status and tests.
    pub fn backoff_delay(&self, pod_uid: &str, image: &str) -> Option<Duration> {
        self.backoff().delay(&format!("{pod_uid}_{image}"))
    }
}

/// Upstream's `PullImage` over the credentials: without any, one anonymous pull; otherwise
/// each in turn until one works, the errors aggregated as upstream aggregates them.
async fn pull(
    runtime: &dyn Runtime,
    spec: &api::ImageSpec,
    credentials: &[RegistryAuth],
    sandbox_config: Option<&api::PodSandboxConfig>,
) -> Result<ImageRef, String> {
    let request = |auth: Option<api::AuthConfig>| api::PullImageRequest {
        image: Some(spec.clone()),
        auth,
        sandbox_config: sandbox_config.cloned(),
    };
    if credentials.is_empty() {
        return runtime
            .pull_image(request(None))
            .await
            .map(|r| r.image_ref)
            .map_err(|s| cri_error_text(&s));
    }
    let mut errors: Vec<String> = Vec::new();
    for c in credentials {
        match runtime.pull_image(request(Some(c.to_cri()))).await {
            Ok(r) => return Ok(r.image_ref),
            Err(s) => errors.push(cri_error_text(&s)),
        }
    }
    Err(aggregate(&errors))
}

/// The image's size, best effort as upstream takes it.
async fn image_size(runtime: &dyn Runtime, spec: &api::ImageSpec) -> u64 {
    let resp = runtime
        .image_status(api::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await;
    resp.ok().and_then(|r| r.image).map_or(0, |i| i.size)
}

/// Upstream's CRI client strips the status of `Unknown` errors (containerd's usual code), so
/// that events carry the runtime's own text.
fn cri_error_text(status: &tonic::Status) -> String {
    if status.code() == tonic::Code::Unknown {
        status.message().to_string()
    } else {
        gofmt::grpc_error(status)
    }
}

/// apimachinery's error aggregate: one error as itself, several as `[a, b]` without repeats.
fn aggregate(errors: &[String]) -> String {
    if errors.len() == 1 {
        return errors[0].clone();
    }
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    if seen.len() == 1 {
        seen[0].to_string()
    } else {
        format!("[{}]", seen.join(", "))
    }
}

/// Upstream's `evalCRIPullErr`.
fn classify_pull_error(image: &str, err: &str) -> PullError {
    for (prefix, kind, why) in [
        (
            "RegistryUnavailable",
            PullErrorKind::RegistryUnavailable,
            "the registry is unavailable",
        ),
        (
            "SignatureValidationFailed",
            PullErrorKind::SignatureValidationFailed,
            "the signature validation failed",
        ),
    ] {
        if let Some(rest) = err.strip_prefix(prefix) {
            return PullError {
                kind,
                message: format!("image pull failed for {image} because {why}{rest}"),
            };
        }
    }
    PullError {
        kind: PullErrorKind::ErrImagePull,
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use tonic::Status;

    use super::*;
    use crate::prober::fake::{FakeRuntime, RemoteImage};

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn names_normalise_as_containerd_stores_them() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("someone/app:v1", "docker.io/someone/app:v1"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/someone/app",
                "docker.io/someone/app:latest",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
            ("[::1]:5000/app:x", "[::1]:5000/app:x"),
            (
                "Registry.Example.com/app",
                "Registry.Example.com/app:latest",
            ),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("a/b-c__d.e_f---g", "docker.io/a/b-c__d.e_f---g:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_image(input).as_deref(), Ok(want), "{input}");
        }
        assert_eq!(
            normalize_image(&format!("busybox@{DIGEST}")).unwrap(),
            format!("docker.io/library/busybox@{DIGEST}")
        );
        assert_eq!(
            normalize_image(&format!("gcr.io/x/y:1@{DIGEST}")).unwrap(),
            format!("gcr.io/x/y@{DIGEST}")
        );
    }

    #[test]
    fn bad_names_get_the_reference_library_errors() {
        let hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let long = "a".repeat(300);
        let cases = [
            (
                "Busybox",
                "invalid reference format: repository name (library/Busybox) must be lowercase"
                    .to_string(),
            ),
            ("", "invalid reference format".into()),
            ("busybox:", "invalid reference format".into()),
            ("a/b:c:d", "invalid reference format".into()),
            ("a//b", "invalid reference format".into()),
            ("-a", "invalid reference format".into()),
            ("a__-b", "invalid reference format".into()),
            (
                hex64,
                format!(
                    "invalid repository name ({hex64}), cannot specify 64-byte hexadecimal strings"
                ),
            ),
            ("foo@sha256:abc", "invalid reference format".into()),
            (
                "foo@sha256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
                "invalid checksum digest format".into(),
            ),
            (
                "foo@md5:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm".into(),
            ),
            (
                "foo@sha256:0123456789abcdef0123456789abcdef",
                "invalid checksum digest length".into(),
            ),
            (
                long.as_str(),
                "repository name must not be more than 255 characters".into(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ImageName::parse(input).unwrap_err(), want, "{input}");
        }
        assert_eq!(
            apply_default_tag("Busybox").unwrap_err(),
            "couldn't parse image name \"Busybox\": invalid reference format: repository name (library/Busybox) must be lowercase"
        );
    }

    #[test]
    fn default_tags_and_policies() {
        assert_eq!(apply_default_tag("busybox").unwrap(), "busybox:latest");
        assert_eq!(apply_default_tag("busybox:1").unwrap(), "busybox:1");
        assert_eq!(
            apply_default_tag("localhost:5000/foo").unwrap(),
            "localhost:5000/foo:latest"
        );
        let pinned = format!("busybox@{DIGEST}");
        assert_eq!(apply_default_tag(&pinned).unwrap(), pinned);
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy(&pinned), "IfNotPresent");
        assert_eq!(
            parse_image_name("busybox").unwrap(),
            (
                "docker.io/library/busybox".into(),
                "latest".into(),
                String::new()
            )
        );
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(type_: &str, key: &str, json: serde_json::Value) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(serde_json::to_vec(&json).unwrap()),
            )])),
            ..Default::default()
        }
    }

    fn config_json(auths: serde_json::Value) -> Secret {
        secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            serde_json::json!({ "auths": auths }),
        )
    }

    fn users(creds: Vec<RegistryAuth>) -> Vec<String> {
        creds
            .into_iter()
            .map(|c| format!("{}:{}", c.username, c.password))
            .collect()
    }

    #[test]
    fn keyring_matches_registries_as_upstream() {
        let secrets = [
            config_json(serde_json::json!({
                "registry.example.com": { "username": "reg", "password": "p1" },
                "https://index.docker.io/v1/": { "auth": b64("hub:p2") },
                "quay.io": { "Username": "quay", "Password": "p3" },
                "quay.io/team": { "auth": "dGVhbTpwNA" },
                "*.corp.io": { "username": "corp", "password": "p5" },
                "http://10.0.0.1:5000/v2/": { "username": "ip", "password": "p6" },
            })),
            secret(
                "kubernetes.io/dockercfg",
                ".dockercfg",
                serde_json::json!({ "legacy.io": { "auth": b64("old:p7"), "email": "a@b" } }),
            ),
            secret(
                "Opaque",
                ".dockerconfigjson",
                serde_json::json!({ "auths": { "x.io": {} } }),
            ),
        ];
        let keyring = Keyring::from_secrets(&secrets).unwrap();
        let cases: [(&str, &[&str]); 11] = [
            ("docker.io/library/busybox", &["hub:p2"]),
            ("docker.io/someone/app", &["hub:p2"]),
            ("registry.example.com/app", &["reg:p1"]),
            ("registry.example.com:443/app", &[]),
            ("quay.io/team/app", &["team:p4", "quay:p3"]),
            ("quay.io/other/app", &["quay:p3"]),
            ("a.corp.io/x", &["corp:p5"]),
            ("a.b.corp.io/x", &[]),
            ("10.0.0.1:5000/x", &["ip:p6"]),
            ("legacy.io/img", &["old:p7"]),
            ("x.io/img", &[]),
        ];
        for (repo, want) in cases {
            assert_eq!(users(keyring.lookup(repo)), want, "{repo}");
        }
    }

    #[test]
    fn keyring_errors_fail_the_whole_keyring() {
        let bad = config_json(serde_json::json!({ "r.io": { "auth": b64("no-colon") } }));
        assert_eq!(
            Keyring::from_secrets(&[bad]).unwrap_err(),
            "unable to parse auth field, must be formatted as base64(username:password)"
        );
        let bad = config_json(serde_json::json!({ "r.io": { "auth": "!!!" } }));
        assert_eq!(
            Keyring::from_secrets(&[bad]).unwrap_err(),
            "illegal base64 data at input byte 0"
        );
        let mut not_json = config_json(serde_json::json!({}));
        not_json
            .data
            .as_mut()
            .unwrap()
            .insert(".dockerconfigjson".into(), ByteString(b"{".to_vec()));
        assert!(Keyring::from_secrets(&[not_json]).is_err());
        let empty = Secret {
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            ..Default::default()
        };
        assert!(Keyring::from_secrets(&[empty])
            .unwrap()
            .lookup("docker.io/a/b")
            .is_empty());
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"r?g", b"reg"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[^a-c]x", b"bx"));
        assert!(!glob_match(b"a*", b"ba"));
        assert!(urls_match("*.example.com", "eu.example.com/app"));
        assert!(!urls_match("*.example.com", "example.com/app"));
        assert!(
            urls_match("example.com/team", "example.com/team-b/app"),
            "a plain string prefix, as upstream"
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_expires() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let t = Instant::now();
        assert!(!b.in_backoff_since_update("k", t));
        let mut delays = Vec::new();
        for _ in 0..7 {
            b.next("k", t);
            delays.push(b.delay("k").unwrap().as_secs());
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert!(b.in_backoff_since_update("k", t + Duration::from_secs(299)));
        assert!(!b.in_backoff_since_update("k", t + Duration::from_secs(300)));
        b.next("k", t + Duration::from_secs(601));
        assert_eq!(
            b.delay("k"),
            Some(Duration::from_secs(10)),
            "an old entry starts over"
        );
        b.gc(t + Duration::from_secs(1300));
        assert_eq!(b.delay("k"), None);
    }

    fn pod_with(uid: &str, annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "app".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(String::from),
            ..Default::default()
        }
    }

    fn publish(rt: &FakeRuntime, image: &str, id: &str, credentials: Option<(&str, &str)>) {
        rt.registry.lock().unwrap().insert(
            normalize_image(image).unwrap(),
            RemoteImage {
                id: id.into(),
                size: 4_269_694,
                credentials: credentials.map(|(u, p)| (u.into(), p.into())),
            },
        );
    }

    fn reasons(events: &[ImageEvent]) -> Vec<&str> {
        events.iter().map(|e| e.reason).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn pull_policies() {
        let rt = FakeRuntime::default();
        publish(&rt, "busybox", "sha256:bb", None);
        let m = ImageManager::new();
        let pod = pod_with("u1", &[("team", "a")]);

        let never = m
            .ensure_image(&rt, &pod, &container("busybox", Some("Never")), &[], None)
            .await;
        let err = never.image.unwrap_err();
        assert_eq!(err.reason(), "ErrImageNeverPull");
        assert_eq!(
            err.message,
            "Container image \"busybox\" is not present with pull policy of Never"
        );
        assert_eq!(never.events[0].event_type, EventType::Warning);
        assert_eq!(reasons(&never.events), ["ErrImageNeverPull"]);

        let sandbox = api::PodSandboxConfig {
            hostname: "web".into(),
            ..Default::default()
        };
        let pulled = m
            .ensure_image(
                &rt,
                &pod,
                &container("busybox", Some("IfNotPresent")),
                &[],
                Some(&sandbox),
            )
            .await;
        assert_eq!(pulled.image.as_deref(), Ok("sha256:bb"));
        assert_eq!(reasons(&pulled.events), ["Pulling", "Pulled"]);
        assert_eq!(pulled.events[0].message, "Pulling image \"busybox\"");
        assert_eq!(
            pulled.events[1].message,
            "Successfully pulled image \"busybox\" in 0s (0s including waiting). Image size: 4269694 bytes."
        );
        let req = rt.pulls.lock().unwrap()[0].clone();
        let spec = req.image.unwrap();
        assert_eq!(
            spec.image, "busybox:latest",
            "the short name goes to the runtime"
        );
        assert_eq!(spec.annotations.get("team").map(String::as_str), Some("a"));
        assert_eq!(req.sandbox_config.unwrap().hostname, "web");
        assert_eq!(req.auth, None);

        let present = m
            .ensure_image(
                &rt,
                &pod,
                &container("busybox", Some("IfNotPresent")),
                &[],
                None,
            )
            .await;
        assert_eq!(present.image.as_deref(), Ok("sha256:bb"));
        assert_eq!(
            present.events[0].message,
            "Container image \"busybox\" already present on machine"
        );
        assert_eq!(rt.pulls.lock().unwrap().len(), 1);

        let never = m
            .ensure_image(&rt, &pod, &container("busybox", Some("Never")), &[], None)
            .await;
        assert_eq!(never.image.as_deref(), Ok("sha256:bb"));

        // Always pulls whatever is present; no policy at all means Always for `latest`.
        let always = m
            .ensure_image(&rt, &pod, &container("busybox", None), &[], None)
            .await;
        assert_eq!(reasons(&always.events), ["Pulling", "Pulled"]);
        assert_eq!(rt.pulls.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pulls_use_matching_secrets_in_order() {
        let rt = FakeRuntime::default();
        publish(
            &rt,
            "registry.example.com/team/app:1",
            "sha256:app",
            Some(("right", "pw")),
        );
        let m = ImageManager::new();
        let secrets = [config_json(serde_json::json!({
            "registry.example.com": { "username": "right", "password": "pw" },
            "registry.example.com/team": { "username": "wrong", "password": "pw" },
            "other.example.com": { "username": "other", "password": "pw" },
        }))];
        let c = container("registry.example.com/team/app:1", Some("IfNotPresent"));
        let got = m
            .ensure_image(&rt, &pod_with("u1", &[]), &c, &secrets, None)
            .await;
        assert_eq!(got.image.as_deref(), Ok("sha256:app"));
        let tried: Vec<String> = rt
            .pulls
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.auth.clone().unwrap_or_default().username)
            .collect();
        assert_eq!(tried, ["wrong", "right"]);

        // Without the secret: one anonymous pull, refused.
        let c = container("registry.example.com/team/app:2", Some("IfNotPresent"));
        publish(
            &rt,
            "registry.example.com/team/app:2",
            "sha256:app2",
            Some(("right", "pw")),
        );
        let refused = m
            .ensure_image(&rt, &pod_with("u1", &[]), &c, &[], None)
            .await;
        let err = refused.image.unwrap_err();
        assert_eq!(err.reason(), "ErrImagePull");
        assert_eq!(
            err.message,
            "failed to pull and unpack image \"registry.example.com/team/app:2\": 401 Unauthorized"
        );
        assert_eq!(reasons(&refused.events), ["Pulling", "Failed"]);
        assert_eq!(
            refused.events[1].message,
            "Failed to pull image \"registry.example.com/team/app:2\": failed to pull and unpack image \"registry.example.com/team/app:2\": 401 Unauthorized"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_pulls_back_off_per_pod_and_image() {
        let rt = FakeRuntime::default();
        *rt.pull_error.lock().unwrap() = Some(Status::not_found("manifest unknown"));
        let m = ImageManager::new();
        let pod = pod_with("u1", &[]);
        let c = container("missing:1", None);
        let first = m.ensure_image(&rt, &pod, &c, &[], None).await;
        let err = first.image.unwrap_err();
        assert_eq!(err.reason(), "ErrImagePull");
        assert_eq!(
            err.message,
            "rpc error: code = NotFound desc = manifest unknown"
        );

        let again = m.ensure_image(&rt, &pod, &c, &[], None).await;
        let err = again.image.unwrap_err();
        assert_eq!(err.reason(), "ImagePullBackOff");
        assert_eq!(
            err.message,
            "Back-off pulling image \"missing:1\": ErrImagePull: rpc error: code = NotFound desc = manifest unknown"
        );
        assert_eq!(again.events.len(), 1);
        assert_eq!(
            (
                again.events[0].reason,
                again.events[0].message.as_str(),
                again.events[0].event_type
            ),
            (
                "BackOff",
                "Back-off pulling image \"missing:1\"",
                EventType::Normal
            )
        );
        assert_eq!(rt.pulls.lock().unwrap().len(), 1);

        // Another pod's back-off is its own.
        let other = m
            .ensure_image(&rt, &pod_with("u2", &[]), &c, &[], None)
            .await;
        assert_eq!(other.image.unwrap_err().reason(), "ErrImagePull");

        let mut delays = Vec::new();
        for _ in 0..6 {
            let delay = m.backoff_delay("u1", "missing:1").unwrap();
            delays.push(delay.as_secs());
            tokio::time::sleep(delay - Duration::from_secs(1)).await;
            let still = m.ensure_image(&rt, &pod, &c, &[], None).await;
            assert_eq!(still.image.unwrap_err().reason(), "ImagePullBackOff");
            tokio::time::sleep(Duration::from_secs(1)).await;
            let retried = m.ensure_image(&rt, &pod, &c, &[], None).await;
            assert_eq!(retried.image.unwrap_err().reason(), "ErrImagePull");
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300]);
        assert_eq!(m.backoff_delay("u1", "missing:1"), Some(MAX_BACKOFF));
    }

    #[tokio::test]
    async fn errors_are_classified_as_upstream() {
        let rt = FakeRuntime::default();
        let m = ImageManager::new();
        let pod = pod_with("u1", &[]);

        let bad = m
            .ensure_image(&rt, &pod, &container("Bad:Name", None), &[], None)
            .await;
        let err = bad.image.unwrap_err();
        assert_eq!(err.reason(), "InvalidImageName");
        assert_eq!(
            err.message,
            "Failed to apply default image tag \"Bad:Name\": couldn't parse image name \"Bad:Name\": invalid reference format: repository name (library/Bad) must be lowercase"
        );
        assert_eq!(reasons(&bad.events), ["InspectFailed"]);

        *rt.pull_error.lock().unwrap() =
            Some(Status::unknown("RegistryUnavailable: connection refused"));
        let down = m
            .ensure_image(&rt, &pod, &container("a:1", Some("Always")), &[], None)
            .await;
        let err = down.image.unwrap_err();
        assert_eq!(err.reason(), "RegistryUnavailable");
        assert_eq!(
            err.message,
            "image pull failed for a:1 because the registry is unavailable: connection refused"
        );

        *rt.image_status_error.lock().unwrap() = Some(Status::unavailable("runtime down"));
        let inspect = m
            .ensure_image(
                &rt,
                &pod,
                &container("b:1", Some("IfNotPresent")),
                &[],
                None,
            )
            .await;
        let err = inspect.image.unwrap_err();
        assert_eq!(err.reason(), "ImageInspectError");
        assert_eq!(
            err.message,
            "Failed to inspect image \"b:1\": rpc error: code = Unavailable desc = runtime down"
        );

        let bad_secret = config_json(serde_json::json!({ "r.io": { "auth": b64("x") } }));
        let secret_err = m
            .ensure_image(
                &rt,
                &pod,
                &container("c:1", Some("Always")),
                &[bad_secret],
                None,
            )
            .await;
        let err = secret_err.image.unwrap_err();
        assert_eq!(
            err.reason(),
            "unable to parse auth field, must be formatted as base64(username:password)"
        );
    }

    #[test]
    fn errors_aggregate_without_repeats() {
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }
}
