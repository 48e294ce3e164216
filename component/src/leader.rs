//! Leader election through a coordination.k8s.io Lease, as upstream's leaderelection package:
//! the holder renews `renewTime` every retry period; another candidate takes over only when
//! it has seen the record unchanged for a whole lease duration (its own clock, never the
//! holder's), and the holder steps down when it cannot renew within the renew deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What the candidate last saw of the lease, and when it saw it change.
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

enum Attempt {
    Leading,
    Waiting,
}

async fn try_acquire(
    api: &Api<Lease>,
    cfg: &Config,
    observed: &mut Option<Observed>,
) -> kube::Result<Attempt> {
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        acquire_time: acquired.or_else(|| Some(now())),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let current = match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec(0, None)),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Waiting),
                Err(e) => Err(e),
            };
        }
        Some(l) => l,
    };
    let s = current.spec.clone().unwrap_or_default();
    let holder = s.holder_identity.clone().filter(|h| !h.is_empty());
    let changed = match observed {
        Some(o) => o.holder != holder || o.renew != s.renew_time,
        None => true,
    };
    if changed {
        *observed = Some(Observed {
            holder: holder.clone(),
            renew: s.renew_time.clone(),
            at: Instant::now(),
        });
    }
    let mine = holder.as_deref() == Some(cfg.identity.as_str());
    let duration = Duration::from_secs(s.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    let expired = holder.is_none() || observed.as_ref().is_some_and(|o| o.at.elapsed() > duration);
    if !mine && !expired {
        return Ok(Attempt::Waiting);
    }
    let transitions = s.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 };
    let acquired = if mine { s.acquire_time.clone() } else { None };
    let mut next = current;
    next.spec = Some(spec(transitions, acquired));
    // The resourceVersion in `next` makes this a compare-and-swap: of two candidates that
    // both saw the lease expire, only one wins.
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(Attempt::Leading),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Waiting),
        Err(e) => Err(e),
    }
}

/// Waits until this candidate leads, then runs `work` while renewing the lease. Returns when
/// `work` ends or, with an error, when leadership is lost.
pub async fn run<F>(client: kube::Client, cfg: Config, work: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed = None;
    loop {
        match try_acquire(&api, &cfg, &mut observed).await {
            Ok(Attempt::Leading) => break,
            Ok(Attempt::Waiting) => {}
            Err(e) => tracing::warn!("leader election: {e}"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
    tracing::info!("became leader as {}", cfg.identity);
    let renew = async {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(cfg.retry_period).await;
            match try_acquire(&api, &cfg, &mut observed).await {
                Ok(Attempt::Leading) => last_renewed = Instant::now(),
                Ok(Attempt::Waiting) => anyhow::bail!("leader election lost to another holder"),
                Err(e) => tracing::warn!("renewing the lease: {e}"),
            }
            if last_renewed.elapsed() > cfg.renew_deadline {
                anyhow::bail!(
                    "leader election lost: could not renew within {:?}",
                    cfg.renew_deadline
                );
            }
        }
    };
    tokio::select! {
        r = work => r,
        r = renew => r,
    }
}
