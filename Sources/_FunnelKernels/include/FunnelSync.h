// Small inline helpers for lock-free reads of shared graph memory, spin locks and
// prefetching. They are static inline so Swift's importer inlines them: a relaxed
// load is a plain `mov` on x86-64, yet the thread sanitizer sees a proper atomic.
#ifndef FUNNEL_SYNC_H
#define FUNNEL_SYNC_H

#include <stdint.h>
#include <stddef.h>

static inline uint32_t fk_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t fk_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fk_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void fk_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static inline uint8_t fk_load_u8(const uint8_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fk_store_u8(uint8_t *p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static inline uint64_t fk_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fk_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/// Takes a one-byte spin lock (0 free, 1 held).
static inline void fk_spin_lock(uint8_t *lock) {
    while (__atomic_exchange_n(lock, (uint8_t)1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}
static inline void fk_spin_unlock(uint8_t *lock) { __atomic_store_n(lock, (uint8_t)0, __ATOMIC_RELEASE); }

static inline void fk_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// CRC-32C (Castagnoli) of `n` bytes, continuing from `crc` (start with 0).
/// Uses the SSE4.2 instruction when the CPU has it.
uint32_t fk_crc32c(uint32_t crc, const void *data, size_t n);

#endif
