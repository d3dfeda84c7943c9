//! Helper threads that stand by through one functional run of a Program and share each
//! parallel level's tasks with the running thread ([`with_crew`], [`Crew::for_each_mut`]).
//!
//! A run of a small Program is hundreds of levels of tiny tasks, a few microseconds each.
//! Handing each level to rayon's pool woke sleeping workers and joined them again: on the
//! tiny GPT-2's Programs that took much of what the second core gave (at times, on this
//! 2-core VM, its backward ran faster on one thread). The crew's helpers instead wait for
//! the next level by spinning on one counter (yielding the core after a while).
//!
//! Each thread has a share of a level's tasks, an equal run of them: it first takes tasks
//! of its own share, a few at a time, then helps with the others' until none are left, so
//! an uneven level still balances. The simulator orders a level's tasks by the simulated
//! core they write, so a host thread tends to run the same cores' tasks level after level
//! and to find the arrays they read in its own cache.
//!
//! Each task is given to exactly one thread; the running thread returns from a level only
//! when every helper has finished with it, so tasks may borrow from the caller. A panic in
//! a task reaches the running thread after the level; a panicking running thread dismisses
//! the crew, so no helper is left waiting.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// [`Crew::published`] once the crew is dismissed.
const DISMISSED: usize = usize::MAX;

/// Spins a waiter does (each a CPU pause hint) before it starts yielding its core between
/// checks: long enough to catch the next level of a run (tens to hundreds of microseconds,
/// by the CPU's pause), short enough not to hold a core from other runnable threads through
/// a long serial stretch.
const SPINS: u32 = 1 << 12;

/// Helpers standing by for levels; see the module doc.
pub(crate) struct Crew {
    /// Helper threads running (none: [`Crew::for_each_mut`] runs inline); threads asked
    /// for are `next.len()`, the running one included.
    helpers: AtomicUsize,
    /// Levels handed out so far ([`DISMISSED`] when the crew is dismissed).
    published: Line<AtomicUsize>,
    /// Per thread, the next task of its share of the current level.
    next: Vec<Line<AtomicUsize>>,
    /// Helpers not yet done with the current level.
    busy: Line<AtomicUsize>,
    /// The current level: written only while no helper is working (`busy` is 0).
    level: UnsafeCell<Level>,
    /// The first panic of a helper's task, passed on by the running thread.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// A level is being run (levels do not nest).
    in_level: AtomicBool,
}

// SAFETY: `level` is written by the running thread only between levels, while no helper
// reads it (they read it after seeing `published` change and are done before `busy` is 0);
// the tasks it points at are shared as the bounds of `for_each_mut` require.
unsafe impl Sync for Crew {}

/// A level as the helpers see it: the task body, type-erased, and where each thread's
/// share of the tasks starts (one more entry: the task count).
#[derive(Clone, Copy)]
struct Level {
    body: *const (),
    call: unsafe fn(*const (), usize),
    starts: *const usize,
}

/// Calls the body behind `body` (an `F`) on task `i`.
unsafe fn call<F: Fn(usize) + Sync>(body: *const (), i: usize) {
    // SAFETY: `body` points at the `F` of the level being run, alive until it ends.
    unsafe { (*(body as *const F))(i) }
}

/// Runs `run` with a crew of `helpers` threads standing by (fewer if threads cannot be
/// started; none runs every level inline). The helpers leave when `run` returns or panics.
///
/// Run on the main thread of a process that has GNU OpenMP loaded (PyTorch's CPU build
/// does), the helpers are the main thread's OpenMP team, no more threads than torch's
/// setting (`omp_get_max_threads`): after each of torch's parallel operations its threads
/// spin for a while waiting for the next, and threads of our own would have to share the
/// cores with them (a simulated run right after eager operations took 1.4x as long). Not
/// on other threads: a team there would be a second pool of OpenMP threads for good, and
/// with more of them than cores libgomp makes every thread stop spinning early (eager
/// operations then took twice as long). Not in a forked child of the process that first
/// looked libgomp up ([`crate::init_threads`]): libgomp's pool does not survive a fork.
pub(crate) fn with_crew<R>(helpers: usize, run: impl FnOnce(&Crew) -> R) -> R {
    let omp = openmp::usable().filter(|_| helpers > 0);
    // torch.set_num_threads bounds an OpenMP team (1: every level inline, as in a data
    // loader's worker, where torch sets it so).
    // SAFETY: a plain query of this thread's OpenMP settings.
    let most = omp.map_or(usize::MAX, |omp| unsafe { (omp.max_threads)() }.max(1) as usize);
    let crew = Crew::new((helpers + 1).min(most));
    if crew.next.len() == 1 {
        return run(&crew);
    }
    if let Some(omp) = omp {
        return on_openmp_team(omp, &crew, run);
    }
    let crew = &crew;
    std::thread::scope(|scope| {
        /// Dismisses the crew however `run` ends, so the scope's join never waits forever.
        struct Dismiss<'c>(&'c Crew);
        impl Drop for Dismiss<'_> {
            fn drop(&mut self) {
                self.0.published.store(DISMISSED, Ordering::Release);
            }
        }
        let _dismiss = Dismiss(crew);
        for _ in 0..helpers {
            // Helper `n` is thread `n` (the running thread is 0); they start in order.
            let n = crew.helpers.load(Ordering::Relaxed) + 1;
            let started = std::thread::Builder::new().name("dojo-sim".into()).spawn_scoped(scope, move || crew.serve(n));
            if started.is_ok() {
                crew.helpers.fetch_add(1, Ordering::Relaxed);
            }
        }
        run(crew)
    })
}

/// Looks up the process's OpenMP runtime now ([`crate::init_threads`]).
pub(crate) fn init() {
    openmp::loaded();
}

/// Runs `run` on this thread as thread 0 of an OpenMP team, the team's other threads
/// serving as the crew's helpers.
fn on_openmp_team<F: FnOnce(&Crew) -> R, R>(omp: &openmp::Runtime, crew: &Crew, run: F) -> R {
    struct Region<'c, F, R> {
        omp: &'c openmp::Runtime,
        crew: &'c Crew,
        run: Mutex<Option<F>>,
        out: Mutex<Option<std::thread::Result<R>>>,
    }
    extern "C" fn body<F: FnOnce(&Crew) -> R, R>(data: *mut std::ffi::c_void) {
        // SAFETY: `data` is the Region below, alive until the team has finished.
        let region = unsafe { &*(data as *const Region<'_, F, R>) };
        let (crew, omp) = (region.crew, region.omp);
        // SAFETY: both are plain queries of the calling thread's team.
        let (me, team) = unsafe { ((omp.thread_num)() as usize, (omp.num_threads)() as usize) };
        // The team may be smaller than asked (or, in principle, larger: the extra threads
        // leave at once).
        let threads = team.min(crew.next.len());
        if me == 0 {
            crew.helpers.store(threads - 1, Ordering::Relaxed);
            if let Some(run) = region.run.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let out = catch_unwind(AssertUnwindSafe(|| run(crew)));
                *region.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
            }
            crew.published.store(DISMISSED, Ordering::Release);
        } else if me < threads {
            crew.serve(me);
        }
    }
    let region = Region { omp, crew, run: Mutex::new(Some(run)), out: Mutex::new(None) };
    let threads = crew.next.len() as std::ffi::c_uint;
    // SAFETY: `body` matches the outlined-region signature and unwinds nothing (thread 0
    // catches `run`'s panics; a helper catches its tasks'); `region` outlives the call,
    // which returns when every thread of the team has left `body`.
    unsafe { (omp.parallel)(body::<F, R>, &region as *const Region<'_, F, R> as *mut std::ffi::c_void, threads, 0) };
    match region.out.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(Ok(r)) => r,
        Some(Err(p)) => resume_unwind(p),
        None => unreachable!("OpenMP ran no thread 0"),
    }
}

/// GNU OpenMP (libgomp), when this process has it loaded: found by its soname, never
/// loaded by us.
mod openmp {
    use std::ffi::{c_int, c_uint, c_void, CStr};
    use std::sync::OnceLock;

    pub(super) struct Runtime {
        /// `GOMP_parallel(fn, data, num_threads, flags)`: runs `fn(data)` on a team, the
        /// calling thread as thread 0; returns when all are done.
        pub parallel: unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint),
        pub thread_num: unsafe extern "C" fn() -> c_int,
        pub num_threads: unsafe extern "C" fn() -> c_int,
        pub max_threads: unsafe extern "C" fn() -> c_int,
        /// The process that looked it up.
        pid: c_int,
    }

    /// The loaded libgomp, looked up once (the Python extension links libtorch, which
    /// loads it, and looks it up at import: [`crate::init_threads`]; a plain Rust program
    /// has none).
    pub(super) fn loaded() -> Option<&'static Runtime> {
        static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
        RUNTIME.get_or_init(find).as_ref()
    }

    /// The loaded libgomp, if the calling thread may run a team on it: the main thread of
    /// the process that looked it up (not a forked child of it).
    pub(super) fn usable() -> Option<&'static Runtime> {
        let omp = loaded()?;
        // SAFETY: plain queries.
        let (pid, tid) = unsafe { (sys::getpid(), sys::gettid()) };
        (omp.pid == pid && tid == pid).then_some(omp)
    }

    #[cfg(target_os = "linux")]
    mod sys {
        use std::ffi::{c_char, c_int, c_void};
        extern "C" {
            pub fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
            pub fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
            pub fn getpid() -> c_int;
            pub fn gettid() -> c_int;
        }
    }

    #[cfg(target_os = "linux")]
    pub(super) fn find() -> Option<Runtime> {
        use sys::{dlopen, dlsym};
        const RTLD_LAZY: c_int = 0x1;
        const RTLD_NOLOAD: c_int = 0x4;
        // SAFETY: RTLD_NOLOAD only looks up a library already loaded; the handle is never
        // closed, so the symbols stay valid.
        let lib = unsafe { dlopen(c"libgomp.so.1".as_ptr(), RTLD_LAZY | RTLD_NOLOAD) };
        if lib.is_null() {
            return None;
        }
        let sym = |name: &CStr| {
            // SAFETY: a lookup in a loaded library.
            let p = unsafe { dlsym(lib, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let parallel = sym(c"GOMP_parallel")?;
        let query = |name: &CStr| {
            // SAFETY: libgomp's `int omp_get_*(void)` queries.
            sym(name).map(|p| unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(p) })
        };
        Some(Runtime {
            // SAFETY: libgomp's ABI for GOMP_parallel (since GCC 4.9).
            parallel: unsafe {
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint)>(parallel)
            },
            thread_num: query(c"omp_get_thread_num")?,
            num_threads: query(c"omp_get_num_threads")?,
            max_threads: query(c"omp_get_max_threads")?,
            // SAFETY: a plain query.
            pid: unsafe { sys::getpid() },
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn find() -> Option<Runtime> {
        None
    }
}

impl Crew {
    /// A crew for `threads` threads in all, none of them started.
    fn new(threads: usize) -> Crew {
        Crew {
            helpers: AtomicUsize::new(0),
            published: Line(AtomicUsize::new(0)),
            next: (0..threads).map(|_| Line(AtomicUsize::new(0))).collect(),
            busy: Line(AtomicUsize::new(0)),
            level: UnsafeCell::new(Level { body: std::ptr::null(), call: call::<fn(usize)>, starts: std::ptr::null() }),
            panic: Mutex::new(None),
            in_level: AtomicBool::new(false),
        }
    }

    /// Calls `f` on every item, each exactly once, on this thread and the helpers; returns
    /// when all calls have returned. Neighbouring items should share data: thread `t` of
    /// `n` starts on the `t`-th `n`-th of them.
    pub(crate) fn for_each_mut<T: Send, F: Fn(&mut T) + Sync>(&self, items: &mut [T], f: F) {
        if self.helpers.load(Ordering::Relaxed) == 0 || items.len() < 2 {
            items.iter_mut().for_each(f);
            return;
        }
        // One share per thread asked for (a helper that did not start leaves its share to
        // the others).
        let shares = self.next.len();
        let starts: Vec<usize> = (0..=shares).map(|t| t * items.len() / shares).collect();
        let base = Items(items.as_mut_ptr());
        // SAFETY: `run` hands out each index below `items.len()` once, so no two calls get
        // the same item, and all return before `items`' borrow ends.
        let body = move |i: usize| f(unsafe { base.at(i) });
        self.run(&starts, &body);
    }

    /// Publishes a level (its tasks split at `starts`), works on it, and waits for the
    /// helpers.
    fn run<F: Fn(usize) + Sync>(&self, starts: &[usize], body: &F) {
        // Levels do not nest: a task starting one would rewrite the level its crew is on.
        assert!(!self.in_level.swap(true, Ordering::Relaxed), "a crew's task started a level of its own");
        // SAFETY: no helper is working (`busy` is 0 between levels), so none reads `level`.
        unsafe { *self.level.get() = Level { body: body as *const F as *const (), call: call::<F>, starts: starts.as_ptr() } };
        for (next, &start) in self.next.iter().zip(starts) {
            next.store(start, Ordering::Relaxed);
        }
        self.busy.store(self.helpers.load(Ordering::Relaxed), Ordering::Relaxed);
        self.published.fetch_add(1, Ordering::Release);
        let mine = catch_unwind(AssertUnwindSafe(|| self.work(0)));
        if mine.is_err() {
            self.skip_rest();
        }
        wait_until(|| self.busy.load(Ordering::Acquire) == 0);
        self.in_level.store(false, Ordering::Relaxed);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }

    /// Thread `me`'s part of the current level: its own share of the tasks, then what is
    /// left of the others', each taken a run at a time. A run is a part of what is left of
    /// the share (guided self-scheduling): few claims on a share's index, neighbouring tasks
    /// on one thread, and small runs at the end to even out.
    fn work(&self, me: usize) {
        // SAFETY: read after `published` announced the level; it stays until `busy` is 0.
        let level = unsafe { *self.level.get() };
        let shares = self.next.len();
        for share in (me..shares).chain(0..me) {
            // SAFETY: `starts` has `shares + 1` entries, alive until the level ends.
            let end = unsafe { *level.starts.add(share + 1) };
            let next = &self.next[share];
            let mut at = next.load(Ordering::Relaxed);
            while at < end {
                let take = ((end - at) / (2 * shares)).max(1);
                match next.compare_exchange_weak(at, at + take, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        for i in at..at + take {
                            // SAFETY: `i` is below the task count and taken by no other thread.
                            unsafe { (level.call)(level.body, i) };
                        }
                        at = next.load(Ordering::Relaxed);
                    }
                    Err(now) => at = now,
                }
            }
        }
    }

    /// After a panic: the level's tasks not yet taken are skipped.
    fn skip_rest(&self) {
        for next in &self.next {
            next.store(usize::MAX / 2, Ordering::Relaxed);
        }
    }

    /// A helper's life: each level as it is published, until dismissed.
    fn serve(&self, me: usize) {
        let mut seen = 0;
        loop {
            let mut now = 0;
            wait_until(|| {
                now = self.published.load(Ordering::Acquire);
                now != seen
            });
            if now == DISMISSED {
                return;
            }
            seen = now;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.work(me))) {
                // The level's other tasks are skipped; the running thread re-raises.
                self.skip_rest();
                self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
            }
            self.busy.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A value alone on its cache line(s): the counters the threads spin on and bump do not
/// share a line, so one thread's writes do not stall the others' reads.
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The items of a level, shared with the helpers by address.
struct Items<T>(*mut T);

impl<T> Clone for Items<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Items<T> {}

// SAFETY: the helpers get distinct items ([`Crew::for_each_mut`]), which may move between
// threads (`T: Send`).
unsafe impl<T: Send> Sync for Items<T> {}
unsafe impl<T: Send> Send for Items<T> {}

impl<T> Items<T> {
    /// SAFETY: `i` is in bounds and no other reference to item `i` is alive.
    unsafe fn at<'t>(self, i: usize) -> &'t mut T {
        unsafe { &mut *self.0.add(i) }
    }
}

/// Spins on `done` for a while, then yields the core between checks.
fn wait_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0;
    while !done() {
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_visited_once_per_level_with_or_without_helpers() {
        for helpers in [0, 1, 3] {
            with_crew(helpers, |crew| {
                let mut items = vec![0u32; 1000];
                for level in 0..200 {
                    let len = level % 17;
                    crew.for_each_mut(&mut items[..len], |x| *x += 1);
                }
                let want: Vec<u32> = (0..1000).map(|i| (0..200).filter(|l| l % 17 > i).count() as u32).collect();
                assert_eq!(items, want);
            });
        }
    }

    /// The OpenMP team as the crew (what a Python process with torch uses), on a libgomp
    /// this test loads itself; skipped where the system has none.
    #[test]
    #[cfg(target_os = "linux")]
    fn an_openmp_team_serves_as_the_crew() {
        extern "C" {
            fn dlopen(filename: *const std::ffi::c_char, flags: std::ffi::c_int) -> *mut std::ffi::c_void;
        }
        // SAFETY: loading a system library (RTLD_NOW).
        if unsafe { dlopen(c"libgomp.so.1".as_ptr(), 0x2) }.is_null() {
            eprintln!("no libgomp.so.1 on this system: skipped");
            return;
        }
        let omp = openmp::find().expect("libgomp's entry points");
        let items = on_openmp_team(&omp, &Crew::new(3), |crew| {
            assert_eq!(crew.helpers.load(Ordering::Relaxed), 2, "a team of 3");
            let mut items = vec![0u32; 500];
            for level in 0..100 {
                crew.for_each_mut(&mut items[..level * 5], |x| *x += 1);
            }
            items
        });
        let want: Vec<u32> = (0..500).map(|i| (0..100).filter(|l| l * 5 > i).count() as u32).collect();
        assert_eq!(items, want);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            on_openmp_team(&omp, &Crew::new(2), |crew| {
                let mut items: Vec<usize> = (0..64).collect();
                crew.for_each_mut(&mut items, |x| assert!(*x != 50, "task 50 fails"));
            })
        }));
        assert!(caught.is_err());
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_crew_leaves() {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            with_crew(1, |crew| {
                let mut items: Vec<usize> = (0..64).collect();
                crew.for_each_mut(&mut items, |x| assert!(*x != 40, "task 40 fails"));
            })
        }));
        assert!(caught.is_err());
    }
}
