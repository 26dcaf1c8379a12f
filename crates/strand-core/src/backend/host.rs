//! Host memory for a forward pass's results, reused from pass to pass.
//!
//! A GPU's results for one round (10^9 floats at a million tokens of a
//! PS model) are copied to the host every pass. Into ordinary (pageable)
//! memory the driver copies through its own staging buffer and a CPU
//! memcpy, and several GPUs copying at once share that path; into
//! page-locked memory the copy is one DMA at the link's speed. So a GPU
//! backend page-locks a [`HostBuffer`] the first time it fills it, and the
//! buffer stays locked while it is reused. The memory is whole pages of its
//! own, because a page can be registered with the driver only once.
//!
//! Large buffers are aligned to 2 MiB and, on Linux, asked for transparent
//! huge pages: faulting in and locking a 2 GiB buffer then takes a
//! thousand page faults instead of half a million.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

const PAGE: usize = 4096;
const HUGE_PAGE: usize = 2 << 20;

/// A growable `f32` buffer in page-aligned memory that a backend may keep
/// page-locked (see the module's notes). Dereferences to `[f32]`.
pub struct HostBuffer {
    ptr: NonNull<f32>,
    /// Capacity in floats (a whole number of pages).
    cap: usize,
    len: usize,
    /// Undoes the page-locking when dropped; always dropped before the
    /// memory is freed.
    pin: Option<Box<dyn Send>>,
    /// Whether a backend may page-lock it: not for a buffer used once,
    /// where locking would cost more than it saves.
    lockable: bool,
}

// SAFETY: the buffer owns its memory exclusively, like a `Vec<f32>`; the
// pin guard is `Send`, and `&HostBuffer` only hands out `&[f32]`.
unsafe impl Send for HostBuffer {}
unsafe impl Sync for HostBuffer {}

impl Default for HostBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBuffer {
    /// An empty buffer (no memory until it is resized), for reuse.
    pub fn new() -> HostBuffer {
        HostBuffer {
            ptr: NonNull::dangling(),
            cap: 0,
            len: 0,
            pin: None,
            lockable: true,
        }
    }

    /// An empty buffer to be filled once: never page-locked.
    pub fn transient() -> HostBuffer {
        let mut b = HostBuffer::new();
        b.lockable = false;
        b
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a backend has page-locked the memory.
    pub fn is_pinned(&self) -> bool {
        self.pin.is_some()
    }

    /// Sets the length to `n`: the first `min(len, n)` values are kept and
    /// the others are zero. Growing past the capacity moves the buffer to
    /// new memory, which is no longer page-locked.
    pub fn resize(&mut self, n: usize) {
        if n > self.cap {
            let align = Self::align(n * 4);
            let cap = (n * 4).div_ceil(align) * align / 4;
            let layout = Self::layout(cap);
            // SAFETY: `layout` has a non-zero size (n > cap >= 0).
            let raw = unsafe { alloc(layout) };
            let Some(new) = NonNull::new(raw.cast::<f32>()) else {
                std::alloc::handle_alloc_error(layout)
            };
            if align == HUGE_PAGE {
                advise_huge_pages(raw, cap * 4);
            }
            // SAFETY: the new memory is `cap` floats; zeroed before use.
            unsafe { std::ptr::write_bytes(new.as_ptr(), 0, cap) };
            // SAFETY: both ranges are valid for `len` floats and distinct.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), new.as_ptr(), self.len) };
            self.release();
            self.ptr = new;
            self.cap = cap;
        } else if n > self.len {
            // SAFETY: `len..n` lies within the capacity.
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, n - self.len) };
        }
        self.len = n;
    }

    /// Replaces the contents with a copy of `values`.
    pub fn copy_from(&mut self, values: &[f32]) {
        self.len = self.len.min(values.len());
        self.resize(values.len());
        self.copy_from_slice(values);
    }

    /// Page-locks the whole capacity with `pin`, unless it is locked
    /// already, empty or [transient](HostBuffer::transient). `pin` gets the memory's address and size in bytes
    /// and returns a guard that undoes the locking when dropped, or `None`
    /// where it could not lock it (the buffer then stays pageable).
    pub(crate) fn pin_with(&mut self, pin: impl FnOnce(*mut u8, usize) -> Option<Box<dyn Send>>) {
        if self.lockable && self.pin.is_none() && self.cap > 0 {
            self.pin = pin(self.ptr.as_ptr().cast(), self.cap * 4);
        }
    }

    /// Huge-page alignment from one huge page up.
    fn align(bytes: usize) -> usize {
        if bytes >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            PAGE
        }
    }

    fn layout(cap: usize) -> Layout {
        Layout::from_size_align(cap * 4, Self::align(cap * 4))
            .expect("a buffer smaller than isize::MAX")
    }

    /// Unlocks and frees the memory.
    fn release(&mut self) {
        self.pin = None;
        if self.cap > 0 {
            // SAFETY: allocated in `resize` with this layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), Self::layout(self.cap)) };
        }
        self.ptr = NonNull::dangling();
        self.cap = 0;
        self.len = 0;
    }
}

/// Asks Linux for transparent huge pages (where it is set to `madvise`);
/// only a hint: without them the buffer works the same, slower to lock.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    // SAFETY: `ptr..ptr + bytes` is memory this buffer just allocated,
    // aligned to a huge page.
    unsafe { libc::madvise(ptr.cast(), bytes, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _bytes: usize) {}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::ops::Deref for HostBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `len` initialised floats (zeroed or written) at `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for HostBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as for `deref`, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuffer")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .field("pinned", &self.is_pinned())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn resize_keeps_values_and_zeroes_the_rest() {
        let mut b = HostBuffer::new();
        b.copy_from(&[1.0, 2.0, 3.0]);
        assert_eq!(b.as_ptr() as usize % PAGE, 0);
        b.resize(2);
        assert_eq!(&*b, &[1.0, 2.0]);
        // Grown within the capacity: the stale 3.0 must not come back.
        b.resize(4);
        assert_eq!(&*b, &[1.0, 2.0, 0.0, 0.0]);
        // Grown past it: moved, values kept.
        b[3] = 7.0;
        b.resize(5000);
        assert_eq!(&b[..5], &[1.0, 2.0, 0.0, 7.0, 0.0]);
        assert!(b[5..].iter().all(|&x| x == 0.0));
        // Large buffers sit on huge-page boundaries.
        b.resize(HUGE_PAGE / 4 + 1);
        assert_eq!((b.as_ptr() as usize % HUGE_PAGE, b.cap), (0, HUGE_PAGE / 2));
        assert_eq!(&b[..5], &[1.0, 2.0, 0.0, 7.0, 0.0]);
        assert!(b[5..].iter().all(|&x| x == 0.0));
        b.copy_from(&[9.0]);
        assert_eq!(&*b, &[9.0]);
        assert!(HostBuffer::new().is_empty());
    }

    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_pin_covers_the_memory_and_is_undone_before_it_moves() {
        let undone = Arc::new(AtomicUsize::new(0));
        let mut b = HostBuffer::new();
        let mut calls = 0;
        b.pin_with(|_, _| {
            calls += 1;
            None
        });
        assert_eq!(calls, 0, "nothing to lock in an empty buffer");
        b.resize(10);
        let u = Arc::clone(&undone);
        b.pin_with(|p, bytes| {
            assert_eq!((p as usize % PAGE, bytes), (0, PAGE));
            Some(Box::new(Guard(u)))
        });
        assert!(b.is_pinned());
        b.pin_with(|_, _| panic!("locked already"));
        b.resize(PAGE / 4);
        assert_eq!(
            undone.load(Ordering::SeqCst),
            0,
            "same memory, still locked"
        );
        b.resize(PAGE / 4 + 1);
        assert_eq!(undone.load(Ordering::SeqCst), 1, "moved: unlocked first");
        assert!(!b.is_pinned());
        let u = Arc::clone(&undone);
        b.pin_with(|_, _| Some(Box::new(Guard(u))));
        drop(b);
        assert_eq!(undone.load(Ordering::SeqCst), 2);
        let mut once = HostBuffer::transient();
        once.resize(10);
        once.pin_with(|_, _| panic!("a transient buffer is never locked"));
        assert!(!once.is_pinned());
    }
}
