//! The controllers by upstream name, and `--controllers` selection (`*`, `name`, `-name`).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::context::Context;

pub type RunFn = fn(Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>>;

pub struct Controller {
    /// The name `--controllers` uses, as upstream's.
    pub name: &'static str,
    /// Whether `*` includes it.
    pub default_on: bool,
    pub run: RunFn,
}

/// Every controller this manager has.
pub fn all() -> Vec<Controller> {
    vec![
        Controller {
            name: "endpoint",
            default_on: true,
            run: crate::endpoint::run,
        },
        Controller {
            name: "endpointslice",
            default_on: true,
            run: crate::endpointslice::run,
        },
        Controller {
            name: "endpointslice-mirroring",
            default_on: true,
            run: crate::endpointslicemirroring::run,
        },
        Controller {
            name: "persistentvolume-binder",
            default_on: true,
            run: crate::pvbinder::run,
        },
        Controller {
            name: "cronjob",
            default_on: true,
            run: crate::cronjob::run,
        },
        Controller {
            name: "job",
            default_on: true,
            run: crate::job::run,
        },
        Controller {
            name: "replicaset",
            default_on: true,
            run: crate::replicaset::run,
        },
        Controller {
            name: "deployment",
            default_on: true,
            run: crate::deployment::run,
        },
        Controller {
            name: "replicationcontroller",
            default_on: true,
            run: crate::replication::run,
        },
        Controller {
            name: "serviceaccount",
            default_on: true,
            run: crate::serviceaccount::run,
        },
        Controller {
            name: "root-ca-certificate-publisher",
            default_on: true,
            run: crate::rootcacertpublisher::run,
        },
        Controller {
            name: "namespace",
            default_on: true,
            run: crate::namespace::run,
        },
        Controller {
            name: "garbage-collector",
            default_on: true,
            run: crate::garbagecollector::run,
        },
        Controller {
            name: "statefulset",
            default_on: true,
            run: crate::statefulset::run,
        },
        Controller {
            name: "daemonset",
            default_on: true,
            run: crate::daemonset::run,
        },
        Controller {
            name: "disruption",
            default_on: true,
            run: crate::disruption::run,
        },
        Controller {
            name: "node-lifecycle",
            default_on: true,
            run: crate::nodelifecycle::run,
        },
        Controller {
            name: "taint-eviction-controller",
            default_on: true,
            run: crate::tainteviction::run,
        },
        Controller {
            name: "nodeipam",
            default_on: true,
            run: crate::nodeipam::run,
        },
        Controller {
            name: "clusterrole-aggregation",
            default_on: true,
            run: crate::clusterroleaggregation::run,
        },
        Controller {
            name: "ttl-after-finished",
            default_on: true,
            run: crate::ttlafterfinished::run,
        },
        Controller {
            name: "podgc",
            default_on: true,
            run: crate::podgc::run,
        },
        Controller {
            name: "csrapproving",
            default_on: true,
            run: crate::csrapproving::run,
        },
        Controller {
            name: "csrsigning",
            default_on: true,
            run: crate::csrsigning::run,
        },
        Controller {
            name: "resourcequota",
            default_on: true,
            run: crate::resourcequota::run,
        },
    ]
}

/// Picks the controllers a `--controllers` list names, in upstream's syntax: `*` for the
/// defaults, a name to add one, `-name` to remove one.
pub fn select(available: Vec<Controller>, flags: &[String]) -> anyhow::Result<Vec<Controller>> {
    for f in flags {
        let name = f.trim_start_matches('-');
        if name != "*" && !available.iter().any(|c| c.name == name) {
            anyhow::bail!("{name:?} is not in the list of known controllers");
        }
    }
    let star = flags.iter().any(|f| f == "*");
    Ok(available
        .into_iter()
        .filter(|c| {
            if flags.iter().any(|f| f.strip_prefix('-') == Some(c.name)) {
                return false;
            }
            flags.iter().any(|f| f == c.name) || (star && c.default_on)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: Arc<Context>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn fake() -> Vec<Controller> {
        vec![
            Controller {
                name: "a",
                default_on: true,
                run: noop,
            },
            Controller {
                name: "b",
                default_on: true,
                run: noop,
            },
            Controller {
                name: "c",
                default_on: false,
                run: noop,
            },
        ]
    }

    #[test]
    fn star_minus_and_plus() {
        let names = |flags: &[&str]| -> Vec<&'static str> {
            let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
            select(fake(), &flags)
                .unwrap()
                .iter()
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(names(&["*"]), ["a", "b"]);
        assert_eq!(names(&["*", "-a", "c"]), ["b", "c"]);
        assert_eq!(names(&["c"]), ["c"]);
        assert!(select(fake(), &["nope".to_string()]).is_err());
    }
}
