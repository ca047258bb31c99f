//! The DPDK Environment Abstraction Layer: initialised once per process,
//! plus the registration of non-EAL threads (our workers) as lcores.

use std::cell::Cell;
use std::ffi::{c_char, c_int, CString};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use scistream_sys::dpdk as sys;

use super::error::{errno_text, rte_errno, DpdkError};

/// `LCORE_ID_ANY`: the lcore id of a thread EAL does not know.
const LCORE_ID_ANY: u32 = u32::MAX;

/// Proof that EAL is initialised in this process. Every port operation takes
/// one, so nothing touches DPDK before `rte_eal_init` has succeeded.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

/// The initialised EAL, set once `rte_eal_init` succeeded.
static EAL: OnceLock<Eal> = OnceLock::new();
/// Serialises initialisation; holds the reason if it failed (EAL cannot be retried).
static INIT: Mutex<Option<String>> = Mutex::new(None);
/// Serialises ethdev control-path calls (probe, configure, start, close),
/// which DPDK does not make thread-safe.
static CONTROL: Mutex<()> = Mutex::new(());

/// Takes the lock that serialises DPDK control-path calls in this process.
pub(crate) fn control_lock() -> MutexGuard<'static, ()> {
    CONTROL.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// Set on threads registered by [`Eal::register_thread`]; its destructor
    /// gives the lcore back when the thread exits.
    static REGISTRATION: Registration = const { Registration(Cell::new(false)) };
}

/// A thread's EAL registration; unregisters on drop (thread exit).
struct Registration(Cell<bool>);

impl Drop for Registration {
    fn drop(&mut self) {
        if self.0.get() {
            // SAFETY: this thread registered itself with rte_thread_register;
            // unregistering releases its lcore id. DPDK's per-thread lcore
            // variable is a plain __thread integer, still valid here.
            unsafe { sys::rte_thread_unregister() };
        }
    }
}

impl Eal {
    /// Initialises EAL once per process with `args` (argv\[0\] is prepended).
    ///
    /// Later calls return the same `&'static Eal`, logging a warning if their
    /// `args` differ from the first call's. If initialisation fails, every
    /// later call fails too: DPDK cannot initialise EAL twice in a process.
    ///
    /// Note that `rte_eal_init` pins the calling thread to the main lcore's
    /// CPU set (`-l`/`--lcores`), and starts EAL threads for the other lcores.
    pub fn init(args: &[String]) -> Result<&'static Eal, DpdkError> {
        if let Some(eal) = EAL.get() {
            eal.warn_if_differs(args);
            return Ok(eal);
        }
        let mut failed = INIT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(eal) = EAL.get() {
            eal.warn_if_differs(args);
            return Ok(eal);
        }
        if let Some(reason) = failed.as_ref() {
            return Err(DpdkError::EalFailedEarlier(reason.clone()));
        }

        let argv0 = std::env::args().next().unwrap_or_else(|| "s2ds".to_owned());
        let owned = std::iter::once(&argv0)
            .chain(args)
            .map(|a| {
                CString::new(a.as_str()).map_err(|_| DpdkError::Nul {
                    what: "EAL argument",
                    value: a.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
        let argc = c_int::try_from(argv.len()).expect("argument count fits a C int");
        argv.push(std::ptr::null_mut::<c_char>());
        // EAL permutes argv (getopt) and may keep pointers into it for the life
        // of the process: leak the array and the strings on purpose (once).
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());

        tracing::info!(?args, "initialising DPDK EAL");
        // SAFETY: argv holds argc valid NUL-terminated strings and a NULL
        // terminator, all leaked so they outlive EAL; INIT serialises the call
        // within this process and EAL is not initialised yet (EAL unset).
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let errno = rte_errno();
            let reason = errno_text(errno);
            *failed = Some(format!("arguments {args:?}: {reason} (rte_errno {errno})"));
            return Err(DpdkError::EalInit {
                args: args.to_vec(),
                errno,
                reason,
            });
        }
        Ok(EAL.get_or_init(|| Eal {
            args: args.to_vec(),
        }))
    }

    /// The arguments EAL was initialised with (without argv\[0\]).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Registers the calling (non-EAL) thread with EAL (`rte_thread_register`)
    /// so it has an lcore id, and with it mempool caches. Returns the lcore id.
    /// Idempotent per thread; a thread EAL created (or the thread that called
    /// [`Eal::init`]) already has an id and is returned it. The lcore is given
    /// back when the thread exits.
    pub fn register_thread(&self) -> Result<u32, DpdkError> {
        // SAFETY: reads this thread's lcore id, a thread-local integer.
        let id = unsafe { sys::rte_lcore_id() };
        if id != LCORE_ID_ANY {
            return Ok(id);
        }
        // SAFETY: EAL is initialised (self proves it); registering the calling
        // thread only touches EAL's lcore table under its own lock.
        if unsafe { sys::rte_thread_register() } != 0 {
            let errno = rte_errno();
            let t = std::thread::current();
            let thread = t
                .name()
                .map_or_else(|| format!("{:?}", t.id()), str::to_owned);
            return Err(DpdkError::ThreadRegister {
                thread,
                errno,
                reason: errno_text(errno),
            });
        }
        REGISTRATION.with(|r| r.0.set(true));
        // SAFETY: as above.
        Ok(unsafe { sys::rte_lcore_id() })
    }

    fn warn_if_differs(&self, args: &[String]) {
        if args != self.args.as_slice() {
            tracing::warn!(
                first = ?self.args,
                now = ?args,
                "EAL is already initialised with other arguments; keeping the first ones"
            );
        }
    }
}
