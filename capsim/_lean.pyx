# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
# distutils: language = c++
"""The lean path's event loop, compiled: the replications of :mod:`capsim.leanpath`.

:class:`Kernel` holds a model's lean tables (built by :class:`capsim.leanpath._Plan`, as flat
arrays) and runs replications over them with the engine's rules and arithmetic. Its state is C
arrays: the events are a heap ordered by (time, when scheduled), SimPy's order; each pool's
queue and the HBM market's queue a heap ordered by (priority, arrival), strictly head of line;
a site's GPUs waiting for powered MW a first-in first-out list threaded through the tranches.
Nothing here knows about scenarios: :mod:`capsim.leanpath` lays the tables out and reads the
records back.
"""

from libc.math cimport NAN
from libcpp.vector cimport vector

import numpy as np

cdef extern from * nogil:
    """
    #include <queue>
    #include <vector>
    struct LeanEvent { double t; long long seq; long long code; };
    struct LeanEventAfter {
        bool operator()(const LeanEvent& a, const LeanEvent& b) const {
            return a.t > b.t || (a.t == b.t && a.seq > b.seq);
        }
    };
    typedef std::priority_queue<LeanEvent, std::vector<LeanEvent>, LeanEventAfter> LeanEvents;
    struct LeanWait { long long prio; long long seq; long long who; double amount; };
    struct LeanWaitAfter {
        bool operator()(const LeanWait& a, const LeanWait& b) const {
            return a.prio > b.prio || (a.prio == b.prio && a.seq > b.seq);
        }
    };
    typedef std::priority_queue<LeanWait, std::vector<LeanWait>, LeanWaitAfter> LeanLine;
    """
    cdef struct LeanEvent:
        double t
        long long seq
        long long code

    cdef struct LeanWait:
        long long prio
        long long seq
        long long who
        double amount

    cdef cppclass LeanEvents:
        bint empty()
        const LeanEvent& top()
        void push(const LeanEvent&)
        void pop()

    cdef cppclass LeanLine:
        bint empty()
        const LeanWait& top()
        void push(const LeanWait&)
        void pop()

# what an event does (its code's low 3 bits; the rest is the task, tranche or site): a
# construction phase is built, a GPU tranche is delivered, an HBM
# delivery is made, a tranche asks again for its generation, a site starts. A task's end is
# coded by its number (>= 0), the others as ~(which << 3 | what).
cdef enum:
    PHASE = 1
    DELIVERED = 2
    TICK = 3
    ORDER = 4
    SITE = 5

cdef double EPS = 1e-9  # capsim.resources' and capsim.hbm's tolerance


cdef object _array(vector[double]& values):
    """A numpy copy of ``values``."""
    out = np.empty(values.size())
    cdef double[::1] view = out
    cdef size_t i
    for i in range(values.size()):
        view[i] = values[i]
    return out


cdef class Kernel:
    """A model's lean tables and the state of one replication over them.

    ``tables`` maps each name below to a sequence (CSR pairs: ``*_ptr`` of length n + 1 indexes
    the flat ``*`` arrays); see :class:`capsim.leanpath._Plan` for what each holds.
    """

    # the tables, read only
    cdef double horizon
    cdef bint market, starts_now
    cdef int n_tasks, n_sites, n_tranches, n_pools, n_deliveries
    cdef vector[int] kind, phases, end_site, pending0, tr_first, tr_count
    cdef vector[long long] priority
    cdef vector[int] need_ptr, need_pool, succ_ptr, succ, root_ptr, root
    cdef vector[double] need_amount, capacity0
    cdef vector[int] active, site_left0, task_site, counted
    cdef vector[double] site_start, site_mw
    cdef vector[int] tr_task, tr_site, tr_slot, choice_ptr
    cdef vector[long long] tr_prio
    cdef vector[double] choice_time, choice_gpus, choice_gb, choice_mw, choice_pflops
    cdef vector[double] hbm_times, hbm_common, fleet
    # one replication's state
    cdef double now, hbm_pool
    cdef long long scheduled, arrivals
    cdef int hbm_next
    cdef bint hbm_woken
    cdef LeanEvents events
    cdef vector[LeanLine] lines
    cdef LeanLine orders
    cdef vector[int] pending, next_need, site_left, phases_left, tranche_left
    cdef vector[double] available, built, online, powered
    cdef vector[int] power_head, power_tail, power_next
    cdef vector[double] b_gpus, b_gb, b_mw, b_pflops
    cdef const double* values
    cdef double* ready
    cdef double* start
    cdef double* finish
    cdef vector[double] capacity, hbm_log

    def __init__(self, tables: dict) -> None:
        t = tables  # each sequence becomes a vector (Cython's conversion)
        self.horizon, self.market, self.starts_now = t["horizon"], t["market"], t["starts_now"]
        self.kind, self.phases, self.end_site = t["kind"], t["phases"], t["end_site"]
        self.pending0, self.task_site, self.priority = t["pending"], t["task_site"], t["priority"]
        self.tr_first, self.tr_count = t["tr_first"], t["tr_count"]
        self.need_ptr, self.need_pool, self.need_amount = (
            t["need_ptr"], t["need_pool"], t["need_amount"]
        )
        self.succ_ptr, self.succ = t["succ_ptr"], t["succ"]
        self.root_ptr, self.root = t["root_ptr"], t["root"]
        self.capacity0, self.active, self.site_left0 = t["capacity"], t["active"], t["site_left"]
        self.site_start, self.site_mw, self.counted = t["site_start"], t["site_mw"], t["counted"]
        self.tr_task, self.tr_site, self.tr_slot = t["tr_task"], t["tr_site"], t["tr_slot"]
        self.tr_prio, self.choice_ptr = t["tr_prio"], t["choice_ptr"]
        self.choice_time, self.choice_gpus = t["choice_time"], t["choice_gpus"]
        self.choice_gb, self.choice_mw = t["choice_gb"], t["choice_mw"]
        self.choice_pflops = t["choice_pflops"]
        self.hbm_times, self.hbm_common, self.fleet = t["hbm_times"], t["hbm_common"], t["fleet"]
        self.n_tasks = self.kind.size()
        self.n_sites = self.site_mw.size()
        self.n_tranches = self.tr_task.size()
        self.n_pools = self.capacity0.size()
        self.n_deliveries = self.hbm_times.size()
        self.lines.resize(self.n_pools)
        self.next_need.resize(self.n_tasks)
        self.phases_left.resize(self.n_tasks)
        self.tranche_left.resize(self.n_tasks)
        self.built.resize(self.n_sites)
        self.online.resize(self.n_sites)
        self.powered.resize(self.n_sites)
        self.power_head.resize(self.n_sites)
        self.power_tail.resize(self.n_sites)
        self.power_next.resize(self.n_tranches)
        self.b_gpus.resize(self.n_tranches)
        self.b_gb.resize(self.n_tranches)
        self.b_mw.resize(self.n_tranches)
        self.b_pflops.resize(self.n_tranches)

    def run(
        self, const double[:, ::1] values, double[:, ::1] ready, double[:, ::1] start,
        double[:, ::1] finish,
    ) -> tuple:
        """Replications of each row of slot ``values`` (delays: none negative or NaN), their
        stage times written into the rows of ``ready``, ``start`` and ``finish`` (NaN where not
        reached). Returns the perspective's capacity changes (of the sites ``counted``) of them
        all, one after the other, as a flat array of (time, MW, GPUs, PFLOPS per GPU) rows, the
        ``fleet`` first; how many rows
        each replication has; the HBM allocations as flat (time, site, GB); how many each has;
        and each replication's events scheduled."""
        cdef Py_ssize_t n = values.shape[0], r
        cap_counts = np.empty(n, dtype=np.int64)
        hbm_counts = np.empty(n, dtype=np.int64)
        n_events = np.empty(n, dtype=np.int64)
        cdef long long[::1] caps = cap_counts, hbms = hbm_counts, evs = n_events
        cdef size_t cap_before, hbm_before
        self.capacity.clear()
        self.hbm_log.clear()
        with nogil:  # other threads run meanwhile (a pool's result reader, say)
            for r in range(n):
                self.values = &values[r, 0]
                self.ready, self.start, self.finish = &ready[r, 0], &start[r, 0], &finish[r, 0]
                cap_before, hbm_before = self.capacity.size(), self.hbm_log.size()
                evs[r] = self._replication()
                caps[r] = (self.capacity.size() - cap_before) // 4
                hbms[r] = (self.hbm_log.size() - hbm_before) // 3
        return _array(self.capacity), cap_counts, _array(self.hbm_log), hbm_counts, n_events

    cdef long long _replication(self) noexcept nogil:
        cdef int i, site
        cdef double d
        cdef LeanEvent ev
        cdef long long code, which
        cdef int what
        for i in range(self.n_tasks):
            self.ready[i] = self.start[i] = self.finish[i] = NAN
            self.next_need[i] = 0
        self.pending = self.pending0
        self.site_left = self.site_left0
        self.available = self.capacity0
        for i in range(self.n_sites):
            self.built[i] = self.online[i] = self.powered[i] = 0.0
            self.power_head[i] = self.power_tail[i] = -1
        while not self.events.empty():
            self.events.pop()
        for i in range(self.n_pools):
            while not self.lines[i].empty():
                self.lines[i].pop()
        while not self.orders.empty():
            self.orders.pop()
        self.now = self.hbm_pool = 0.0
        self.scheduled = self.arrivals = 0
        self.hbm_next = 0
        self.hbm_woken = False
        self.capacity.insert(self.capacity.end(), self.fleet.begin(), self.fleet.end())

        if self.starts_now:
            for site in self.active:
                self._site_starts(site)
        else:
            for site in self.active:
                d = self.site_start[site]
                self._schedule(0.0 + (d if d > 0 else 0.0), ~((<long long>site) << 3 | SITE))
        while not self.events.empty():
            ev = self.events.top()
            self.events.pop()
            self.now = ev.t
            if self.now > self.horizon:  # the engine stops before it
                break
            code = ev.code
            if code >= 0:  # the usual event: a task ends
                self._complete(<int>code)
                continue
            what, which = (~code) & 7, (~code) >> 3
            if what == PHASE:
                site = self.task_site[which]
                self._build(site, self.site_mw[site] / self.phases[which])
                self.phases_left[which] -= 1
                if self.phases_left[which] == 0:
                    self._complete(<int>which)
            elif what == DELIVERED:
                self._delivered(<int>which)
            elif what == TICK:
                self.hbm_woken = False
                self._catch_up()
                self._wake()
            elif what == ORDER:
                self._order(<int>which)
            else:
                self._site_starts(<int>which)
        return self.scheduled

    cdef inline void _schedule(self, double t, long long code) noexcept nogil:
        cdef LeanEvent ev
        ev.t, ev.seq, ev.code = t, self.scheduled, code
        self.scheduled += 1
        self.events.push(ev)

    cdef void _site_starts(self, int site) noexcept nogil:
        cdef int k, task
        for k in range(self.root_ptr[site], self.root_ptr[site + 1]):
            task = self.root[k]
            self.ready[task] = self.now
            self._acquire(task)

    cdef void _acquire(self, int task) noexcept nogil:
        """The engine's _acquire: ask for the next resource, or start the task."""
        cdef int a = self.need_ptr[task], b = self.need_ptr[task + 1], k, q, i, phases, tr
        cdef double amount, total
        cdef LeanWait w
        k = a + self.next_need[task]
        while k < b:
            q, amount = self.need_pool[k], self.need_amount[k]
            k += 1
            if self.lines[q].empty() and amount <= self.available[q] + EPS:
                self.available[q] -= amount
                continue
            self.next_need[task] = k - a
            w.prio, w.seq, w.who, w.amount = self.priority[task], self.arrivals, task, amount
            self.arrivals += 1
            self.lines[q].push(w)
            # served now only if it is the new head and fits: else dispatch would stop at once
            if self.lines[q].top().who == task and amount <= self.available[q] + EPS:
                self._dispatch(q)
            return
        self.start[task] = self.now
        if self.kind[task] == 0:
            self._schedule(self.now + self.values[task], task)
        elif self.kind[task] == 1:
            total = self.values[task]
            phases = self.phases[task]
            self.phases_left[task] = phases
            for i in range(1, phases + 1):
                self._schedule(self.now + total * i / phases, ~((<long long>task) << 3 | PHASE))
        else:
            self.tranche_left[task] = self.tr_count[task]
            for tr in range(self.tr_first[task], self.tr_first[task] + self.tr_count[task]):
                self._order(tr)

    cdef void _dispatch(self, int q) noexcept nogil:
        """Serve pool ``q``'s queue, strictly head of line."""
        cdef LeanWait w
        while not self.lines[q].empty():
            w = self.lines[q].top()
            if w.amount > self.available[q] + EPS:
                break
            self.lines[q].pop()
            self.available[q] -= w.amount
            self._acquire(<int>w.who)

    cdef void _complete(self, int task) noexcept nogil:
        cdef int k, q, successor, site
        self.finish[task] = self.now
        for k in range(self.need_ptr[task], self.need_ptr[task + 1]):  # give back what it holds
            q = self.need_pool[k]
            self.available[q] += self.need_amount[k]
            if not self.lines[q].empty():
                self._dispatch(q)
        for k in range(self.succ_ptr[task], self.succ_ptr[task + 1]):
            successor = self.succ[k]
            self.pending[successor] -= 1
            if self.pending[successor] == 0:  # it was the last one waited for
                self.ready[successor] = self.now
                self._acquire(successor)
        site = self.end_site[task]
        if site >= 0:  # a site whose MW come when its last stage ends
            self.site_left[site] -= 1
            if self.site_left[site] == 0:
                self._build(site, self.site_mw[site])

    cdef void _record(self, int site, double mw, double gpus, double pflops) noexcept nogil:
        if not self.counted[site]:  # not the perspective's
            return
        self.capacity.push_back(self.now)
        self.capacity.push_back(mw)
        self.capacity.push_back(gpus)
        self.capacity.push_back(pflops)

    cdef void _build(self, int site, double mw) noexcept nogil:
        cdef double delta
        self.built[site] += mw
        delta = self.built[site] - self.online[site]  # every site is powered
        if delta > 1e-9:
            self.online[site] += delta
            self._record(site, delta, 0.0, 0.0)
            self.powered[site] += delta
            self._power_dispatch(site)

    cdef void _power_dispatch(self, int site) noexcept nogil:
        """The engine's Supply of powered MW: delivered tranches in arrival order."""
        cdef int tr
        while self.power_head[site] >= 0:
            tr = self.power_head[site]
            if self.b_mw[tr] > self.powered[site] + EPS:
                break
            self.power_head[site] = self.power_next[tr]
            self.powered[site] -= self.b_mw[tr]
            self._tranche_online(tr)

    cdef void _tranche_online(self, int tr) noexcept nogil:
        cdef int task = self.tr_task[tr]
        self._record(self.tr_site[tr], 0.0, self.b_gpus[tr], self.b_pflops[tr])
        self.tranche_left[task] -= 1
        if self.tranche_left[task] == 0:
            self._complete(task)

    cdef void _order(self, int tr) noexcept nogil:
        """The engine's _order_tranche: the generation it gets now (the last of its choices
        available by now), or a new order when the first becomes available."""
        cdef int a = self.choice_ptr[tr], b = self.choice_ptr[tr + 1], k, chosen = -1
        cdef double d, gb
        cdef LeanWait w
        for k in range(a, b):
            if self.choice_time[k] <= self.now:
                chosen = k
            else:
                break
        if chosen < 0:
            d = self.choice_time[a] - self.now
            self._schedule(self.now + (d if d > 0 else 0.0), ~((<long long>tr) << 3 | ORDER))
            return
        self.b_gpus[tr], self.b_gb[tr] = self.choice_gpus[chosen], self.choice_gb[chosen]
        self.b_mw[tr], self.b_pflops[tr] = self.choice_mw[chosen], self.choice_pflops[chosen]
        if not self.market:
            self._granted(tr)
            return
        if self.hbm_next < self.n_deliveries and self.hbm_times[self.hbm_next] <= self.now:
            self._catch_up()
        gb = self.b_gb[tr]
        w.prio, w.seq, w.who, w.amount = self.tr_prio[tr], self.arrivals, tr, gb
        self.arrivals += 1
        self.orders.push(w)
        # filled now only if it is the new head and fits (the last serve left a head too big)
        if self.orders.top().who == tr and gb <= self.hbm_pool + EPS:
            self._serve()
        if not self.hbm_woken:
            self._wake()

    cdef void _serve(self) noexcept nogil:
        cdef vector[int] filled
        cdef LeanWait w
        cdef int tr
        while not self.orders.empty():
            w = self.orders.top()
            if w.amount > self.hbm_pool + EPS:
                break
            self.orders.pop()
            filled.push_back(<int>w.who)
            self.hbm_pool -= w.amount
        for tr in filled:
            self._granted(tr)

    cdef void _catch_up(self) noexcept nogil:
        cdef double common = 0.0
        while self.hbm_next < self.n_deliveries and self.hbm_times[self.hbm_next] <= self.now:
            common += self.hbm_common[self.hbm_next]
            self.hbm_next += 1
        if common:
            self.hbm_pool += common
            self._serve()

    cdef void _wake(self) noexcept nogil:
        cdef double d
        if self.hbm_woken or self.orders.empty() or self.hbm_next >= self.n_deliveries:
            return
        self.hbm_woken = True
        d = self.hbm_times[self.hbm_next] - self.now
        self._schedule(self.now + (d if d > 0 else 0.0), ~(<long long>TICK))

    cdef void _granted(self, int tr) noexcept nogil:
        if self.market:
            self.hbm_log.push_back(self.now)
            self.hbm_log.push_back(self.tr_site[tr])
            self.hbm_log.push_back(self.b_gb[tr])
        self._schedule(
            self.now + self.values[self.tr_slot[tr]], ~((<long long>tr) << 3 | DELIVERED)
        )

    cdef void _delivered(self, int tr) noexcept nogil:
        cdef int site = self.tr_site[tr]
        cdef double mw = self.b_mw[tr]
        if self.power_head[site] < 0 and mw <= self.powered[site] + EPS:
            self.powered[site] -= mw
            self._tranche_online(tr)
            return
        self.power_next[tr] = -1
        if self.power_head[site] < 0:
            self.power_head[site] = tr
        else:
            self.power_next[self.power_tail[site]] = tr
        self.power_tail[site] = tr
        self._power_dispatch(site)
