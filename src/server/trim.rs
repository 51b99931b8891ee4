//! Giving back the memory parked connections freed. glibc returns only the top of its heaps to the
//! OS by itself; the hyper buffers of connections that parked sit between long-lived allocations
//! (the parked connections' tasks) and would otherwise stay resident.
//!
//! The other way round, glibc gives back too eagerly under steady load: a worker thread's heap
//! is trimmed as soon as its free top passes 128 KiB, down to 128 KiB, so the top of a busy
//! worker's heap is handed back and faulted in again many times a second (each time an
//! `madvise` with a TLB shootdown across cores, then page faults). [`keep_heap_tops`] makes
//! that threshold 1 MiB.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Connections parked since the allocator was last asked to return freed memory (process-wide,
/// like the memory itself).
static PARKED_SINCE_TRIM: AtomicUsize = AtomicUsize::new(0);

/// How many parked connections make it worth asking the allocator for their freed buffers back:
/// at once, or once a wave of them is over (no park for a whole check interval).
const TRIM_AFTER_PARKS: usize = 1024;
const TRIM_AFTER_QUIET_PARKS: usize = 64;

/// How often that is checked.
const TRIM_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Counts a parked connection for [`return_freed_memory`].
pub(super) fn count_park() {
    PARKED_SINCE_TRIM.fetch_add(1, Relaxed);
}

/// Runs for the server's life: once enough connections have parked, asks glibc to give the free
/// pages back to the OS. Other allocators return memory on their own: there this does nothing.
pub(super) async fn return_freed_memory() {
    let mut ticks = tokio::time::interval(TRIM_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut parked_at_last_tick = 0;
    loop {
        ticks.tick().await;
        let parked = PARKED_SINCE_TRIM.load(Relaxed);
        let trim = time_to_trim(parked, parked_at_last_tick);
        parked_at_last_tick = parked;
        if trim {
            PARKED_SINCE_TRIM.fetch_sub(parked, Relaxed);
            parked_at_last_tick = 0;
            let started = std::time::Instant::now();
            let _ = tokio::task::spawn_blocking(trim_allocator).await;
            let took_ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(took_ms, "returned memory freed by parked connections");
        }
    }
}

/// Whether to trim, given the parks counted now and at the previous check: many of them, or a
/// wave of some that is over.
fn time_to_trim(parked: usize, parked_at_last_check: usize) -> bool {
    let wave_over = parked == parked_at_last_check && parked >= TRIM_AFTER_QUIET_PARKS;
    parked >= TRIM_AFTER_PARKS || wave_over
}

/// Stops glibc from trimming the tops of the worker threads' heaps on every small swing of a
/// steady load (see the module's documentation). `malloc_trim` still returns freed pages inside
/// the heaps. Other allocators: nothing to do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn keep_heap_tops() {
    extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    /// glibc's `M_TRIM_THRESHOLD` (malloc.h): a heap's free top is trimmed once it exceeds
    /// this; 128 KiB by default, the same as the pad trimming keeps, so a heap whose top moves by
    /// a few pages is trimmed and regrown again and again.
    const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
    /// At most this much stays free at a heap's top (a few MiB for the whole process).
    const HEAP_TOP_KEPT: std::ffi::c_int = 1024 * 1024;
    // SAFETY: mallopt takes no pointers and is thread-safe (it takes the arena locks); a value it
    // rejects leaves the setting as it was.
    unsafe {
        mallopt(M_TRIM_THRESHOLD, HEAP_TOP_KEPT);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn keep_heap_tops() {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_allocator() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and is safe to call from any thread at any
    // time; it only releases free pages.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_allocator() {}

#[cfg(test)]
mod tests {
    use super::time_to_trim;

    #[test]
    fn trims_after_many_parks_or_once_a_wave_is_over() {
        assert!(time_to_trim(1024, 0), "many parks: at once");
        assert!(time_to_trim(100, 100), "a wave of 100 that is over");
        assert!(!time_to_trim(150, 100), "a wave still going on");
        assert!(!time_to_trim(10, 10), "too few to be worth it");
        assert!(!time_to_trim(0, 0));
    }
}
