# The attribution and dedup kernel (spec: attribution.md; decisions and figures:
# docs/kernel.md).  It owns the hot loops and the in-memory state of one app;
# unmo.kernel decides everything else (settings, database lookups, answers).
#
# State, all bounded by the app's windows (docs/kernel.md, "Memory"):
#   seen       record-id dedup keys (128 bit) -> received ms; entries older than
#              the dedup window are dropped when the table is rebuilt
#   touches    append-only columns (ts, campaign, kind, flags, record id in a byte
#              arena) and links: one per typed device hash (and per fingerprint of
#              a click without identifiers), chained newest first from a head per
#              hash; plus an index by click id for referrers.  Kept while
#              ts >= now - longest window - grace.
#   installs   the primary installs (not reinstalls), indexed by typed device
#              hash; kept while ts >= now - re-attribution window - grace; older
#              ones are looked up in the database by unmo.kernel on a miss.
#
# Speed (docs/kernel.md, "Figures"): the tables are far larger than the caches, so a probe
# is a wait on memory; the batch loop prefetches the lines a record will probe
# PREFETCH_AHEAD records before it gets there, and touches keep no Python object.

cdef enum:
    PREFETCH_AHEAD = 16
    MAX_HELD = 1 << 30        # touch slots and links are stored in 31 bits (table.h unmo_head, Link)
    MAX_ID_BYTES = 65535      # a record id is 1..128 characters (ingest spec): at most 512 UTF-8 bytes


cdef int _cand_cmp(const void *a, const void *b) noexcept nogil:
    # latest ts first; equal ts: ingested later (larger slot) first
    cdef const Cand *x = <const Cand *>a
    cdef const Cand *y = <const Cand *>b
    if x.ts != y.ts:
        return -1 if x.ts > y.ts else 1
    if x.slot != y.slot:
        return -1 if x.slot > y.slot else 1
    return 0


cdef inline void *_grow(void *p, size_t old_n, size_t n, size_t size) except NULL:
    """Resize a column of ``old_n`` items to ``n`` items of ``size`` bytes (table.h)."""
    cdef void *q = unmo_array_resize(p, old_n * size, n * size)
    if q == NULL:
        raise MemoryError("kernel state")
    return q


cdef bint _worth_rebuilding(const int64_t *ts, int64_t n, int64_t keep_from, int64_t *live) noexcept nogil:
    """True when a quarter or more of ``ts[:n]`` is below ``keep_from`` (what a rebuild would drop);
    otherwise ``*live`` is set to how many are not (Kernel._maybe_evict)."""
    cdef int64_t i, old = 0
    for i in range(n):
        old += ts[i] < keep_from
    if old * 4 >= n:
        return True
    live[0] = n - old
    return False


cdef inline uint64_t _first_id(const uint64_t *dev) noexcept nogil:
    cdef int j
    for j in range(5):
        if dev[j] != 0:
            return dev[j]
    return 0


@cython.final
cdef class Kernel:
    """Per-app attribution state and the waterfall over batches of columns."""

    cdef public int64_t click_window, impression_window, probabilistic_window
    cdef public int64_t reattribution_window, min_ctit, dedup_window, grace
    # Rebuilds (which drop what fell out of the windows) start once a table holds this many
    # entries and has doubled since the last look (_maybe_evict); tests lower it to force many rebuilds.
    cdef public int64_t rebuild_min
    cdef readonly int64_t touch_rebuilds, install_rebuilds   # rebuilds done (tests, diagnostics)
    # The latest receive time processed (ms): the "now" of the next eviction.
    cdef public int64_t last_received

    cdef unmo_set128 seen

    # touches
    cdef int64_t nt, tcap, t_live
    cdef int64_t *t_ts
    cdef int32_t *t_camp
    cdef uint8_t *t_kind
    cdef uint8_t *t_flags
    cdef uint64_t *t_idref        # (offset in t_arena << 16) | UTF-8 length of the record id
    cdef char *t_arena
    cdef int64_t alen, acap
    cdef Link *links
    cdef int64_t nl, lcap
    cdef unmo_heads t_bydev       # typed device hash -> newest link, latest click and impression
    cdef unmo_heads t_byfp        # fingerprint of clicks without identifiers -> the same
    cdef unmo_set128 t_byid       # click record id -> touch slot (referrer matches)

    # installs
    cdef int64_t ni, icap, i_live
    cdef int64_t *i_ts
    cdef int64_t *i_order         # decision order: (app_log.seq << 32) | ord
    cdef int64_t *i_tts
    cdef int64_t *i_ctit
    cdef int32_t *i_camp
    cdef uint8_t *i_status
    cdef uint8_t *i_tkind
    cdef uint8_t *i_match
    cdef list i_tids
    cdef unmo_map i_bydev
    cdef unmo_map absent

    # scratch of the waterfall: candidate clicks and impressions of the install being decided
    cdef Cand *cand
    cdef int64_t ccap, nc
    cdef Cand *icand
    cdef int64_t iccap, nic
    cdef int64_t *listed          # touches listed as rejected for the install being decided
    cdef int64_t nlisted, lscap
    # the order of unsorted batches: radix buffers and the order itself, kept between batches
    cdef unmo_sort_scratch sort_scratch
    cdef int64_t *rows_buf
    cdef int64_t rows_cap

    def __cinit__(self):
        if (unmo_set128_init(&self.seen, 1024) or unmo_heads_init(&self.t_bydev, 1024)
                or unmo_heads_init(&self.t_byfp, 256) or unmo_set128_init(&self.t_byid, 1024)
                or unmo_map_init(&self.i_bydev, 1024) or unmo_map_init(&self.absent, 64)):
            raise MemoryError("kernel state")
        self.i_tids = []
        self.rebuild_min = 65536
        self.last_received = 0
        self.ccap = self.iccap = 64
        self.cand = <Cand *>malloc(self.ccap * sizeof(Cand))
        self.icand = <Cand *>malloc(self.iccap * sizeof(Cand))
        self.lscap = 16
        self.listed = <int64_t *>malloc(self.lscap * sizeof(int64_t))
        if self.cand == NULL or self.icand == NULL or self.listed == NULL:
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
        unmo_heads_free(&self.t_bydev)
        unmo_heads_free(&self.t_byfp)
        unmo_set128_free(&self.t_byid)
        unmo_map_free(&self.i_bydev)
        unmo_map_free(&self.absent)
        unmo_table_free(self.t_ts, self.tcap * 8)
        unmo_table_free(self.t_camp, self.tcap * 4)
        unmo_table_free(self.t_kind, self.tcap)
        unmo_table_free(self.t_flags, self.tcap)
        unmo_table_free(self.t_idref, self.tcap * 8)
        unmo_table_free(self.t_arena, self.acap)
        unmo_table_free(self.links, self.lcap * sizeof(Link))
        unmo_table_free(self.i_ts, self.icap * 8)
        unmo_table_free(self.i_order, self.icap * 8)
        unmo_table_free(self.i_tts, self.icap * 8)
        unmo_table_free(self.i_ctit, self.icap * 8)
        unmo_table_free(self.i_camp, self.icap * 4)
        unmo_table_free(self.i_status, self.icap)
        unmo_table_free(self.i_tkind, self.icap)
        unmo_table_free(self.i_match, self.icap)
        unmo_table_free(self.cand, self.ccap * sizeof(Cand))
        unmo_table_free(self.icand, self.iccap * sizeof(Cand))
        unmo_table_free(self.listed, self.lscap * 8)
        unmo_sort_scratch_free(&self.sort_scratch)
        unmo_table_free(self.rows_buf, self.rows_cap * 8)

    # ------------------------------------------------------------------ sizes
    @property
    def touches(self):
        """Touches held."""
        return self.nt

    @property
    def touch_links(self):
        """Links held (one per identifier of a touch, one per fingerprint of a click without any)."""
        return self.nl

    @property
    def installs(self):
        """Primary installs held."""
        return self.ni

    @property
    def record_ids(self):
        """Record ids in the dedup set."""
        return self.seen.len

    def memory_bytes(self):
        """Bytes allocated for the state (tables, columns, the id arena; not the Python strings
        of installs' touch ids)."""
        cdef size_t b = 0
        b += (self.seen.cap + self.t_byid.cap) * sizeof(unmo_entry128)
        b += (self.t_bydev.cap + self.t_byfp.cap) * sizeof(unmo_head)
        b += (self.i_bydev.cap + self.absent.cap) * sizeof(unmo_entry)
        b += self.tcap * (8 + 4 + 1 + 1 + 8) + self.acap + self.lcap * sizeof(Link)
        b += self.icap * (8 + 8 + 8 + 8 + 4 + 1 + 1 + 1)
        b += (self.ccap + self.iccap) * sizeof(Cand) + self.lscap * 8
        return b

    def seen_growth_bytes(self):
        """Bytes of the table the dedup set grows into next, once it is past half of its load limit and no
        spare mapping of that size is held; 0 otherwise (and for tables under 2 MiB, which calloc makes, or
        over the 1 GiB the spares may hold).
        The writer prefaults that much off the interpreter lock (prefault_table)."""
        cdef size_t nxt
        if self.seen.len * UNMO_MAX_LOAD_DEN * 2 < self.seen.cap * UNMO_MAX_LOAD_NUM:
            return 0
        nxt = self.seen.cap * 2 * sizeof(unmo_entry128)
        if nxt < UNMO_HUGE or nxt > UNMO_SPARE_BYTES or unmo_has_spare(nxt):
            return 0
        return nxt

    def reserve(self, int64_t records, int64_t touches=0, int64_t links=0, int64_t id_bytes=0):
        """Make room for ``records`` more record ids, ``touches`` more touches (clicks among
        them), ``links`` more touch links and ``id_bytes`` more bytes of touch ids, so that the
        batches that bring them do not grow tables on the way (warming up; benchmarks)."""
        cdef int64_t cap
        if records > 0 and unmo_set128_full(&self.seen, <size_t>records):
            if unmo_set128_rebuild(&self.seen, self.last_received - self.dedup_window, <size_t>records) != 0:
                raise MemoryError("dedup set")
        if touches > 0:
            if unmo_set128_full(&self.t_byid, <size_t>touches):
                if unmo_set128_rebuild(&self.t_byid, 0, <size_t>touches) != 0:
                    raise MemoryError("touch index")
            cap = self.tcap if self.tcap else 1024
            while cap < self.nt + touches:
                cap *= 2
            if cap > self.tcap:
                self._touch_capacity(cap)
        if links > 0 and self.nl + links > self.lcap:
            self.links = <Link *>_grow(self.links, self.lcap, self.nl + links, sizeof(Link))
            self.lcap = self.nl + links
        if id_bytes > 0 and self.alen + id_bytes > self.acap:
            self.t_arena = <char *>_grow(self.t_arena, self.acap, self.alen + id_bytes, 1)
            self.acap = self.alen + id_bytes

    # ---------------------------------------------------------------- touches
    cdef int _touch_reserve(self) except -1:
        cdef int64_t cap
        if self.nt < self.tcap:
            return 0
        if self.tcap >= MAX_HELD:
            raise MemoryError(f"kernel state: more than {MAX_HELD} touches within the windows")
        self._touch_capacity(self.tcap * 2 if self.tcap else 1024)
        return 0

    cdef int _touch_capacity(self, int64_t cap) except -1:
        self.t_ts = <int64_t *>_grow(self.t_ts, self.tcap, cap, 8)
        self.t_camp = <int32_t *>_grow(self.t_camp, self.tcap, cap, 4)
        self.t_kind = <uint8_t *>_grow(self.t_kind, self.tcap, cap, 1)
        self.t_flags = <uint8_t *>_grow(self.t_flags, self.tcap, cap, 1)
        self.t_idref = <uint64_t *>_grow(self.t_idref, self.tcap, cap, 8)
        self.tcap = cap
        return 0

    cdef inline int _link(self, unmo_heads *heads, uint64_t h, int64_t s, int64_t ts, uint8_t kind,
                          bint blocked) except -1:
        """Put touch ``s`` at the head of the chain of ``h``; it is the latest of its kind there
        unless one with a later ts is (slots grow, so an equal ts makes it the latest)."""
        cdef unmo_head *e
        cdef Link *link
        if self.nl == self.lcap:
            if self.lcap >= MAX_HELD:
                raise MemoryError(f"kernel state: more than {MAX_HELD} touch links within the windows")
            self.links = <Link *>_grow(self.links, self.lcap, self.lcap * 2 if self.lcap else 1024, sizeof(Link))
            self.lcap = self.lcap * 2 if self.lcap else 1024
        e = unmo_heads_upsert(heads, h)
        if e == NULL:
            raise MemoryError("touch index")
        link = &self.links[self.nl]
        link.ts = ts
        link.next = e.link
        link.touch = (<uint32_t>s << 1) | (1 if kind == KIND_CLICK else 0)
        e.link = <int32_t>self.nl
        self.nl += 1
        if kind == KIND_CLICK:
            if e.click < 0 or ts >= e.click_ts:
                e.click = <int32_t>s
                e.click_ts = ts
                e.flags = (e.flags & ~1) | (1 if blocked else 0)
        elif e.imp < 0 or ts >= self.t_ts[e.imp]:
            e.imp = <int32_t>s
            e.flags = (e.flags & ~2) | (2 if blocked else 0)
        return 0

    cdef inline uint64_t _store_id(self, PyObject *rid) except? 0:
        """Copy a record id's UTF-8 into the arena; its (offset << 16) | length."""
        cdef Py_ssize_t size
        cdef const char *p
        cdef int64_t cap
        if _k_is_str(rid) and _k_is_ascii(rid):
            p = <const char *>_k_str_data(rid)   # compact ASCII: the characters are the UTF-8
            size = _k_str_len(rid)
        else:
            p = _k_utf8(rid, &size)
        cdef uint64_t ref
        if size > MAX_ID_BYTES:
            raise ValueError(f"record id: longer than {MAX_ID_BYTES} bytes")
        if self.alen + size > self.acap:
            cap = self.acap * 2 if self.acap else 65536
            while cap < self.alen + size:
                cap *= 2
            self.t_arena = <char *>_grow(self.t_arena, self.acap, cap, 1)
            self.acap = cap
        _k_memcpy(self.t_arena + self.alen, p, size)
        ref = (<uint64_t>self.alen << 16) | <uint64_t>size
        self.alen += size
        return ref

    cdef object _touch_id(self, int64_t s):
        cdef uint64_t ref = self.t_idref[s]
        return _k_decode(self.t_arena + (ref >> 16), <Py_ssize_t>(ref & 0xFFFF), NULL)

    cdef inline int _add_touch(self, uint8_t kind, int64_t ts, uint64_t h1, uint64_t h2, const uint64_t *dev,
                        uint64_t fp, int32_t camp, bint blocked, PyObject *touch_id) except -1:
        cdef int64_t s = self.nt
        cdef int j, found
        cdef uint8_t flags = TF_BLOCKED if blocked else 0
        cdef int64_t *v
        self._touch_reserve()
        self.t_idref[s] = self._store_id(touch_id)
        for j in range(5):
            if dev[j] != 0:
                flags |= TF_HAS_IDS
                self._link(&self.t_bydev, dev[j], s, ts, kind, blocked)
        if kind == KIND_CLICK:
            if not (flags & TF_HAS_IDS) and fp != 0:
                self._link(&self.t_byfp, fp, s, ts, kind, blocked)
            if unmo_set128_full(&self.t_byid, 1) and unmo_set128_rebuild(&self.t_byid, 0, self.t_byid.len) != 0:
                raise MemoryError("touch index")
            v = unmo_set128_find_or_add(&self.t_byid, h1, h2, s, &found)
            v[0] = s   # a click id accepted again (after the dedup window): the later copy
        self.t_ts[s] = ts
        self.t_camp[s] = camp
        self.t_kind[s] = kind
        self.t_flags[s] = flags
        self.nt = s + 1
        return 0

    cdef int _rebuild_touches(self, int64_t keep_from) except -1:
        """Drop touches with ts < keep_from; compact the columns, the arena and the links in
        order, and let every chain skip the links it lost."""
        cdef int64_t s, d = 0, l, ld = 0, nxt, head
        cdef int64_t alen = 0
        cdef uint64_t ref, size
        cdef size_t i
        cdef int64_t *remap = <int64_t *>malloc((self.nt if self.nt else 1) * 8)
        cdef int64_t *fwd = <int64_t *>malloc((self.nl if self.nl else 1) * 8)
        cdef Link old
        cdef unmo_heads heads
        cdef unmo_head e
        cdef unmo_set128 byid
        cdef unmo_heads *maps[2]
        cdef int m, found
        if remap == NULL or fwd == NULL:
            free(remap); free(fwd)
            raise MemoryError("touch index")
        try:
            for s in range(self.nt):
                if self.t_ts[s] < keep_from:
                    remap[s] = -1
                    continue
                remap[s] = d
                self.t_ts[d] = self.t_ts[s]
                self.t_camp[d] = self.t_camp[s]
                self.t_kind[d] = self.t_kind[s]
                self.t_flags[d] = self.t_flags[s]
                ref = self.t_idref[s]
                size = ref & 0xFFFF
                _k_memmove(self.t_arena + alen, self.t_arena + (ref >> 16), size)
                self.t_idref[d] = (<uint64_t>alen << 16) | size
                alen += <int64_t>size
                d += 1
            # fwd[l]: the newest surviving link at or after l along its chain (its new index).
            # A chain only points to older links, which the loop has passed already, and
            # compaction writes at ld <= l, so links[l] is read before anything overwrites it.
            for l in range(self.nl):
                old = self.links[l]
                nxt = fwd[old.next] if old.next >= 0 else -1
                if remap[old.touch >> 1] >= 0:
                    self.links[ld].ts = old.ts
                    self.links[ld].next = <int32_t>nxt
                    self.links[ld].touch = (<uint32_t>remap[old.touch >> 1] << 1) | (old.touch & 1)
                    fwd[l] = ld
                    ld += 1
                else:
                    fwd[l] = nxt
            maps[0] = &self.t_bydev
            maps[1] = &self.t_byfp
            for m in range(2):
                if unmo_heads_init(&heads, maps[m].len * 2 + 16) != 0:
                    raise MemoryError("touch index")
                for i in range(maps[m].cap):
                    e = maps[m].e[i]
                    if e.key == 0 or e.link < 0 or fwd[e.link] < 0:
                        continue
                    e.link = <int32_t>fwd[e.link]
                    # the latest touch of a kind has the largest ts: if it is dropped, all are
                    e.click = <int32_t>remap[e.click] if e.click >= 0 else -1
                    e.imp = <int32_t>remap[e.imp] if e.imp >= 0 else -1
                    unmo_heads_add_new(&heads, &e)
                unmo_heads_free(maps[m])
                maps[m][0] = heads
            if unmo_set128_init(&byid, self.t_byid.len * 2 + 16) != 0:
                raise MemoryError("touch index")
            for i in range(self.t_byid.cap):
                if self.t_byid.e[i].k1 != 0 and remap[self.t_byid.e[i].val] >= 0:
                    unmo_set128_find_or_add(&byid, self.t_byid.e[i].k1, self.t_byid.e[i].k2,
                                            remap[self.t_byid.e[i].val], &found)
            unmo_set128_free(&self.t_byid)
            self.t_byid = byid
        finally:
            free(remap)
            free(fwd)
        if UNMO_DEBUG:
            for l in range(ld):
                if not (0 <= (self.links[l].touch >> 1) < d) or self.links[l].next >= l:
                    raise AssertionError("touch links out of order after a rebuild")
        self.nt = self.t_live = d
        self.nl = ld
        self.alen = alen
        return 0

    # --------------------------------------------------------------- installs
    cdef int64_t _new_install(self, int64_t ts, uint8_t status, uint8_t tkind, uint8_t match, int32_t camp,
                              int64_t tts, int64_t ctit, object touch_id, int64_t order) except -1:
        cdef int64_t cap, s
        if self.ni >= self.icap:
            cap = self.icap * 2 if self.icap else 256
            self.i_ts = <int64_t *>_grow(self.i_ts, self.icap, cap, 8)
            self.i_order = <int64_t *>_grow(self.i_order, self.icap, cap, 8)
            self.i_tts = <int64_t *>_grow(self.i_tts, self.icap, cap, 8)
            self.i_ctit = <int64_t *>_grow(self.i_ctit, self.icap, cap, 8)
            self.i_camp = <int32_t *>_grow(self.i_camp, self.icap, cap, 4)
            self.i_status = <uint8_t *>_grow(self.i_status, self.icap, cap, 1)
            self.i_tkind = <uint8_t *>_grow(self.i_tkind, self.icap, cap, 1)
            self.i_match = <uint8_t *>_grow(self.i_match, self.icap, cap, 1)
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

    cdef int64_t _primary_of(self, const uint64_t *dev) noexcept:
        """The most recently decided primary install sharing an identifier, or -1.

        By decision order, not slot: installs looked up in the database after an eviction
        get new slots although they were decided long before the ones held."""
        cdef int j
        cdef int64_t best = -1
        cdef int64_t *v
        for j in range(5):
            if dev[j] == 0:
                continue
            v = unmo_map_get(&self.i_bydev, dev[j])
            if v != NULL and (best < 0 or self.i_order[v[0]] > self.i_order[best]):
                best = v[0]
        return best

    cdef int _map_install(self, const uint64_t *dev, int64_t slot) except -1:
        """Point the identifiers at ``slot`` unless one points at a more recently decided install
        already (an old install looked up in the database must not take over an identifier)."""
        cdef int j, is_new
        cdef int64_t *v
        for j in range(5):
            if dev[j] == 0:
                continue
            v = unmo_map_upsert(&self.i_bydev, dev[j], &is_new)
            if v == NULL:
                raise MemoryError("install index")
            if is_new or self.i_order[v[0]] <= self.i_order[slot]:
                v[0] = slot
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
                if self.i_bydev.e[i].key != 0 and remap[self.i_bydev.e[i].val] >= 0:
                    unmo_map_add_new(&fresh, self.i_bydev.e[i].key, remap[self.i_bydev.e[i].val])
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

    def install_ts(self, const int64_t[::1] slots):
        """ts (epoch ms) of the primary installs in ``slots``, -1 where the slot is -1 (no install):
        ``install_info(slot)[0]`` for a whole column (the install ms the reports store with opens and
        events, unmo.reports.rollup)."""
        cdef Py_ssize_t i, n = slots.shape[0]
        cdef int64_t s
        out = np.empty(n, dtype=np.int64)
        cdef int64_t[::1] o = out
        for i in range(n):
            s = slots[i]
            if s == -1:
                o[i] = -1
            elif 0 <= s < self.ni:
                o[i] = self.i_ts[s]
            else:
                raise IndexError(f"install slot {s} out of range")
        return out

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
            for j in range(5):
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
        if dev.shape[0] != 5:
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
                const int16_t[::1] stored=None, int64_t order_base=0, const int64_t[::1] order=None):
        """Apply a batch in ts order (stable), or in ``order`` (row indices) when given.

        With ``decide`` (new records): returns ``(dup, outcome, camp_out, inst, match, rejected)``:
        dup u8 (1: already accepted within the dedup window, nothing changed), outcome i16
        (unmo.model.Outcome), camp_out i32 (the attributed campaign ref of installs, opens and
        events; touches their own), inst i64 (installs: the primary install slot whose result
        they carry; opens and events: the one they inherit), match u8 and rejected, a list of
        ``(row, touch id, touch ts, touch kind, campaign ref, reason)`` for every touch the
        waterfall skipped.

        Without ``decide`` (replaying stored records, oldest first), ``stored`` holds each
        record's stored outcome; installs are not replayed here (see replay_install).

        ``order_base + k`` is the decision order of the install processed k-th: unmo.kernel
        passes ``app_log.seq << 32``, so that it equals ``(seq << 32) | ord`` of the stored row.
        """
        cdef Py_ssize_t n = kind.shape[0], k, r, r2
        cdef int64_t now = self.last_received, low = _K_INT64_MAX, slot, rcv, touches, clicks, cap
        cdef int found
        cdef int64_t *seen_at
        cdef uint8_t kd, kd2
        cdef uint64_t h
        cdef bint b
        if (ts.shape[0] != n or id_h1.shape[0] != n or id_h2.shape[0] != n or dev.shape[0] != n
                or fp.shape[0] != n or ref_h1.shape[0] != n or ref_h2.shape[0] != n or camp.shape[0] != n
                or blocked.shape[0] != n or len(ids) != n or received.shape[0] != n
                or (order is not None and order.shape[0] != n) or (dev.shape[1] != 5 and n > 0)):
            raise ValueError("process: columns differ in length")
        if not decide and (stored is None or stored.shape[0] != n):
            raise ValueError("process: replay needs the stored outcomes")
        dup_a = np.zeros(n, dtype=np.uint8)
        out_a = np.zeros(n, dtype=np.int16)
        camp_a = np.full(n, -1, dtype=np.int32)
        inst_a = np.full(n, -1, dtype=np.int64)
        match_a = np.zeros(n, dtype=np.uint8)
        cdef list rejected = []
        if n == 0:
            return dup_a, out_a, camp_a, inst_a, match_a, rejected
        for r in range(n):
            rcv = received[r]
            if rcv > now:
                now = rcv
            if rcv < low:
                low = rcv
        self.last_received = now

        cdef const int64_t[::1] rows
        cdef bint in_row_order = False
        if order is not None:
            for k in range(n):
                if not 0 <= order[k] < n:
                    raise ValueError(f"process: order[{k}] = {order[k]} is not a row")
            rows = order
        elif not decide or unmo_ts_sorted(&ts[0], <size_t>n):
            in_row_order = True   # replay (stored order) or a batch sorted already
            rows = ts             # unused
        else:
            if n > self.rows_cap:
                self.rows_buf = <int64_t *>_grow(self.rows_buf, self.rows_cap, n, 8)
                self.rows_cap = n
            if unmo_ts_order(&ts[0], <size_t>n, self.rows_buf, &self.sort_scratch) != 0:
                raise MemoryError("batch order")
            rows = <int64_t[:n]>self.rows_buf
        # room for the batch's touches up front rather than by doubling on the way
        touches = clicks = 0
        for r in range(n):
            if kind[r] <= KIND_IMPRESSION:
                touches += 1
                clicks += kind[r] == KIND_CLICK
        if self.nt + touches > self.tcap:
            cap = self.tcap if self.tcap else 1024
            while cap < self.nt + touches:
                cap *= 2
            self._touch_capacity(cap)
        if clicks and unmo_set128_full(&self.t_byid, <size_t>clicks):
            if unmo_set128_rebuild(&self.t_byid, 0, <size_t>clicks) != 0:
                raise MemoryError("touch index")
        cdef uint8_t[::1] dup = dup_a
        cdef int16_t[::1] out = out_a
        cdef int32_t[::1] camp_out = camp_a
        cdef int64_t[::1] inst = inst_a
        cdef uint8_t[::1] match = match_a

        # The dedup set takes every new id of the batch without growing mid-batch; a rebuild
        # keeps ids accepted within the window of the batch's earliest receive time.
        if unmo_set128_full(&self.seen, <size_t>n):
            if unmo_set128_rebuild(&self.seen, low - self.dedup_window, <size_t>n) != 0:
                raise MemoryError("dedup set")
        for k in range(n):
            if k + PREFETCH_AHEAD < n:
                r2 = k + PREFETCH_AHEAD if in_row_order else rows[k + PREFETCH_AHEAD]
                unmo_set128_prefetch(&self.seen, id_h1[r2])
                kd2 = kind[r2]
                h = _first_id(&dev[r2, 0])
                if kd2 <= KIND_IMPRESSION:
                    if h != 0:
                        unmo_heads_prefetch(&self.t_bydev, h)
                    elif kd2 == KIND_CLICK and fp[r2] != 0:
                        unmo_heads_prefetch(&self.t_byfp, fp[r2])
                    if kd2 == KIND_CLICK:
                        unmo_set128_prefetch(&self.t_byid, id_h1[r2])
                    unmo_prefetch(_k_list_item(<PyObject *>ids, r2))
                else:
                    if h != 0:
                        unmo_map_prefetch(&self.i_bydev, h)
                    if kd2 == KIND_INSTALL:
                        # what the waterfall reads first: the chain heads and the referrer's click
                        if h != 0:
                            unmo_heads_prefetch(&self.t_bydev, h)
                        if fp[r2] != 0:
                            unmo_heads_prefetch(&self.t_byfp, fp[r2])
                        if ref_h1[r2] != 0:
                            unmo_set128_prefetch(&self.t_byid, ref_h1[r2])
            r = k if in_row_order else rows[k]
            rcv = received[r]
            seen_at = unmo_set128_find_or_add(&self.seen, id_h1[r], id_h2[r], rcv, &found)
            if found:
                if rcv - seen_at[0] <= self.dedup_window:
                    dup[r] = 1
                    continue
                seen_at[0] = rcv   # accepted again after the window: the window restarts
            kd = kind[r]
            if kd == KIND_CLICK or kd == KIND_IMPRESSION:
                b = blocked[r] != 0 if decide else stored[r] == OUT_IP_BLOCKLIST
                self._add_touch(kd, ts[r], id_h1[r], id_h2[r], &dev[r, 0], fp[r], camp[r], b,
                                _k_list_item(<PyObject *>ids, r))
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
        """A table that has doubled since its last look is rebuilt when at least a quarter of it fell out
        of its window.  Otherwise (a growing app: nothing or little to drop) the look is a sequential
        count of the ts column, not a rebuild that rewrites every column, chain and index as they were
        (281 ms at 2.1M touches, on the serving thread), and the next look is due once what it found
        live has doubled.  Either way the looks come at geometric intervals: O(1) a record."""
        cdef int64_t longest = self.click_window
        cdef int64_t keep
        if self.impression_window > longest:
            longest = self.impression_window
        if self.nt > self.rebuild_min and self.nt > 2 * self.t_live:
            keep = now - longest - self.grace
            if _worth_rebuilding(self.t_ts, self.nt, keep, &self.t_live):
                self._rebuild_touches(keep)
                self.touch_rebuilds += 1
        if self.ni > self.rebuild_min and self.ni > 2 * self.i_live:
            keep = now - self.reattribution_window - self.grace
            if _worth_rebuilding(self.i_ts, self.ni, keep, &self.i_live):
                self._rebuild_installs(keep)
                self.install_rebuilds += 1
        return 0

    # ---------------------------------------------------------- the waterfall
    cdef inline int _push(self, Cand **buf, int64_t *cap, int64_t cnt, const Link *link) except -1:
        if cnt >= cap[0]:
            buf[0] = <Cand *>_grow(buf[0], cap[0], cap[0] * 2, sizeof(Cand))
            cap[0] *= 2
        buf[0][cnt].ts = link.ts
        buf[0][cnt].slot = link.touch >> 1
        return 0

    cdef int _walk(self, int64_t l, int64_t t, int64_t click_window, int64_t impression_window) except -1:
        """Append the eligible clicks (self.cand) and impressions (self.icand) along the chain from
        link ``l``: one walk serves both tiers, reading only the links."""
        cdef const Link *link
        while l >= 0:
            link = &self.links[l]
            if link.ts <= t:
                if link.touch & 1:
                    if t - link.ts <= click_window:
                        self._push(&self.cand, &self.ccap, self.nc, link)
                        self.nc += 1
                elif t - link.ts <= impression_window:
                    self._push(&self.icand, &self.iccap, self.nic, link)
                    self.nic += 1
            l = link.next
        return 0

    cdef int _walk_devices(self, const uint64_t *dev, int64_t t) except -1:
        """Walk the chains of the install's identifiers: its candidate clicks and impressions."""
        cdef int j
        cdef unmo_head *e
        self.nc = self.nic = 0
        for j in range(5):
            if dev[j] != 0:
                e = unmo_heads_get(&self.t_bydev, dev[j])
                if e != NULL:
                    self._walk(e.link, t, self.click_window, self.impression_window)
        return 0

    cdef int64_t _latest(self, unmo_heads *heads, const uint64_t *keys, int nkeys, bint click, int64_t t,
                         int64_t window) noexcept:
        """A tier's winner read from the chain heads alone, without walking a chain.

        Each head holds its key's latest touch of the kind by (ts, slot).  When that touch is
        out of the window so is every other of the key; when it is eligible and not rejected,
        no other touch of the key comes before it in the tier.  So the latest eligible one over
        the keys wins, and no candidate before it was examined (nothing to list as rejected).
        -1: no touch of the kind is eligible; -2: a head cannot tell (its latest touch is later
        than the install, or rejected): walk the chains."""
        cdef int j
        cdef unmo_head *e
        cdef int64_t best = -1, best_ts = 0, s, ts
        cdef bint blocked
        for j in range(nkeys):
            if keys[j] == 0:
                continue
            e = unmo_heads_get(heads, keys[j])
            if e == NULL:
                continue
            if click:
                s = e.click
                ts = e.click_ts
                blocked = (e.flags & 1) != 0
            else:
                s = e.imp
                if s < 0:
                    continue
                ts = self.t_ts[s]
                blocked = (e.flags & 2) != 0
            if s < 0:
                continue
            if ts > t:
                return -2
            if t - ts > window:
                continue
            if blocked or (click and t - ts < self.min_ctit):
                return -2
            if best < 0 or ts > best_ts or (ts == best_ts and s > best):
                best = s
                best_ts = ts
        return best

    cdef int64_t _ordered(self, Cand *buf, int64_t cnt) noexcept:
        """Sort candidates latest first (ties: ingested later first); each touch once, though an
        install may reach it through several identifiers.  The distinct count."""
        cdef int64_t i, w
        if cnt < 2:
            return cnt
        qsort(buf, <size_t>cnt, sizeof(Cand), _cand_cmp)
        w = 1
        for i in range(1, cnt):
            if buf[i].slot != buf[w - 1].slot:
                buf[w] = buf[i]
                w += 1
        return w

    cdef int64_t _pick(self, const Cand *cand, int64_t cnt, int64_t t, Py_ssize_t row,
                       list rejected) except -2:
        """First candidate that is not rejected; rejected ones are listed once per install."""
        cdef int64_t i, j, s
        cdef int reason
        cdef bint again
        for i in range(cnt):
            s = cand[i].slot
            reason = 0
            if self.t_flags[s] & TF_BLOCKED:
                reason = REJ_IP
            elif self.t_kind[s] == KIND_CLICK and t - self.t_ts[s] < self.min_ctit:
                reason = REJ_CTIT
            if reason == 0:
                return s
            again = False
            for j in range(self.nlisted):
                if self.listed[j] == s:
                    again = True
                    break
            if again:
                continue
            if self.nlisted == self.lscap:
                self.listed = <int64_t *>_grow(self.listed, self.lscap, self.lscap * 2, 8)
                self.lscap *= 2
            self.listed[self.nlisted] = s
            self.nlisted += 1
            rejected.append((row, self._touch_id(s), self.t_ts[s], self.t_kind[s], self.t_camp[s], reason))
        return -1

    cdef int _decide_install(self, Py_ssize_t r, int64_t t, const uint64_t *dev, uint64_t fpv,
                             uint64_t rh1, uint64_t rh2, int16_t[::1] out, int32_t[::1] camp_out,
                             int64_t[::1] inst, uint8_t[::1] match, list rejected, int64_t order) except -1:
        cdef int64_t last = self._primary_of(dev)
        cdef int64_t win = -1, s, nic, window
        cdef int64_t *v
        cdef unmo_head *e
        cdef bint walked = False
        cdef Cand one
        cdef uint8_t how = MATCH_NONE
        cdef uint8_t status
        if last >= 0 and t - self.i_ts[last] <= self.reattribution_window:
            out[r] = OUT_REINSTALL
            camp_out[r] = self.i_camp[last]
            inst[r] = last
            match[r] = self.i_match[last]
            self._map_install(dev, last)
            return 0
        self.nlisted = 0
        # 1. referrer: the click named by the install referrer's click_id
        if rh1 != 0:
            v = unmo_set128_get(&self.t_byid, rh1, rh2)
            if v != NULL:
                s = v[0]
                if self.t_ts[s] <= t and t - self.t_ts[s] <= self.click_window:
                    one.ts = self.t_ts[s]
                    one.slot = s
                    win = self._pick(&one, 1, t, r, rejected)
                    if win >= 0:
                        how = MATCH_REFERRER
        # 2. device click, from the chain heads when they can tell, else by walking the chains
        #    (which gathers the impressions of tier 4 on the way)
        if win < 0:
            win = self._latest(&self.t_bydev, dev, 5, True, t, self.click_window)
            if win == -2:
                self._walk_devices(dev, t)
                walked = True
                win = self._pick(self.cand, self._ordered(self.cand, self.nc), t, r, rejected)
            if win >= 0:
                how = MATCH_DEVICE
        # 3. probabilistic click: clicks without identifiers, same fingerprint, within the
        #    probabilistic window and never beyond the click window
        if win < 0 and self.probabilistic_window > 0 and fpv != 0:
            window = self.probabilistic_window if self.probabilistic_window < self.click_window else self.click_window
            win = self._latest(&self.t_byfp, &fpv, 1, True, t, window)
            if win == -2:
                e = unmo_heads_get(&self.t_byfp, fpv)
                nic = self.nic
                self.nc = 0
                self._walk(e.link, t, window, -1)
                self.nic = nic   # the fingerprint chain holds clicks only
                win = self._pick(self.cand, self._ordered(self.cand, self.nc), t, r, rejected)
            if win >= 0:
                how = MATCH_PROBABILISTIC
        # 4. device impression
        if win < 0:
            win = -2 if walked else self._latest(&self.t_bydev, dev, 5, False, t, self.impression_window)
            if win == -2:
                if not walked:
                    self._walk_devices(dev, t)
                win = self._pick(self.icand, self._ordered(self.icand, self.nic), t, r, rejected)
            if win >= 0:
                how = MATCH_DEVICE
        if win >= 0:
            status = OUT_REATTRIBUTED if last >= 0 else OUT_ATTRIBUTED
            s = self._new_install(t, status, self.t_kind[win], how, self.t_camp[win], self.t_ts[win],
                                  t - self.t_ts[win], self._touch_id(win), order)
            camp_out[r] = self.t_camp[win]
        else:
            status = OUT_ORGANIC
            s = self._new_install(t, status, 0, MATCH_NONE, -1, 0, 0, None, order)
        out[r] = status
        inst[r] = s
        match[r] = how
        self._map_install(dev, s)
        return 0


@cython.final
cdef class PrefaultedTable:
    """A table's mapping made and touched ahead of need (prefault_table), until adopt() offers it to the
    next table of its size; released as a spare when dropped unadopted."""
    cdef void *p
    cdef readonly size_t nbytes

    def adopt(self):
        """Offer it to the next table of ``nbytes`` (once), displacing smaller spares if need be; False when
        it is larger than the spares may hold (it is released)."""
        cdef void *p = self.p
        if p == NULL:
            raise ValueError("prefaulted table: adopted already")
        self.p = NULL
        return unmo_adopt_spare(p, self.nbytes) == 1

    def __dealloc__(self):
        if self.p != NULL:
            unmo_table_free(self.p, self.nbytes)


def prefault_table(size_t nbytes):
    """Map ``nbytes`` (at least 2 MiB) for a table and touch every page, without the interpreter lock (run it
    on another thread: the first touch of fresh memory is the slow part of growing a table); None when out
    of memory.  Kernel.seen_growth_bytes says how much."""
    cdef void *p
    cdef PrefaultedTable t
    if nbytes < UNMO_HUGE:
        raise ValueError(f"prefault_table: {nbytes} bytes is under 2 MiB (such tables are calloc'd)")
    with nogil:
        p = unmo_prefault(nbytes)
    if p == NULL:
        return None
    t = PrefaultedTable.__new__(PrefaultedTable)
    t.p = p
    t.nbytes = nbytes
    return t


def spare_tables():
    """The released and prefaulted mappings kept for the next table of their size: ``(bytes, clean)`` each
    (for tests and diagnostics)."""
    return [(unmo_spare_len[i], bool(unmo_spare_clean[i])) for i in range(UNMO_SPARES) if unmo_spare[i] != NULL]
