//! The process every pod sandbox runs as PID 1 of its namespaces. It does nothing but wait:
//! it reaps children that get re-parented to it, and exits cleanly when told to stop.
//! Built as a static binary (hack/images.sh builds it with `+crt-static`) so the pause image needs no libc.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_child(_: libc::c_int) {
    // Reap every exited child; orphans in the pod's PID namespace land here.
    // SAFETY: waitpid is async-signal-safe.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction with a plain handler is valid; the handlers above only touch
    // an atomic and call async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            eprintln!("pause: cannot install handler for signal {signal}");
            std::process::exit(1);
        }
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("pause: warning: not running as PID 1");
    }
    install(libc::SIGINT, on_stop);
    install(libc::SIGTERM, on_stop);
    install(libc::SIGCHLD, on_child);
    while !STOP.load(Ordering::SeqCst) {
        // SAFETY: pause() only blocks until a signal arrives.
        unsafe { libc::pause() };
    }
    eprintln!("pause: shutting down");
}
