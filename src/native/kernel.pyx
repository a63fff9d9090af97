# The attribution and dedup kernel (spec: attribution.md).  It owns the hot
# loops and the in-memory state of one app; unmo.kernel decides everything
# else (settings, database lookups, what to answer).
#
# State, all bounded by the app's windows (docs/architecture.md, "Memory"):
#   seen       record-id dedup keys (128 bit) -> received ms, dedup window
#   touches    append-only arrays; chains by typed device hash, by fingerprint
#              (clicks without identifiers) and an index by click id;
#              kept while ts >= now - longest window - grace
#   installs   the devices' primary installs (not reinstalls), indexed by typed
#              device hash; kept while ts >= now - re-attribution window - grace;
#              older ones are looked up in the database by unmo.kernel on a miss.


cdef int _cand_cmp(const void *a, const void *b) noexcept nogil:
    # latest ts first; equal ts: ingested later (larger slot) first
    cdef const Cand *x = <const Cand *>a
    cdef const Cand *y = <const Cand *>b
    if x.ts != y.ts:
        return -1 if x.ts > y.ts else 1
    if x.slot != y.slot:
        return -1 if x.slot > y.slot else 1
    return 0


cdef inline void *_grow(void *p, size_t n, size_t size) except NULL:
    cdef void *q = realloc(p, n * size if n else size)
    if q == NULL:
        raise MemoryError("kernel state")
    return q


cdef class Kernel:
    """Per-app attribution state and the waterfall over batches of columns."""

    cdef public int64_t click_window, impression_window, probabilistic_window
    cdef public int64_t reattribution_window, min_ctit, dedup_window, grace
    # Rebuilds (which drop what fell out of the windows) start once a table holds this many
    # entries and has doubled since the last one; tests lower it to force many rebuilds.
    cdef public int64_t rebuild_min
    # The latest receive time processed (ms): the "now" of the next eviction.
    cdef public int64_t last_received

    cdef unmo_set128 seen

    cdef int64_t nt, tcap, t_live
    cdef int64_t *t_ts
    cdef int64_t *t_next
    cdef int64_t *t_fpnext
    cdef uint64_t *t_h1
    cdef uint64_t *t_h2
    cdef uint64_t *t_dev
    cdef uint64_t *t_fp
    cdef int32_t *t_camp
    cdef uint8_t *t_kind
    cdef uint8_t *t_flags
    cdef list t_ids
    cdef unmo_map t_bydev
    cdef unmo_map t_byfp
    cdef unmo_map t_byid

    cdef int64_t ni, icap, i_live
    cdef int64_t *i_ts
    cdef int64_t *i_order   # processing order: (app_log.seq << 32) | ord of the decision
    cdef int64_t *i_tts
    cdef int64_t *i_ctit
    cdef int32_t *i_camp
    cdef uint8_t *i_status
    cdef uint8_t *i_tkind
    cdef uint8_t *i_match
    cdef list i_tids
    cdef unmo_map i_bydev
    cdef unmo_map absent

    cdef Cand *cand
    cdef int64_t ccap

    def __cinit__(self):
        if (unmo_set128_init(&self.seen, 1024) or unmo_map_init(&self.t_bydev, 1024)
                or unmo_map_init(&self.t_byfp, 256) or unmo_map_init(&self.t_byid, 1024)
                or unmo_map_init(&self.i_bydev, 1024) or unmo_map_init(&self.absent, 64)):
            raise MemoryError("kernel state")
        self.t_ids = []
        self.i_tids = []
        self.rebuild_min = 65536
        self.last_received = 0
        self.ccap = 64
        self.cand = <Cand *>malloc(self.ccap * sizeof(Cand))
        if self.cand == NULL:
            raise MemoryError("kernel state")

    def __init__(self, int64_t click_window, int64_t impression_window, int64_t probabilistic_window,
                 int64_t reattribution_window, int64_t min_ctit, int64_t dedup_window, int64_t grace):
        self.configure(click_window, impression_window, probabilistic_window, reattribution_window,
                       min_ctit, dedup_window, grace)

    def configure(self, int64_t click_window, int64_t impression_window, int64_t probabilistic_window,
                  int64_t reattribution_window, int64_t min_ctit, int64_t dedup_window, int64_t grace):
        """Set the windows (ms).  Changes apply to records decided from now on."""
        self.click_window = click_window
        self.impression_window = impression_window
        self.probabilistic_window = probabilistic_window
        self.reattribution_window = reattribution_window
        self.min_ctit = min_ctit
        self.dedup_window = dedup_window
        self.grace = grace

    def __dealloc__(self):
        unmo_set128_free(&self.seen)
        unmo_map_free(&self.t_bydev)
        unmo_map_free(&self.t_byfp)
        unmo_map_free(&self.t_byid)
        unmo_map_free(&self.i_bydev)
        unmo_map_free(&self.absent)
        free(self.t_ts); free(self.t_next); free(self.t_fpnext); free(self.t_h1); free(self.t_h2)
        free(self.t_dev); free(self.t_fp); free(self.t_camp); free(self.t_kind); free(self.t_flags)
        free(self.i_ts); free(self.i_order); free(self.i_tts); free(self.i_ctit); free(self.i_camp)
        free(self.i_status); free(self.i_tkind); free(self.i_match)
        free(self.cand)

    # ------------------------------------------------------------------ sizes
    @property
    def touches(self):
        return self.nt

    @property
    def installs(self):
        return self.ni

    @property
    def record_ids(self):
        return self.seen.len

    def memory_bytes(self):
        """Bytes held by the C state (tables and arrays, not the id strings)."""
        cdef size_t b = 0
        b += self.seen.cap * 24
        b += (self.t_bydev.cap + self.t_byfp.cap + self.t_byid.cap + self.i_bydev.cap + self.absent.cap) * 16
        b += self.tcap * (8 + 8 * NDEV + 8 + 8 + 8 + 8 * NDEV + 8 + 4 + 1 + 1)
        b += self.icap * (8 + 8 + 8 + 4 + 1 + 1 + 1)
        return b

    # -------------------------------------------------------------- dedup set
    cdef inline bint _seen_check_add(self, uint64_t h1, uint64_t h2, int64_t received) except -1:
        """True when (h1, h2) was accepted within the dedup window; else remembers it."""
        cdef int64_t *v = unmo_set128_get(&self.seen, h1, h2)
        if v != NULL:
            if received - v[0] <= self.dedup_window:
                return True
            v[0] = received
            return False
        if unmo_set128_full(&self.seen):
            if unmo_set128_rebuild(&self.seen, received - self.dedup_window) != 0:
                raise MemoryError("dedup set")
        unmo_set128_add(&self.seen, h1, h2, received)
        return False

    # ---------------------------------------------------------------- touches
    cdef int _touch_reserve(self) except -1:
        cdef int64_t cap
        if self.nt < self.tcap:
            return 0
        cap = self.tcap * 2 if self.tcap else 1024
        self.t_ts = <int64_t *>_grow(self.t_ts, cap, 8)
        self.t_next = <int64_t *>_grow(self.t_next, cap * NDEV, 8)
        self.t_fpnext = <int64_t *>_grow(self.t_fpnext, cap, 8)
        self.t_h1 = <uint64_t *>_grow(self.t_h1, cap, 8)
        self.t_h2 = <uint64_t *>_grow(self.t_h2, cap, 8)
        self.t_dev = <uint64_t *>_grow(self.t_dev, cap * NDEV, 8)
        self.t_fp = <uint64_t *>_grow(self.t_fp, cap, 8)
        self.t_camp = <int32_t *>_grow(self.t_camp, cap, 4)
        self.t_kind = <uint8_t *>_grow(self.t_kind, cap, 1)
        self.t_flags = <uint8_t *>_grow(self.t_flags, cap, 1)
        self.tcap = cap
        return 0

    cdef int _link_touch(self, int64_t s) except -1:
        cdef int j
        cdef int64_t *head
        cdef uint64_t h
        for j in range(NDEV):
            h = self.t_dev[s * NDEV + j]
            self.t_next[s * NDEV + j] = -1
            if h == 0:
                continue
            head = unmo_map_get(&self.t_bydev, h)
            if head != NULL:
                self.t_next[s * NDEV + j] = head[0]
                head[0] = s
            elif unmo_map_put(&self.t_bydev, h, s) != 0:
                raise MemoryError("touch index")
        self.t_fpnext[s] = -1
        if self.t_fp[s] != 0 and not (self.t_flags[s] & TF_HAS_IDS) and self.t_kind[s] == KIND_CLICK:
            head = unmo_map_get(&self.t_byfp, self.t_fp[s])
            if head != NULL:
                self.t_fpnext[s] = head[0]
                head[0] = s
            elif unmo_map_put(&self.t_byfp, self.t_fp[s], s) != 0:
                raise MemoryError("touch index")
        if self.t_kind[s] == KIND_CLICK:
            if unmo_map_put(&self.t_byid, self.t_h1[s], s) != 0:
                raise MemoryError("touch index")
        return 0

    cdef int _add_touch(self, uint8_t kind, int64_t ts, uint64_t h1, uint64_t h2, const uint64_t *dev,
                        uint64_t fp, int32_t camp, bint blocked, object touch_id) except -1:
        cdef int64_t s
        cdef int j
        cdef uint8_t flags = TF_BLOCKED if blocked else 0
        self._touch_reserve()
        s = self.nt
        self.t_ts[s] = ts
        self.t_h1[s] = h1
        self.t_h2[s] = h2
        for j in range(NDEV):
            self.t_dev[s * NDEV + j] = dev[j]
            if dev[j] != 0:
                flags |= TF_HAS_IDS
        self.t_fp[s] = fp
        self.t_camp[s] = camp
        self.t_kind[s] = kind
        self.t_flags[s] = flags
        self.t_ids.append(touch_id)
        self.nt += 1
        self._link_touch(s)
        return 0

    cdef int _rebuild_touches(self, int64_t keep_from) except -1:
        """Drop touches with ts < keep_from and relink the survivors in order."""
        cdef int64_t s, d = 0
        cdef int j
        cdef list ids = []
        unmo_map_free(&self.t_bydev)
        unmo_map_free(&self.t_byfp)
        unmo_map_free(&self.t_byid)
        if (unmo_map_init(&self.t_bydev, 1024) or unmo_map_init(&self.t_byfp, 256)
                or unmo_map_init(&self.t_byid, 1024)):
            raise MemoryError("touch index")
        for s in range(self.nt):
            if self.t_ts[s] < keep_from:
                continue
            self.t_ts[d] = self.t_ts[s]
            self.t_h1[d] = self.t_h1[s]
            self.t_h2[d] = self.t_h2[s]
            for j in range(NDEV):
                self.t_dev[d * NDEV + j] = self.t_dev[s * NDEV + j]
            self.t_fp[d] = self.t_fp[s]
            self.t_camp[d] = self.t_camp[s]
            self.t_kind[d] = self.t_kind[s]
            self.t_flags[d] = self.t_flags[s]
            ids.append(self.t_ids[s])
            self._link_touch(d)
            d += 1
        self.nt = d
        self.t_ids = ids
        self.t_live = d
        return 0

    # --------------------------------------------------------------- installs
    cdef int64_t _new_install(self, int64_t ts, uint8_t status, uint8_t tkind, uint8_t match, int32_t camp,
                              int64_t tts, int64_t ctit, object touch_id, int64_t order) except -1:
        cdef int64_t cap, s
        if self.ni >= self.icap:
            cap = self.icap * 2 if self.icap else 256
            self.i_ts = <int64_t *>_grow(self.i_ts, cap, 8)
            self.i_order = <int64_t *>_grow(self.i_order, cap, 8)
            self.i_tts = <int64_t *>_grow(self.i_tts, cap, 8)
            self.i_ctit = <int64_t *>_grow(self.i_ctit, cap, 8)
            self.i_camp = <int32_t *>_grow(self.i_camp, cap, 4)
            self.i_status = <uint8_t *>_grow(self.i_status, cap, 1)
            self.i_tkind = <uint8_t *>_grow(self.i_tkind, cap, 1)
            self.i_match = <uint8_t *>_grow(self.i_match, cap, 1)
            self.icap = cap
        s = self.ni
        self.i_ts[s] = ts
        self.i_order[s] = order
        self.i_status[s] = status
        self.i_tkind[s] = tkind
        self.i_match[s] = match
        self.i_camp[s] = camp
        self.i_tts[s] = tts
        self.i_ctit[s] = ctit
        self.i_tids.append(touch_id)
        self.ni += 1
        return s

    cdef int64_t _primary_of(self, const uint64_t *dev):
        """The most recently decided primary install sharing an identifier, or -1.

        By decision order, not slot: installs looked up in the database after an eviction
        get new slots although they were decided long before the ones held."""
        cdef int j
        cdef int64_t best = -1
        cdef int64_t *v
        for j in range(NDEV):
            if dev[j] == 0:
                continue
            v = unmo_map_get(&self.i_bydev, dev[j])
            if v != NULL and (best < 0 or self.i_order[v[0]] > self.i_order[best]):
                best = v[0]
        return best

    cdef int _map_install(self, const uint64_t *dev, int64_t slot) except -1:
        """Point the identifiers at ``slot`` unless one points at a more recently decided install
        already (an old install looked up in the database must not take over an identifier)."""
        cdef int j
        cdef int64_t *v
        for j in range(NDEV):
            if dev[j] == 0:
                continue
            v = unmo_map_get(&self.i_bydev, dev[j])
            if v != NULL:
                if self.i_order[v[0]] <= self.i_order[slot]:
                    v[0] = slot
            elif unmo_map_put(&self.i_bydev, dev[j], slot) != 0:
                raise MemoryError("install index")
        return 0

    cdef int _rebuild_installs(self, int64_t keep_from) except -1:
        """Forget primary installs with ts < keep_from (unmo.kernel looks them up again on need)."""
        cdef int64_t s, d = 0
        cdef size_t i
        cdef int64_t *remap = <int64_t *>malloc((self.ni if self.ni else 1) * 8)
        cdef unmo_map fresh
        cdef list tids = []
        if remap == NULL:
            raise MemoryError("install index")
        try:
            for s in range(self.ni):
                if self.i_ts[s] < keep_from:
                    remap[s] = -1
                    continue
                remap[s] = d
                self.i_ts[d] = self.i_ts[s]
                self.i_order[d] = self.i_order[s]
                self.i_status[d] = self.i_status[s]
                self.i_tkind[d] = self.i_tkind[s]
                self.i_match[d] = self.i_match[s]
                self.i_camp[d] = self.i_camp[s]
                self.i_tts[d] = self.i_tts[s]
                self.i_ctit[d] = self.i_ctit[s]
                tids.append(self.i_tids[s])
                d += 1
            if unmo_map_init(&fresh, self.i_bydev.len + 16) != 0:
                raise MemoryError("install index")
            for i in range(self.i_bydev.cap):
                if self.i_bydev.keys[i] != 0 and remap[self.i_bydev.vals[i]] >= 0:
                    if unmo_map_put(&fresh, self.i_bydev.keys[i], remap[self.i_bydev.vals[i]]) != 0:
                        unmo_map_free(&fresh)
                        raise MemoryError("install index")
            unmo_map_free(&self.i_bydev)
            self.i_bydev = fresh
        finally:
            free(remap)
        self.ni = d
        self.i_tids = tids
        self.i_live = d
        unmo_map_free(&self.absent)
        if unmo_map_init(&self.absent, 64) != 0:
            raise MemoryError("install index")
        return 0

    def install_info(self, int64_t slot):
        """(ts, status, touch kind, match, campaign ref, touch ts, ctit ms, touch id) of a primary install."""
        if not 0 <= slot < self.ni:
            raise IndexError(f"install slot {slot} out of range")
        return (self.i_ts[slot], self.i_status[slot], self.i_tkind[slot], self.i_match[slot],
                self.i_camp[slot], self.i_tts[slot], self.i_ctit[slot], self.i_tids[slot])

    def unknown_devices(self, const uint64_t[:, ::1] dev, const uint8_t[::1] kind):
        """Typed device hashes of installs, opens and events that the install index does not know
        (and that are not known to be absent): the ones unmo.kernel looks up in the database."""
        cdef Py_ssize_t r, n = dev.shape[0]
        cdef int j
        cdef uint64_t h
        out = []
        for r in range(n):
            if kind[r] < KIND_INSTALL:
                continue
            for j in range(NDEV):
                h = dev[r, j]
                if h != 0 and unmo_map_get(&self.i_bydev, h) == NULL and unmo_map_get(&self.absent, h) == NULL:
                    out.append(h)
        return out

    def mark_absent(self, hashes):
        """Remember that the database holds no install with these identifiers."""
        cdef uint64_t h
        for h in hashes:
            if unmo_map_get(&self.i_bydev, h) == NULL and unmo_map_put(&self.absent, h, 1) != 0:
                raise MemoryError("install index")

    def replay_install(self, const uint64_t[::1] dev, int64_t ts, int status, int tkind, int match,
                       int32_t camp, int64_t tts, int64_t ctit, touch_id, int64_t order, bint index=True):
        """Load one stored install (decided earlier, maybe by another process); returns its slot.

        With ``index`` (replaying in decision order) its identifiers point at it, or for a
        reinstall at the primary install they share.  Without, a primary install is only
        added: unmo.kernel points identifiers at it with ``map_ids`` after replaying a looked-up
        device history on its own."""
        cdef int64_t slot
        if dev.shape[0] != NDEV:
            raise ValueError("dev: expected 5 typed hashes")
        if status == OUT_REINSTALL:
            if not index:
                raise ValueError("replay_install: a reinstall has no slot of its own")
            slot = self._primary_of(&dev[0])
            if slot >= 0:
                self._map_install(&dev[0], slot)
            return slot
        slot = self._new_install(ts, <uint8_t>status, <uint8_t>tkind, <uint8_t>match, camp, tts, ctit, touch_id,
                                 order)
        if index:
            self._map_install(&dev[0], slot)
        return slot

    def map_ids(self, const uint64_t[::1] hashes, int64_t slot):
        """Point typed device hashes at install ``slot``, each unless it points at a more
        recently decided install already."""
        cdef Py_ssize_t j
        cdef uint64_t one[5]
        if not 0 <= slot < self.ni:
            raise IndexError(f"install slot {slot} out of range")
        for j in range(hashes.shape[0]):
            one[0] = hashes[j]
            one[1] = one[2] = one[3] = one[4] = 0
            if one[0] != 0:
                self._map_install(one, slot)

    # ------------------------------------------------------------- the batch
    def process(self, const uint8_t[::1] kind, const int64_t[::1] ts, const uint64_t[::1] id_h1,
                const uint64_t[::1] id_h2, const uint64_t[:, ::1] dev, const uint64_t[::1] fp,
                const uint64_t[::1] ref_h1, const uint64_t[::1] ref_h2, const int32_t[::1] camp,
                const uint8_t[::1] blocked, list ids, const int64_t[::1] received, bint decide=True,
                const int16_t[::1] stored=None, int64_t order_base=0):
        """Apply a batch in ts order (stable).

        With ``decide`` (new records): returns ``(dup, outcome, camp_out, inst, match, rejected)``:
        dup u8 (1: already accepted within the dedup window, nothing changed), outcome i16
        (unmo.model.Outcome), camp_out i32 (the attributed campaign ref of installs, opens and
        events; touches their own), inst i64 (installs: the primary install slot whose result
        they carry), match u8 and rejected, a list of ``(row, touch id, touch ts, touch kind,
        campaign ref, reason)`` for every touch the waterfall skipped.

        Without ``decide`` (replaying stored records, oldest first), ``stored`` holds each
        record's stored outcome; installs are not replayed here (see replay_install).

        ``order_base + k`` is the decision order of the install processed k-th (in ts order):
        unmo.kernel passes ``app_log.seq << 32``, so that it equals ``(seq << 32) | ord`` of
        the stored row.
        """
        cdef Py_ssize_t n = kind.shape[0], k, r
        cdef int64_t now = self.last_received
        if (ts.shape[0] != n or id_h1.shape[0] != n or id_h2.shape[0] != n or dev.shape[0] != n
                or fp.shape[0] != n or ref_h1.shape[0] != n or ref_h2.shape[0] != n or camp.shape[0] != n
                or blocked.shape[0] != n or len(ids) != n or received.shape[0] != n
                or (dev.shape[1] != NDEV and n > 0)):
            raise ValueError("process: columns differ in length")
        if not decide and (stored is None or stored.shape[0] != n):
            raise ValueError("process: replay needs the stored outcomes")
        for r in range(n):
            if received[r] > now:
                now = received[r]
        self.last_received = now

        order_arr = np.argsort(np.asarray(ts), kind="stable").astype(np.int64) if decide \
            else np.arange(n, dtype=np.int64)
        cdef const int64_t[::1] order = order_arr
        dup_a = np.zeros(n, dtype=np.uint8)
        out_a = np.zeros(n, dtype=np.int16)
        camp_a = np.full(n, -1, dtype=np.int32)
        inst_a = np.full(n, -1, dtype=np.int64)
        match_a = np.zeros(n, dtype=np.uint8)
        cdef uint8_t[::1] dup = dup_a
        cdef int16_t[::1] out = out_a
        cdef int32_t[::1] camp_out = camp_a
        cdef int64_t[::1] inst = inst_a
        cdef uint8_t[::1] match = match_a
        cdef list rejected = []
        cdef uint8_t kd
        cdef int64_t slot
        for k in range(n):
            r = order[k]
            kd = kind[r]
            if self._seen_check_add(id_h1[r], id_h2[r], received[r]):
                dup[r] = 1
                continue
            if kd == KIND_CLICK or kd == KIND_IMPRESSION:
                b = blocked[r] if decide else stored[r] == OUT_IP_BLOCKLIST
                self._add_touch(kd, ts[r], id_h1[r], id_h2[r], &dev[r, 0], fp[r], camp[r], b, ids[r])
                out[r] = OUT_IP_BLOCKLIST if b else OUT_OK
                camp_out[r] = camp[r]
            elif kd == KIND_INSTALL:
                if decide:
                    self._decide_install(r, ts[r], &dev[r, 0], fp[r], ref_h1[r], ref_h2[r], out, camp_out,
                                         inst, match, rejected, order_base + k)
            elif decide:
                slot = self._primary_of(&dev[r, 0])
                if slot < 0:
                    out[r] = OUT_UNATTRIBUTED
                else:
                    camp_out[r] = self.i_camp[slot]
                    out[r] = OUT_ORGANIC if self.i_camp[slot] < 0 else OUT_ATTRIBUTED
                    inst[r] = slot
        return dup_a, out_a, camp_a, inst_a, match_a, rejected

    def evict(self, int64_t now):
        """Drop touches and installs that fell out of their windows as of ``now`` (ms), once a
        table has doubled since its last rebuild (amortised O(1) per record).

        Never done inside ``process``: a rebuild renumbers install slots, which the caller
        reads after a batch (install_info), and drops installs, which the caller looks up in
        the database for the next batch (unknown_devices).  unmo.kernel.AppKernel calls it
        before that lookup."""
        self._maybe_evict(now)

    cdef int _maybe_evict(self, int64_t now) except -1:
        cdef int64_t longest = self.click_window
        if self.impression_window > longest:
            longest = self.impression_window
        if self.nt > self.rebuild_min and self.nt > 2 * self.t_live:
            self._rebuild_touches(now - longest - self.grace)
        if self.ni > self.rebuild_min and self.ni > 2 * self.i_live:
            self._rebuild_installs(now - self.reattribution_window - self.grace)
        return 0

    cdef int _collect(self, const uint64_t *dev, uint64_t fpv, int64_t t, uint8_t want, int64_t window,
                      bint by_fp) except -1:
        """Fill self.cand with distinct touches of kind ``want`` in [t - window, t], sorted."""
        cdef int64_t cnt = 0, s, i
        cdef int j, jj
        cdef int64_t *head
        cdef bint dupe
        if by_fp:
            head = unmo_map_get(&self.t_byfp, fpv)
            s = head[0] if head != NULL else -1
            while s >= 0:
                if self.t_kind[s] == want and self.t_ts[s] <= t and t - self.t_ts[s] <= window:
                    cnt = self._push(cnt, s)
                s = self.t_fpnext[s]
        else:
            for j in range(NDEV):
                if dev[j] == 0:
                    continue
                head = unmo_map_get(&self.t_bydev, dev[j])
                s = head[0] if head != NULL else -1
                while s >= 0:
                    if self.t_kind[s] == want and self.t_ts[s] <= t and t - self.t_ts[s] <= window:
                        # a touch reached through two identifiers counts once
                        dupe = False
                        for jj in range(j):
                            if dev[jj] != 0 and self.t_dev[s * NDEV + jj] == dev[jj]:
                                dupe = True
                                break
                        if not dupe:
                            cnt = self._push(cnt, s)
                    s = self.t_next[s * NDEV + j]
        if cnt > 1:
            qsort(self.cand, <size_t>cnt, sizeof(Cand), _cand_cmp)
        return <int>cnt if cnt < 2147483647 else 2147483647

    cdef int64_t _push(self, int64_t cnt, int64_t s) except -1:
        if cnt >= self.ccap:
            self.ccap *= 2
            self.cand = <Cand *>_grow(self.cand, self.ccap, sizeof(Cand))
        self.cand[cnt].ts = self.t_ts[s]
        self.cand[cnt].slot = s
        return cnt + 1

    cdef int64_t _pick(self, int cnt, int64_t t, list skipped, Py_ssize_t row, list rejected) except -2:
        """First candidate that is not rejected; rejected ones are reported once each."""
        cdef int i
        cdef int64_t s
        cdef int reason
        for i in range(cnt):
            s = self.cand[i].slot
            reason = 0
            if self.t_flags[s] & TF_BLOCKED:
                reason = REJ_IP
            elif self.t_kind[s] == KIND_CLICK and t - self.t_ts[s] < self.min_ctit:
                reason = REJ_CTIT
            if reason == 0:
                return s
            if s in skipped:
                continue
            skipped.append(s)
            rejected.append((row, self.t_ids[s], self.t_ts[s], self.t_kind[s], self.t_camp[s], reason))
        return -1

    cdef int _decide_install(self, Py_ssize_t r, int64_t t, const uint64_t *dev, uint64_t fpv,
                             uint64_t rh1, uint64_t rh2, int16_t[::1] out, int32_t[::1] camp_out,
                             int64_t[::1] inst, uint8_t[::1] match, list rejected, int64_t order) except -1:
        cdef int64_t last = self._primary_of(dev)
        cdef int64_t win = -1, s
        cdef int64_t *v
        cdef int cnt
        cdef uint8_t how = MATCH_NONE
        cdef list skipped = []
        cdef uint8_t status
        if last >= 0 and t - self.i_ts[last] <= self.reattribution_window:
            out[r] = OUT_REINSTALL
            camp_out[r] = self.i_camp[last]
            inst[r] = last
            match[r] = self.i_match[last]
            self._map_install(dev, last)
            return 0
        # 1. referrer: the click named by the install referrer's click_id
        if rh1 != 0:
            v = unmo_map_get(&self.t_byid, rh1)
            if v != NULL:
                s = v[0]
                if (self.t_h2[s] == rh2 and self.t_kind[s] == KIND_CLICK and self.t_ts[s] <= t
                        and t - self.t_ts[s] <= self.click_window):
                    self.cand[0].ts = self.t_ts[s]
                    self.cand[0].slot = s
                    win = self._pick(1, t, skipped, r, rejected)
                    if win >= 0:
                        how = MATCH_REFERRER
        # 2. device click
        if win < 0:
            cnt = self._collect(dev, 0, t, KIND_CLICK, self.click_window, False)
            win = self._pick(cnt, t, skipped, r, rejected)
            if win >= 0:
                how = MATCH_DEVICE
        # 3. probabilistic click: clicks without identifiers, same fingerprint, probabilistic window
        if win < 0 and self.probabilistic_window > 0 and fpv != 0:
            cnt = self._collect(dev, fpv, t, KIND_CLICK,
                                self.probabilistic_window if self.probabilistic_window < self.click_window
                                else self.click_window, True)
            win = self._pick(cnt, t, skipped, r, rejected)
            if win >= 0:
                how = MATCH_PROBABILISTIC
        # 4. device impression
        if win < 0:
            cnt = self._collect(dev, 0, t, KIND_IMPRESSION, self.impression_window, False)
            win = self._pick(cnt, t, skipped, r, rejected)
            if win >= 0:
                how = MATCH_DEVICE
        if win >= 0:
            status = OUT_REATTRIBUTED if last >= 0 else OUT_ATTRIBUTED
            s = self._new_install(t, status, self.t_kind[win], how, self.t_camp[win], self.t_ts[win],
                                  t - self.t_ts[win], self.t_ids[win], order)
            camp_out[r] = self.t_camp[win]
        else:
            status = OUT_ORGANIC
            s = self._new_install(t, status, 0, MATCH_NONE, -1, 0, 0, None, order)
        out[r] = status
        inst[r] = s
        match[r] = how
        self._map_install(dev, s)
        return 0
